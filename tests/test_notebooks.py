"""Every notebook executes, at its smallest sizes, in a fresh kernel (issue 19).

Each notebook's parameters cell (tagged "parameters") reads GLASSHOUSE_NOTEBOOK_SMALL; set to 1
here, the same code runs with the fewest examples, steps and tokens that still exercise every
cell. Each kernel loads its own model (nothing is shared with this process's fixtures) and runs in
a temporary working directory, since notebooks write runs/ and plan files relative to it.
Committed notebooks carry no outputs, so none can go stale; set GLASSHOUSE_NOTEBOOK_OUT to a
folder to keep the executed copies.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SWITCH = "GLASSHOUSE_NOTEBOOK_SMALL"


def test_there_are_eight_notebooks():
    assert [p.stem for p in NOTEBOOKS] == ["batch_sweep", "bb_lab", "circuits", "dormant_heads", "extreme_tokens",
                                           "saes", "sinks", "successor_heads"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_a_parameters_cell_and_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and SWITCH in params[0].source and code.index(params[0]) == 0
    stale = [i for i, c in enumerate(code) if c.outputs or c.execution_count is not None]
    assert not stale, f"{path.name}: code cells {stale} carry outputs; strip them (outputs come from CI's run)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_at_small_settings(path, tmp_path, monkeypatch):
    monkeypatch.setenv(SWITCH, "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # CI's two cores, shared with this process
    nb = nbformat.read(path, as_version=4)
    # timeout: per cell, a guard against a hung kernel (the largest cell takes well under a minute on a free core)
    client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError with the failing cell's traceback
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    assert any(o.get("output_type") in ("stream", "execute_result", "display_data") for c in code for o in c.outputs)
    keep = os.environ.get("GLASSHOUSE_NOTEBOOK_OUT")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, Path(keep) / path.name)
