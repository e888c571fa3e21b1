"""Circuits' generated tasks in the task format (circuits/tasks/as_taskset.py): the same token ids, and an
accuracy equal to the fraction of examples whose logit difference (circuits' own metric) is positive."""

from __future__ import annotations

import pytest
import torch

from circuits.tasks import make_task, metric_values
from circuits.tasks.as_taskset import as_taskset
from probes.accuracy import prompt_ids, score_task
from probes.errors import InputError


@pytest.mark.parametrize("name", ["ioi", "succession"])
def test_accuracy_is_the_share_of_positive_logit_differences(smollm, name):
    data = make_task(name, smollm, n=12, seed=2)
    task = as_taskset(data, smollm)
    assert [prompt_ids(smollm, ex.prompt) for ex in task.examples] == data.clean
    assert all(ex.corrupted_prompt == data.corrupted_text[i] for i, ex in enumerate(task.examples))
    batch = data.batch()
    with torch.no_grad():
        logits = smollm.forward(batch.clean, attention="patterns")
    diff = metric_values(logits[torch.arange(len(data)), batch.last], batch)
    assert score_task(smollm, task, "all").correct == int((diff > 0).sum())


def test_greater_than_is_refused(smollm):
    with pytest.raises(InputError, match="no single correct answer"):
        as_taskset(make_task("greater_than", smollm, n=4), smollm)
