"""Every notebook executes, at its smallest sizes, in a fresh kernel (docs/cli.md).

Each notebook's parameters cell (tagged "parameters") reads GLASSHOUSE_NOTEBOOK_SMALL; set to 1
here, the same code runs with the fewest examples, steps and tokens that still exercise every
cell. Each kernel loads its own model (nothing is shared with this process's fixtures) and runs in
a temporary working directory, since notebooks write runs/ and plan files relative to it.
Two kernels run at a time (GLASSHOUSE_NOTEBOOK_JOBS, default 2: CI's two cores), one thread each.
Committed notebooks carry no outputs, so none can go stale; set GLASSHOUSE_NOTEBOOK_OUT to a
folder to keep the executed copies.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

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


# Runs one notebook in a fresh kernel and writes the executed copy (argv: notebook, executed copy, working dir).
RUNNER = """
import sys, nbformat
from nbclient import NotebookClient
src, dst, cwd = sys.argv[1:]
nb = nbformat.read(src, as_version=4)
# timeout: per cell, a guard against a hung kernel (the largest cell takes well under a minute on a free core)
NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": cwd}}).execute()
nbformat.write(nb, dst)
"""


def _execute(path: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    work = out / path.stem
    work.mkdir()
    return subprocess.run([sys.executable, "-c", RUNNER, str(path), str(out / path.name), str(work)], env=env,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Every notebook executed, GLASSHOUSE_NOTEBOOK_JOBS (default 2: CI's cores) kernels at a time."""
    out = Path(os.environ.get("GLASSHOUSE_NOTEBOOK_OUT") or tmp_path_factory.mktemp("notebooks"))
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, SWITCH: "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",  # one core per kernel
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    jobs = int(os.environ.get("GLASSHOUSE_NOTEBOOK_JOBS", "2"))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        runs = dict(zip(NOTEBOOKS, pool.map(lambda p: _execute(p, out, env), NOTEBOOKS), strict=True))
    return out, runs


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_at_small_settings(path, executed):
    out, runs = executed
    run = runs[path]
    assert run.returncode == 0, f"{path.name} failed at small settings:\n{run.stderr[-6000:]}"
    nb = nbformat.read(out / path.name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    assert any(o.get("output_type") in ("stream", "execute_result", "display_data") for c in code for o in c.outputs)
