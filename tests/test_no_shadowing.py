"""No module of ours can shadow an installed distribution or the standard library (docs/setup.md).

transformers 5.25 began importing the `kernels` distribution; `python benchmarks/gpu_check.py` put
benchmarks/ first on sys.path, so benchmarks/kernels.py hid it and every model load failed. Two rules
keep that class away:
- the names we put on sys.path (the repository root's modules and packages: pytest and `python -m` run
  from there; the installed package's top-level names) are no installed distribution's top-level name;
- a benchmark or script run as a file puts the repository root, not its own folder, first on sys.path.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT_FOLDERS = ("benchmarks", "scripts")


def top_level_names(folder: Path) -> set[str]:
    """Importable top-level names a folder gives when it is on sys.path: modules and regular packages."""
    names = {p.stem for p in folder.glob("*.py")}
    names |= {p.name for p in folder.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    return {n for n in names if n.isidentifier()}


def installed_names(exclude: str = "glasshouse") -> dict[str, list[str]]:
    """Top-level import names of the installed distributions (ours excluded) and the standard library."""
    names = {name: dists for name, dists in md.packages_distributions().items()
             if any(d.lower() != exclude for d in dists)}
    for name in sys.stdlib_module_names:
        names.setdefault(name, ["the standard library"])
    return names


def collisions(ours: set[str], installed: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: installed[name] for name in sorted(ours) if name in installed}


def test_root_names_shadow_nothing_installed() -> None:
    ours = top_level_names(ROOT) | set(md.packages_distributions().keys() & {"probes", "circuits", "saes", "app"})
    assert {"probes", "benchmarks", "scripts", "tests"} <= ours
    found = collisions(ours, installed_names())
    assert not found, f"these names of ours hide installed modules (rename ours): {found}"


def test_the_check_finds_a_planted_collision(tmp_path: Path) -> None:
    (tmp_path / "kernels.py").write_text("")
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "__init__.py").write_text("")
    (tmp_path / "harmless_glasshouse_name.py").write_text("")
    fake = {"kernels": ["kernels"], "json": ["the standard library"]}
    assert collisions(top_level_names(tmp_path), fake) == fake


def _runnable_files() -> list[Path]:
    return sorted(p for folder in SCRIPT_FOLDERS for p in (ROOT / folder).glob("*.py")
                  if '__name__ == "__main__"' in p.read_text())


def _first_non_stdlib_import(tree: ast.Module) -> int | None:
    for node in tree.body:
        if isinstance(node, ast.Import):
            roots = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots = [node.module.split(".")[0]]
        else:
            continue
        if any(r not in sys.stdlib_module_names and r != "__future__" for r in roots):
            return node.lineno
    return None


def _guard_line(tree: ast.Module) -> int | None:
    """The line of `if __name__ == "__main__" and not __package__: sys.path[0] = <repository root>`."""
    for node in tree.body:
        if isinstance(node, ast.If) and "__package__" in ast.unparse(node.test):
            body = ast.unparse(node.body[0]) if node.body else ""
            if body.startswith("sys.path[0] = ") and "parents[1]" in body:
                return node.lineno
    return None


def test_every_runnable_file_puts_the_root_first_before_importing_packages() -> None:
    files = _runnable_files()
    assert {p.name for p in files} >= {"gpu_check.py", "kernels.py", "support_matrix.py"}
    for path in files:
        tree = ast.parse(path.read_text())
        guard, first = _guard_line(tree), _first_non_stdlib_import(tree)
        assert guard is not None, f"{path.relative_to(ROOT)} has no sys.path guard (see this test's docstring)"
        assert first is None or guard < first, f"{path.relative_to(ROOT)} imports packages before its guard"


def test_a_file_run_sees_the_installed_package_not_ours() -> None:
    """Run as a file, benchmarks/kernels.py must not be what `import kernels` finds."""
    probe = ("import runpy, sys; sys.argv = [sys.argv[0], '--help']\n"
             "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\nexcept SystemExit:\n    pass\n")
    code = (f"import sys; sys.argv[0] = {str(ROOT / 'benchmarks' / 'kernels.py')!r}; "
            f"sys.path[0] = {str(ROOT / 'benchmarks')!r}\n{probe}"
            "import importlib.util; spec = importlib.util.find_spec('kernels');"
            "print('KERNELS_AT', spec.origin if spec else None)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    origin = out.stdout.split("KERNELS_AT", 1)[1].strip()
    assert origin != str(ROOT / "benchmarks" / "kernels.py"), out.stdout[-2000:]
