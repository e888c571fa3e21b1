"""Circuits' generated tasks in the one task format (probes/tasks; docs/tasks.md), so that `glasshouse eval`
scores a model on them and a ZeroTuning sweep reads them as it reads any task file.

A logit-difference task (IOI: logit(IO) - logit(S); succession: logit(next) - logit(next shifted)) becomes a
multiple-choice task: the prompt is the clean text, the answer the token with sign +1, the choices every
answer token (the correct one and the one it is compared with), the corrupted prompt the corrupted text.
Greater-than (a probability difference over every year above and below) has no single answer and is refused.
"""

from __future__ import annotations

from typing import Any

from circuits.tasks import make_task
from circuits.tasks.base import TaskData
from probes.errors import InputError
from probes.tasks.format import TaskSet, example_from

CONVERTIBLE = ("ioi", "succession")


def as_taskset(task: TaskData, model: Any, seed: int = 0) -> TaskSet:
    """The TaskSet of a generated logit-difference task (module docstring)."""
    if task.metric != "logit_diff" or not task.clean_text:
        raise InputError(f"The circuits task {task.name} ({task.metric}) has no single correct answer per example; "
                         f"accuracy reads the tasks {', '.join(CONVERTIBLE)}.")
    decode = model.tokenizer.decode
    records = []
    for i in range(len(task)):
        positive = [a for a, s in zip(task.answer_ids[i], task.answer_signs[i], strict=True) if s > 0]
        if len(positive) != 1:
            raise InputError(f"{task.name} example {i + 1} has {len(positive)} positive answers; one is needed.")
        choices = list(dict.fromkeys(decode([a]) for a in task.answer_ids[i]))
        records.append({"prompt": task.clean_text[i], "answer": decode([positive[0]]), "choices": choices,
                        "corrupted_prompt": task.corrupted_text[i]})
    return TaskSet(task.name, [example_from(r, f"{task.name} example {i}") for i, r in enumerate(records, start=1)],
                   seed=seed, source=f"circuits task: {task.name}")


def generated_taskset(name: str, model: Any, n: int = 32, seed: int = 0) -> TaskSet:
    """circuits.tasks.make_task(name, model, n, seed) in the task format."""
    return as_taskset(make_task(name, model, n=n, seed=seed), model, seed)
