"""One circuit-discovery run: scores, greedy circuits, faithfulness curves, exported circuits
(spec: circuits.md, "Scores", "Position-aware EAP", "Evaluation"). The CLI and the notebook call this.

Methods: "eap" (position-aware: PEAP, i.e. EAP per span plus exact crossing key/value scores) and
"eap-ig" (EAP-IG per span; position-aware crossing scores are PEAP's, from the clean-run gradient,
since the crossing recomputation is defined at the clean input). The position-agnostic ranking is
always the per-span scores summed over spans.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from circuits.eap import as_forward
from circuits.eap_ig import eap_ig
from circuits.export import circuit_to_dict
from circuits.faithfulness import Baselines, Curve, baselines, curve
from circuits.patching import ABLATIONS
from circuits.peap import peap
from circuits.scores import EdgeScores
from circuits.selection import greedy
from circuits.tasks import TaskData, make_task
from probes.errors import InputError
from probes.progress import Reporter, as_reporter
from probes.results import result_metadata

METHODS = ("eap", "eap-ig")
DEFAULT_COUNTS = (10, 30, 100, 300, 1000, 3000, 10000)
WHICH = {"both": (False, True), "aware": (True,), "agnostic": (False,)}


@dataclass
class Discovery:
    """Scores, baselines, one curve per kind of circuit, and the drawn circuits (circuit_to_dict form)."""

    task: TaskData
    scores: EdgeScores
    base: Baselines
    curves: list[Curve]
    circuits: dict[str, dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "circuit", **self.meta, "task": self.task.to_dict(), "scores": self.scores.to_dict(),
                "full_graph_metric": self.base.clean, "empty_circuit_metric": self.base.baseline,
                "ablation": self.base.ablation, "curves": [c.to_dict() for c in self.curves],
                "circuits": self.circuits}


def score_edges(model: Any, task: TaskData, method: str = "eap", steps: int = 5, position_aware: bool = True,
                progress: bool = False, reporter: Reporter | None = None) -> EdgeScores:
    """Edge scores by `method`; crossing key/value scores too when position_aware.
    reporter: probes.progress (default: a terminal bar per stage when progress)."""
    if method not in METHODS:
        raise InputError(f"Unknown method '{method}'. Use one of {METHODS}.")
    if method == "eap":
        if position_aware:
            return peap(model, task, progress=progress, reporter=reporter)
        return _eap(model, task, progress, reporter)
    first = None if reporter is None else reporter.part(0.0, 0.5 if position_aware else 1.0)
    scores = eap_ig(model, task, steps=steps, progress=progress, reporter=first)
    if position_aware:
        scores.kv = peap(model, task, progress=progress,
                         reporter=None if reporter is None else reporter.part(0.5, 1.0)).kv
    return scores


def _eap(model: Any, task: TaskData, progress: bool, reporter: Reporter | None) -> EdgeScores:
    from circuits.eap import eap

    return eap(model, task, progress=progress, reporter=reporter)


def discover(model: Any, task: str | TaskData, n: int = 16, method: str = "eap", steps: int = 5,
             which: str = "both", counts: Sequence[int] = DEFAULT_COUNTS, seed: int = 0,
             draw: int | None = None, progress: bool = True, extend_to: float | None = 0.8,
             ablation: str = "corrupted", reporter: Reporter | None = None,
             max_draw: int | None = None) -> Discovery:
    """Score edges, measure greedy circuits at each edge count, export the drawn circuit of each kind
    (`draw` edges, default the smallest count reaching faithfulness 0.8, else the largest count).

    extend_to: a curve that reaches no such faithfulness on `counts` goes on along the 1-3-10 grid
    until it does (None: exactly `counts`). ablation: "corrupted" (each example's corrupted
    activations) or "mean" (means over the corrupted prompts of the same template, per span and
    offset; spec: circuits.md, "Position-aware EAP"). max_draw caps the drawn circuit's edges (the app
    draws every edge). reporter (probes.progress): one fraction over the whole run, checked for a
    cancel between steps; without one, `progress` gives a terminal bar.
    """
    if which not in WHICH:
        raise InputError(f"Unknown circuit kind '{which}'. Use one of {list(WHICH)}.")
    if ablation not in ABLATIONS:
        raise InputError(f"Unknown ablation '{ablation}'. Use one of {ABLATIONS}.")
    if not counts or min(counts) < 1:
        raise InputError(f"The curve needs positive edge counts (got {list(counts)}).")
    if max_draw is not None and max_draw < 1:
        raise InputError(f"max_draw must be at least 1 (got {max_draw}).")
    rep = as_reporter(reporter, progress, desc="circuit")
    rep.update("building the task", 0, 1)
    gf = as_forward(model)
    data = make_task(task, gf.model, n=n, seed=seed) if isinstance(task, str) else task
    kinds = WHICH[which]
    rep.check()
    rep.update(f"scoring every edge ({method}, {len(data)} examples)", 0.02, 1)
    scores = score_edges(gf, data, method, steps, position_aware=True in kinds, reporter=rep.part(0.02, 0.5))
    rep.check()
    rep.update("full graph and empty circuit", 0.5, 1)
    base = baselines(gf, data, ablation=ablation)
    curves, circuits = [], {}
    share = 0.45 / len(kinds)
    for i, aware in enumerate(kinds):
        rep.check()
        kind = "position-aware" if aware else "position-agnostic"
        rep.update(f"faithfulness of {kind} circuits", 0.55 + i * share, 1)
        c = curve(gf, data, scores, list(counts), aware, base, extend_to=extend_to,
                  reporter=rep.part(0.55 + i * share, 0.55 + (i + 1) * share))
        curves.append(c)
        size = draw or c.edges_to_80 or max(c.edges)
        circ = greedy(scores, min(size, max_draw) if max_draw else size, aware)
        circuits[c.label] = circuit_to_dict(circ, data.schema)
    settings = {"task": data.name, "n": len(data), "method": method, "steps": steps, "which": which,
                "counts": list(counts), "draw": draw, "extend_to": extend_to, "ablation": ablation}
    rep.update("done", 1, 1)
    rep.close()
    return Discovery(data, scores, base, curves, circuits, result_metadata(gf.model, settings, seed))
