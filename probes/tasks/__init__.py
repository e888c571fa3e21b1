"""Tasks in one format for accuracy, attention interventions and circuits (docs/tasks.md)."""

from probes.tasks.builtin import builtin_names, load_task, make_builtin
from probes.tasks.format import TaskExample, TaskSet, require_equal_lengths, require_single_token

__all__ = ["TaskExample", "TaskSet", "builtin_names", "load_task", "make_builtin", "require_equal_lengths",
           "require_single_token"]
