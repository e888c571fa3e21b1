"""Edge attribution patching, EAP (Syed et al. 2023; spec: circuits.md, "Scores").

score(u -> v) = mean over examples of sum over positions and d_model of
(a_u(corrupted) - a_u(clean)) * dL/d(input of v) on the clean run, kept per span
(`EdgeScores.per_span`); the position-agnostic score is their sum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from circuits.forward import GraphForward
from circuits.scores import (
    EdgeScores,
    batches,
    check_not_constant,
    grad_run,
    plain_run,
    span_scores,
    span_sizes,
)
from circuits.tasks.base import Batch, TaskData
from probes.progress import Reporter, as_reporter

GradPoints = Callable[[Tensor, Tensor], list[Tensor]]


def as_forward(model: Any) -> GraphForward:
    return model if isinstance(model, GraphForward) else GraphForward(model)


def attribute(model: Any, task: TaskData, points: GradPoints, method: str, batch_size: int = 8,
              progress: bool = False, reporter: Reporter | None = None) -> EdgeScores:
    """Shared loop: gradients averaged over `points(clean_input, corrupted_input)` times the
    activation difference, per span, averaged over examples. reporter: probes.progress, per batch."""
    gf = as_forward(model)
    S = len(task.schema)
    total = torch.zeros(S, gf.graph.n_forward, gf.graph.n_backward)
    clean_sum = corr_sum = 0.0
    rep = as_reporter(reporter, progress, desc=method)
    todo = list(batches(task, batch_size))
    for done, idx in enumerate(todo, start=1):
        rep.check()
        batch = task.batch(idx)
        clean, corr = plain_run(gf, batch.clean, batch), plain_run(gf, batch.corrupted, batch)
        clean_sum += float(_metric(clean.logits, batch).sum())
        corr_sum += float(_metric(corr.logits, batch).sum())
        inputs = points(clean.acts[:, :, 0], corr.acts[:, :, 0])
        grads = grad_run(gf, inputs[0], batch)[0]
        for x in inputs[1:]:  # a running sum: one gradient tensor held at a time
            grads += grad_run(gf, x, batch)[0]
        grads /= len(inputs)
        total += span_scores(corr.acts - clean.acts, grads, batch, S).cpu()
        rep.update(f"{method}: batch {done} of {len(todo)}", done, len(todo))
    n = len(task)
    check_not_constant(clean_sum / n, corr_sum / n, task.name)
    return EdgeScores(gf.graph, task.schema, method, total / n, span_sizes(task),
                      clean_metric=clean_sum / n, corrupted_metric=corr_sum / n)


def _metric(logits: Tensor, batch: Batch) -> Tensor:
    from circuits.tasks.base import metric_values

    return metric_values(logits, batch)


def eap(model: Any, task: TaskData, batch_size: int = 8, progress: bool = False,
        reporter: Reporter | None = None) -> EdgeScores:
    """EAP scores per span (gradients on the clean run)."""
    return attribute(model, task, lambda clean, corr: [clean], "eap", batch_size, progress, reporter)
