"""Tasks by name (spec: circuits.md, "Tasks"): each generator takes (model, n, seed) -> TaskData."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from circuits.tasks.base import Batch, TaskData, metric_values
from circuits.tasks.greater_than import make_greater_than
from circuits.tasks.ioi import make_ioi
from circuits.tasks.succession import make_succession
from probes.errors import InputError

TASKS: dict[str, Callable[..., TaskData]] = {
    "ioi": make_ioi,
    "greater_than": make_greater_than,
    "succession": make_succession,
}


def make_task(name: str, model: Any, n: int = 32, seed: int = 0) -> TaskData:
    """Generate a task by name for the model's tokenizer."""
    key = name.replace("-", "_")
    if key not in TASKS:
        raise InputError(f"Unknown task '{name}'. Choose one of: {', '.join(TASKS)}.")
    return TASKS[key](model, n=n, seed=seed)


__all__ = ["TASKS", "Batch", "TaskData", "make_task", "metric_values"]
