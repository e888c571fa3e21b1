"""Circuit discovery as a declared analysis (probes.analysis): one kind of circuit for one generated task.

Spec: docs/methods/circuits.md. One whole run (`compute`) of circuits.discover.discover: the greedy
circuit's faithfulness curve over the asked-for edge counts (no extension), and the drawn circuit's size.
A model circuits/ refuses (circuits.forward.refusal, e.g. Gemma 3) gives one row "unsupported" with the reason,
not a failure. Rows: "faithfulness" (position = edge count), "area", "edges_to_80", "clean_metric",
"empty_metric", "examples", "circuit_edges", "circuit_nodes". Atlas: one view per task. The `glasshouse
circuit` command (both kinds, EAP-IG, drawing) stays its own. Declared here, not in probes/, because probes
imports nothing above it; app/declared.py brings it in. Light at import (the command line reads it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probes.analysis import Analysis, AtlasView, FigureSpec, RunContext, setting
from probes.rows import ProbeRows, Row, by_key, line, pick, scalar, scalar_rows

if TYPE_CHECKING:
    from probes.model.model_like import ModelLike

TASK_NAMES = ("ioi", "greater_than", "succession")  # circuits.tasks.TASKS (tests check they agree)


@dataclass(frozen=True)
class CircuitSettings:
    task: str = setting("ioi", "the generated task", choices=TASK_NAMES)
    n: int = setting(16, "examples", minimum=1)
    method: str = setting("eap", "edge scores", choices=("eap", "eap-ig"))
    which: str = setting("aware", "which circuit", choices=("aware", "agnostic"))
    counts: str = setting("10,30,100,300,1000", "edge counts of the curve (comma separated)")


def compute(model: ModelLike, settings: CircuitSettings, run: RunContext) -> dict[str, Any]:
    from circuits.discover import discover
    from circuits.forward import refusal

    reason = refusal(model)
    if reason:
        return {"unsupported": reason}
    counts = sorted({int(c) for c in settings.counts.split(",")})
    res = discover(model, settings.task, n=settings.n, method=settings.method, which=settings.which, counts=counts,
                   seed=run.seed, progress=False, extend_to=None, reporter=run.reporter)
    (curve,) = res.curves
    drawn = res.circuits[curve.label]
    return {"edges": list(curve.edges), "faithfulness": [float(v) for v in curve.faithfulness], "area": curve.area,
            "edges_to_80": curve.edges_to_80, "clean_metric": float(res.base.clean),
            "empty_metric": float(res.base.baseline), "examples": len(res.task), "circuit_edges": len(drawn["edges"]),
            "circuit_nodes": len(drawn["nodes"])}


def rows(result: dict[str, Any]) -> list[Row]:
    if "unsupported" in result:
        return scalar_rows({"unsupported": result["unsupported"]})
    return ([{"metric": "faithfulness", "value": v, "layer": None, "head": None, "position": int(e)}
             for e, v in zip(result["edges"], result["faithfulness"], strict=True)]
            + scalar_rows({k: result[k] for k in ("area", "edges_to_80", "clean_metric", "empty_metric", "examples",
                                                   "circuit_edges", "circuit_nodes")}))


def headline(rows: ProbeRows) -> dict[str, Any]:
    r = rows["circuit"]
    if pick(r, "unsupported"):
        return {"unsupported": scalar(r, "unsupported").split(":")[-1].strip()}
    curve = by_key(r, "faithfulness", "position")
    return {"edges_to_80": scalar(r, "edges_to_80"), "area": scalar(r, "area"),
            f"faithfulness_at_{max(curve)}": curve[max(curve)], "clean_metric": scalar(r, "clean_metric"),
            "empty_metric": scalar(r, "empty_metric"), "circuit_edges": scalar(r, "circuit_edges")}


def curve(rows: ProbeRows) -> dict[str, Any]:
    faithfulness = by_key(rows["circuit"], "faithfulness", "position")
    return {"series": [line(faithfulness)]} if faithfulness else {}


def view(task: str) -> AtlasView:
    return AtlasView(
        name=f"circuit_{task}", title=f"Circuit: {task} (EAP)", headline=headline,
        budgets={"small": {"task": task, "method": "eap", "n": 4, "which": "agnostic", "counts": "100,1000"},
                 "standard": {"task": task, "method": "eap", "n": 16, "which": "aware",
                              "counts": "10,30,100,300,1000"}},
        figure=FigureSpec("curves", f"{task}: faithfulness of the greedy circuit against its size", curve, "edges",
                          "faithfulness"),
        notes="small budget: 4 examples, position-agnostic EAP; standard: 16 examples, position-aware (PEAP). "
              "faithfulness (m(circuit) - m(empty)) / (m(clean) - m(empty)) with corrupted activations outside the "
              "circuit; edges_to_80: the smallest edge count of the curve reaching 0.8 (null: none).")


CIRCUIT = Analysis(
    name="circuit",
    description="a position-aware (or agnostic) circuit for one generated task (circuits.discover)",
    method="docs/methods/circuits.md", settings=CircuitSettings, compute=compute, rows=rows, uses_corpus=False,
    atlas=tuple(view(task) for task in TASK_NAMES),
)

DECLARED = (CIRCUIT,)
