"""scripts/analysis_footprint.py: which files mention an analysis, on a small fake tree and on this one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.analysis_footprint import ANALYSES, Analysis, footprint, main, read_tokens

ROOT = Path(__file__).resolve().parents[1]

FAKE = {
    # the definition: names count
    "probes/sinks.py": '"""compute_sinks lives here."""\n\ndef compute_sinks(model):\n    return sinks_by_regime(model)\n',
    # a registration by string, and a call through a module attribute
    "app/commands/sinks.py": 'import probes.sinks as s\n\nNAME = "sinks"\nx = s.compute_sinks(None)\n',
    # an import of the function counts (its name is imported)
    "app/atlas/probes.py": "from probes.sinks import compute_sinks\n",
    # a shared helper of the sinks module is no mention; neither are docstrings, comments, prose strings
    "probes/extreme.py": ('"""Uses compute_sinks? No: only the helper."""\nfrom probes.sinks import inputs_for_regime\n'
                          "# compute_sinks in a comment\n"
                          'MESSAGE = "the sinks command"\n'
                          'def f():\n    """compute_sinks in a docstring"""\n    return importlib.import_module("probes.sinks")\n'),
    # the page file, by its name
    "app/streamlit_app.py": 'PAGES = ["sinks.py", "circuits.py"]\n',
    # relative imports resolve
    "app/pages/sinks.py": "from ..figures.sinks import sink_rate_by_regime\n",
    # outside the folders read: tests/, docs/, scripts/
    "tests/test_sinks.py": "from probes.sinks import compute_sinks\n",
    "docs/sinks.py": "compute_sinks = 1\n",
    "scripts/sinks.py": "compute_sinks = 1\n",
    # a package analysis: every file of its home counts, and any import of the package
    "circuits/__init__.py": "",
    "circuits/graph.py": "X = 1\n",
    "app/figures/registry.py": 'from circuits.graph import X\n\n@figure_set("circuit")\ndef _c(d):\n    return d\n',
    "app/ui/other.py": "from app.figures.theme import COLORWAY\n",
    "notes.txt": "compute_sinks\n",
}

TWO = (Analysis("sinks", names=r"compute_sinks|sinks_by_regime|sink_rate_by_regime", strings=r"sinks|sinks\.py"),
       Analysis("circuits", names=r"discover", strings=r"circuit|circuits\.py", modules=r"circuits(\.\w+)*",
                homes=("circuits/",)))


@pytest.fixture
def fake_repo(tmp_path: Path) -> Path:
    for rel, text in FAKE.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_counts_on_a_fake_tree(fake_repo: Path) -> None:
    found = footprint(fake_repo, TWO)
    assert sorted(found["sinks"]) == ["app/atlas/probes.py", "app/commands/sinks.py", "app/pages/sinks.py",
                                      "app/streamlit_app.py", "probes/sinks.py"]
    assert found["sinks"]["app/commands/sinks.py"] == ["N:compute_sinks", "S:'sinks'"]
    assert found["sinks"]["app/pages/sinks.py"] == ["N:sink_rate_by_regime"]
    assert sorted(found["circuits"]) == ["app/figures/registry.py", "app/streamlit_app.py", "circuits/__init__.py",
                                         "circuits/graph.py"]
    assert found["circuits"]["app/figures/registry.py"] == ["S:'circuit'", "M:circuits.graph"]
    assert found["circuits"]["circuits/__init__.py"] == ["H"]


def test_relative_imports_and_docstrings() -> None:
    tokens = read_tokens('"""doc"""\nfrom ..figures import sinks\nfrom . import x\nY = "probes.sinks"\n',
                         "app/pages/sinks.py")
    assert {"app.figures", "app.figures.sinks", "app.pages", "app.pages.x", "probes.sinks"} <= tokens.modules
    assert "doc" not in tokens.strings and "probes.sinks" in tokens.strings


def test_main_prints_the_table_and_json(fake_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--repo", str(fake_repo), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["files_read"] == 10
    assert {name: a["count"] for name, a in data["analyses"].items()}["circuits"] == 4
    assert main(["--repo", str(fake_repo)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("analysis") and len(lines) == 1 + len(ANALYSES)


def test_every_analysis_is_found_in_this_tree() -> None:
    """Guards the patterns: a rename that hides an analysis from them fails here, not silently."""
    found = footprint(ROOT)
    assert [a.name for a in ANALYSES] == list(found)
    for analysis in ANALYSES:
        files = found[analysis.name]
        assert len(files) >= 3, f"{analysis.name}: only {sorted(files)}"
        assert any(f.startswith("app/") for f in files), f"{analysis.name} is registered nowhere in app/"
