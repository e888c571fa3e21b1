"""circuits/analysis.py declares the circuit analysis without importing the task generators (they import torch);
its task names must be the registry's."""

from __future__ import annotations


def test_declared_task_names_are_the_task_registry() -> None:
    from circuits.analysis import CIRCUIT, TASK_NAMES
    from circuits.tasks import TASKS

    assert TASK_NAMES == tuple(TASKS)
    assert CIRCUIT.info()["task"].choices == tuple(TASKS)
    assert [v.name for v in CIRCUIT.atlas] == [f"circuit_{t}" for t in TASKS]
