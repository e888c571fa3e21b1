"""Circuit evaluation: normalized faithfulness and faithfulness-versus-edges curves (spec:
circuits.md, "Evaluation").

The clean input is run with every edge outside the circuit patched (corrupted value, or the
span mean over the counterfactual prompts). Normalized faithfulness =
(m(circuit) - m(baseline)) / (m(clean) - m(baseline)), where baseline is the empty circuit
(all edges patched): 1 for the full graph and 0 for the empty one by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from circuits.eap import as_forward
from circuits.patching import full_keep, patched_metric
from circuits.scores import EdgeScores
from circuits.selection import Circuit, greedy, greedy_order
from circuits.tasks.base import TaskData
from probes.errors import InputError
from probes.progress import Reporter, as_reporter


def circuit_masks(circuit: Circuit, n_spans: int) -> tuple[Tensor, Tensor | None]:
    """keep [S, F, B] (and kv [S, S, F, 2, L, H] for a position-aware circuit) from its edges."""
    g = circuit.graph
    keep = torch.zeros(n_spans, g.n_forward, g.n_backward)
    kv = torch.zeros(n_spans, n_spans, g.n_forward, 2, g.n_layers, g.n_heads, dtype=torch.bool) \
        if circuit.position_aware else None
    per_layer = 3 * g.n_heads + 1
    for e in circuit.edges:
        if e.src_span is None:
            keep[:, e.u, e.slot] = 1
            continue
        layer, within = divmod(e.slot, per_layer)
        slot_kind, head = divmod(within, g.n_heads) if within < 3 * g.n_heads else (3, 0)
        if kv is not None and layer < g.n_layers and slot_kind in (1, 2):
            kv[e.src_span, e.dst_span, e.u, slot_kind - 1, layer, head] = True
        else:
            keep[e.src_span, e.u, e.slot] = 1
    return keep, kv


@dataclass
class Curve:
    """Faithfulness at each edge count of one circuit family."""

    label: str
    edges: list[int]
    faithfulness: list[float]
    area: float
    edges_to_80: int | None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "edges": self.edges, "faithfulness": self.faithfulness, "area": self.area,
                "edges_to_80": self.edges_to_80, **self.meta}


@dataclass
class Baselines:
    clean: float
    baseline: float
    ablation: str


def baselines(model: Any, task: TaskData, ablation: str = "corrupted") -> Baselines:
    """The metric of the full graph (clean) and of the empty circuit (all edges patched)."""
    gf = as_forward(model)
    S = len(task.schema)
    keep = full_keep(gf, S)
    b = Baselines(patched_metric(gf, task, keep, ablation=ablation),
                  patched_metric(gf, task, keep * 0, ablation=ablation), ablation)
    if abs(b.clean - b.baseline) < 1e-6:
        raise InputError(f"On task {task.name} the full graph and the empty circuit give the same metric: "
                         "faithfulness is undefined (nothing to attribute).")
    return b


def faithfulness(model: Any, task: TaskData, circuit: Circuit, base: Baselines) -> float:
    """Normalized faithfulness of one circuit."""
    keep, kv = circuit_masks(circuit, len(task.schema))
    value = patched_metric(model, task, keep, kv=kv, ablation=base.ablation)
    return (value - base.baseline) / (base.clean - base.baseline)


def next_count(count: int) -> int:
    """The next edge count on the 1-3-10 grid above `count` (10 -> 30 -> 100 -> 300 ...)."""
    step = 1
    while True:
        for c in (step, 3 * step):
            if c > count:
                return c
        step *= 10


def curve(model: Any, task: TaskData, scores: EdgeScores, counts: Sequence[int], position_aware: bool,
          base: Baselines, label: str = "", progress: bool = False, extend_to: float | None = None,
          reporter: Reporter | None = None) -> Curve:
    """Faithfulness of greedy circuits of each size in `counts` (area by the trapezoid rule over
    the edge-count axis scaled to 0..1).

    extend_to: when no count reaches this faithfulness, keep adding counts on the 1-3-10 grid
    (`next_count`) until one does or the greedy order runs out (its full length is the last count).
    reporter: probes.progress, per count (the extension is the last step).
    """
    if not counts or min(counts) < 1:
        raise InputError(f"A curve needs positive edge counts (got {list(counts)}).")
    gf = as_forward(model)
    counts = sorted(set(map(int, counts)))
    limit = 200_000 if extend_to is not None else max(counts) * 20
    order = greedy_order(scores, position_aware, limit=max(limit, max(counts) * 20))
    values, sizes = [], []

    def measure(n: int) -> None:
        circ = greedy(scores, n, position_aware, order=order)
        sizes.append(len(circ.edges))
        values.append(faithfulness(gf, task, circ, base))

    rep = as_reporter(reporter, progress, desc=f"curve {label}")
    steps = len(counts) + (extend_to is not None)
    for done, n in enumerate(list(counts), start=1):
        rep.check()
        measure(n)
        rep.update(f"faithfulness at {n} edges: {values[-1]:.3f}", done, steps)
    if extend_to is not None:
        while max(values) < extend_to and counts[-1] < len(order):
            rep.check()
            counts.append(min(next_count(counts[-1]), len(order)))
            measure(counts[-1])
            rep.update(f"faithfulness below {extend_to:g}: extended to {counts[-1]} edges: {values[-1]:.3f}",
                       steps - 1, steps)
        rep.update(f"curve done at {counts[-1]} edges", steps, steps)
    x = np.asarray(counts, dtype=float)
    span = x[-1] - x[0] if len(x) > 1 else 1.0
    area = float(np.trapezoid(values, x) / span) if len(x) > 1 else float(values[0])
    reach = next((int(c) for c, v in zip(counts, values, strict=True) if v >= 0.8), None)
    return Curve(label or ("position-aware" if position_aware else "position-agnostic"), list(map(int, counts)),
                 values, area, reach, {"pruned_sizes": sizes, "method": scores.method, "ablation": base.ablation,
                                       "greedy_order_length": len(order), "extend_to": extend_to})
