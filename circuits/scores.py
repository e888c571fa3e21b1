"""Edge scores and the runs they are computed from (spec: circuits.md, "Scores").

`EdgeScores.per_span[s, u, v]` is the mean over examples of the sum over the positions of span s
of (a_u(corrupted) - a_u(clean)) . dL/d(input of v): summing over spans gives the position-agnostic
EAP score. `kv` (position-aware only) holds crossing scores [src span, dst span, u, k|v, layer, head].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from circuits.forward import GraphForward, GraphRun
from circuits.graph import Graph
from circuits.schema import Schema
from circuits.tasks.base import Batch, TaskData, metric_values
from probes.errors import InputError


@dataclass
class EdgeScores:
    """Scores of every edge per span (and crossing scores for position-aware runs)."""

    graph: Graph
    schema: Schema
    method: str
    per_span: Float[Tensor, "n_spans n_forward n_backward"]
    span_sizes: Float[Tensor, " n_spans"]  # mean number of positions per span
    kv: Tensor | None = None
    clean_metric: float = float("nan")
    corrupted_metric: float = float("nan")

    @property
    def agnostic(self) -> Float[Tensor, "n_forward n_backward"]:
        """Position-agnostic scores: the per-span scores summed over spans."""
        return self.per_span.sum(0) * self.graph.edge_mask

    @property
    def per_span_mean(self) -> Tensor:
        """Per-span scores divided by the span's mean length (the average over its positions)."""
        return self.per_span / self.span_sizes.clamp(min=1)[:, None, None]

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "schema": list(self.schema.names), "clean_metric": self.clean_metric,
                "corrupted_metric": self.corrupted_metric, "span_sizes": self.span_sizes}


def batches(task: TaskData, batch_size: int) -> list[list[int]]:
    """Indices grouped by length (equal lengths together, then in chunks)."""
    order = sorted(range(len(task)), key=lambda i: len(task.clean[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def plain_run(gf: GraphForward, ids: Tensor, batch: Batch) -> GraphRun:
    """A no-gradient run with every node's output kept."""
    with torch.no_grad():
        return gf.run(gf.embed(ids.to(gf.model.device)), last=batch.last)


def grad_run(gf: GraphForward, input_acts: Tensor, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of the summed metric w.r.t. every slot input [b, p, n_backward, d] and every head
    output [b, p, L, H, d]; also the metric values [b]."""
    x = input_acts.detach().requires_grad_(True)
    run = gf.run(x, last=batch.last, grad=True)
    values = metric_values(run.logits, batch)
    assert run.logits_input is not None
    wrt: list[Tensor] = run.slot_inputs + run.mlp_inputs + [run.logits_input] + run.head_outputs
    raw = torch.autograd.grad(values.sum(), wrt, allow_unused=True)
    grads = [torch.zeros_like(w) if g is None else g for w, g in zip(wrt, raw, strict=True)]
    L = gf.L
    slots = []
    for layer in range(L):
        slots += [grads[layer], grads[L + layer][:, :, None]]
    slots.append(grads[2 * L][:, :, None])
    heads = torch.stack(grads[2 * L + 1 :], dim=2)
    return torch.cat(slots, dim=2), heads, values.detach()


def span_scores(delta: Tensor, grads: Tensor, batch: Batch, n_spans: int) -> Tensor:
    """sum over the positions of each span of delta [b,p,F,d] . grads [b,p,B,d] -> [S, F, B]."""
    out = delta.new_zeros(n_spans, delta.shape[2], grads.shape[2])
    for s in range(n_spans):
        rows = (batch.span_ids.to(delta.device) == s) & batch.valid.to(delta.device)
        if rows.any():
            out[s] = torch.einsum("nfd,nbd->fb", delta[rows], grads[rows])
    return out


def span_sizes(task: TaskData) -> Tensor:
    starts = torch.tensor(task.starts, dtype=torch.float)
    lengths = torch.tensor([len(c) for c in task.clean], dtype=torch.float)
    ends = torch.cat([starts[:, 1:], lengths[:, None]], dim=1)
    return (ends - starts).mean(0)


def check_not_constant(clean: float, corrupted: float, task: str) -> None:
    """A metric equal on clean and corrupted inputs leaves nothing to attribute."""
    if not abs(clean - corrupted) > 1e-6:
        raise InputError(
            f"The metric of task {task} is the same on clean and corrupted inputs ({clean:.6g}): there is nothing "
            "to attribute. Check the corrupted prompts and the answer tokens."
        )
