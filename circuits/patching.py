"""Exact patching: runs with edges outside a kept set substituted (spec: circuits.md, "Scores",
"Evaluation"). The reference for EAP, and the engine of circuit evaluation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from circuits.forward import GraphForward, Patch
from circuits.schema import span_ids
from circuits.scores import batches, plain_run
from circuits.tasks.base import TaskData, metric_values
from probes.errors import InputError

ABLATIONS = ("corrupted", "mean")


def mean_keys(task: TaskData) -> tuple[list[list[int]], int]:
    """The key of every position of every example for mean ablation, and the number of keys.

    Positions share a key when their examples come from the same template and they sit in the same
    span at the same offset from the span's first token (spec: circuits.md, "Position-aware EAP":
    means over counterfactual prompts with the same template).
    """
    index: dict[tuple[int, int, int], int] = {}
    keys = []
    for i, ids in enumerate(task.clean):
        spans = span_ids(task.starts[i], len(ids), len(ids)).tolist()
        row = [index.setdefault((task.template_of(i), s, p - task.starts[i][s]), len(index))
               for p, s in enumerate(spans)]
        keys.append(row)
    return keys, len(index)


def template_means(gf: GraphForward, task: TaskData, batch_size: int = 16) -> tuple[Tensor, list[list[int]]]:
    """Mean corrupted output of every node at every mean-ablation key ([n_keys, F, d]) and the keys
    of each example's positions (see `mean_keys`)."""
    keys, n_keys = mean_keys(task)
    sums = torch.zeros(n_keys, gf.graph.n_forward, gf.d)
    counts = torch.zeros(n_keys)
    for idx in batches(task, batch_size):
        batch = task.batch(idx)
        acts = plain_run(gf, batch.corrupted, batch).acts.float().cpu()
        for j, i in enumerate(idx):
            k = torch.tensor(keys[i])
            sums.index_add_(0, k, acts[j, : len(k)])
            counts.index_add_(0, k, torch.ones(len(k)))
    return sums / counts[:, None, None], keys


def _gather_means(means: Tensor, keys: list[list[int]], idx: list[int], length: int, like: Tensor) -> Tensor:
    """[batch, pos, F, d] mean-ablation values for the examples `idx` (padding: key 0, never read)."""
    k = torch.zeros(len(idx), length, dtype=torch.long)
    for j, i in enumerate(idx):
        k[j, : len(keys[i])] = torch.tensor(keys[i])
    return means[k].to(device=like.device, dtype=like.dtype)


def patched_metric(model: Any, task: TaskData, keep: Tensor, kv: Tensor | None = None,
                   ablation: str = "corrupted", batch_size: int = 16) -> float:
    """Mean metric over the task with every edge outside `keep` (and `kv`) substituted.

    ablation "corrupted": each example's corrupted activations; "mean": the mean corrupted
    activation over the task's examples of the same template, at the same span and offset within
    the span (`mean_keys`).
    """
    if ablation not in ABLATIONS:
        raise InputError(f"Unknown ablation '{ablation}'. Use one of {ABLATIONS}.")
    gf = model if isinstance(model, GraphForward) else GraphForward(model)
    means = template_means(gf, task, batch_size) if ablation == "mean" else None
    total = 0.0
    for idx in batches(task, batch_size):
        batch = task.batch(idx)
        clean_in = gf.embed(batch.clean.to(gf.model.device))
        if means is None:
            corr = plain_run(gf, batch.corrupted, batch).acts
        else:
            corr = _gather_means(means[0], means[1], idx, batch.clean.shape[1], clean_in)
        patch = Patch(corrupted=corr, keep=keep.to(corr.device, corr.dtype), span_ids=batch.span_ids.to(corr.device),
                      kv=None if kv is None else kv.to(corr.device))
        with torch.no_grad():
            run = gf.run(clean_in, last=batch.last, patch=patch)
        total += float(metric_values(run.logits, batch).sum())
    return total / len(task)


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
