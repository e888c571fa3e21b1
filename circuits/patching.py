"""Exact patching: runs with edges outside a kept set substituted (spec: circuits.md, "Scores",
"Evaluation"). The reference for EAP, and the engine of circuit evaluation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from circuits.forward import GraphForward, Patch
from circuits.scores import batches, plain_run
from circuits.tasks.base import Batch, TaskData, metric_values
from probes.errors import InputError

ABLATIONS = ("corrupted", "mean")


def span_mean(acts: Tensor, batch: Batch, n_spans: int) -> Tensor:
    """Mean activation of each span over its positions and all examples: [S, F, d]."""
    out = acts.new_zeros(n_spans, acts.shape[2], acts.shape[3])
    for s in range(n_spans):
        rows = (batch.span_ids == s) & batch.valid
        if rows.any():
            out[s] = acts[rows].mean(0)
    return out


def patched_metric(model: Any, task: TaskData, keep: Tensor, kv: Tensor | None = None,
                   ablation: str = "corrupted", batch_size: int = 16) -> float:
    """Mean metric over the task with every edge outside `keep` (and `kv`) substituted.

    ablation "corrupted": each example's corrupted activations; "mean": the mean corrupted
    activation of the span (over all positions of that span in all examples of the task).
    """
    if ablation not in ABLATIONS:
        raise InputError(f"Unknown ablation '{ablation}'. Use one of {ABLATIONS}.")
    gf = model if isinstance(model, GraphForward) else GraphForward(model)
    S = len(task.schema)
    means = _task_means(gf, task, S) if ablation == "mean" else None
    total = 0.0
    for idx in batches(task, batch_size):
        batch = task.batch(idx)
        corr = plain_run(gf, batch.corrupted, batch).acts
        if means is not None:
            corr = means[batch.span_ids]
        clean_in = gf.embed(batch.clean.to(gf.model.device))
        patch = Patch(corrupted=corr, keep=keep.to(corr.dtype), span_ids=batch.span_ids, kv=kv)
        with torch.no_grad():
            run = gf.run(clean_in, last=batch.last, patch=patch)
        total += float(metric_values(run.logits, batch).sum())
    return total / len(task)


def _task_means(gf: GraphForward, task: TaskData, S: int) -> Tensor:
    batch = task.batch()
    acts = plain_run(gf, batch.corrupted, batch).acts
    return span_mean(acts, batch, S)


def full_keep(gf: GraphForward, n_spans: int) -> Tensor:
    return gf.graph.edge_mask.float()[None].repeat(n_spans, 1, 1)


def edge_effect(model: Any, task: TaskData, u: int, v: int, span: int | None = None) -> float:
    """Metric change when the single edge u -> v carries its corrupted value (at one span or all)."""
    gf = model if isinstance(model, GraphForward) else GraphForward(model)
    S = len(task.schema)
    keep = full_keep(gf, S)
    if span is None:
        keep[:, u, v] = 0
    else:
        keep[span, u, v] = 0
    return patched_metric(gf, task, keep) - patched_metric(gf, task, full_keep(gf, S))


def kv_edge_effect(model: Any, task: TaskData, u: int, layer: int, head: int, which: int, src: int, dst: int) -> float:
    """Metric change when node u's edge into head (layer, head)'s key (which=0) or value (1), read at
    span `src` by queries in span `dst`, carries its corrupted value."""
    gf = model if isinstance(model, GraphForward) else GraphForward(model)
    S, g = len(task.schema), gf.graph
    kv = torch.ones(S, S, g.n_forward, 2, g.n_layers, g.n_heads, dtype=torch.bool)
    kv[src, dst, u, which, layer, head] = False
    base = patched_metric(gf, task, full_keep(gf, S))
    return patched_metric(gf, task, full_keep(gf, S), kv=kv) - base
