"""The successor-head report (`glasshouse successor`): the first-order (effective OV) score, the in-context DLA
view, the mod-10 features and natural-text examples.

Spec: docs/methods/successor-heads.md. One whole run, with no corpus of its own: probes.successor.score_heads
reads the weights (succession tasks from the tokenizer), in_context_scores measures per-head DLA on n
succession prompts per task where the model runs (ModelLike.head_dla), mod10_analysis probes the top OV head
and natural_text_effects ablates the top in-context head on `natural` corpus windows (seed). A remote run
measures the in-context view only (the rest reads weights or runs hooks here) and says so. The result is the
saved document of kind "successor". Rows: "first_order_top_score", "in_context_top_mean_dla" (with their
heads), and per task "model_accuracy_<task>".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probes.analysis import Analysis, RunContext, setting
from probes.rows import Row

if TYPE_CHECKING:
    from probes.model.model_like import ModelLike

LOCAL_ONLY = "the first-order OV score, mod-10 and natural-text views read weights or run hooks: --backend local only"


@dataclass(frozen=True)
class SuccessorReportSettings:
    norm: str = setting("auto", "norms on the OV path (auto: none for LayerNorm models, all for RMSNorm)",
                        choices=("auto", "none", "mlp", "all"))
    source: str = setting("mlp0", "what a head reads for a token", choices=("mlp0", "resid"))
    threshold: float = setting(0.4, "score (in [0, 1]) listing a head as a successor head", minimum=0.0,
                               maximum=1.0)
    n: int = setting(20, "in-context prompts per task", minimum=1, aliases=("max_prompts",))
    natural: int = setting(8, "corpus windows for the natural-text view (0: skip)", minimum=0)


def compute(model: ModelLike, settings: SuccessorReportSettings, run: RunContext) -> dict[str, Any]:
    from probes.successor import (
        OVSettings,
        in_context_scores,
        mod10_analysis,
        natural_text_effects,
        score_heads,
    )

    rep = run.reporter
    if model.backend != "local":
        ic = in_context_scores(model, max_prompts=settings.n, reporter=rep)
        return {"kind": "successor", "in_context": ic.to_dict(), "left_out": LOCAL_ONLY}
    ov = OVSettings(norm=settings.norm, source=settings.source)
    scores = score_heads(model, settings=ov, threshold=settings.threshold,  # type: ignore[arg-type]
                         reporter=rep.part(0.0, 0.4))
    ic = in_context_scores(model, max_prompts=settings.n, reporter=rep.part(0.4, 0.7))
    mod10 = mod10_analysis(model, head=scores.top_head, dataset=scores.dataset, settings=ov,  # type: ignore[arg-type]
                           seed=run.seed)
    ic_top = ic.ranking(1)[0]
    natural = (natural_text_effects(model, ic_top["layer"], ic_top["head"], n=settings.natural,  # type: ignore[arg-type]
                                    seed=run.seed, reporter=rep.part(0.7, 1.0)) if settings.natural > 0 else None)
    return {"kind": "successor", "first_order": scores.to_dict(), "in_context": ic.to_dict(),
            "mod10": mod10.to_dict(), "natural_text": natural.to_dict() if natural else None}


def _top(view: dict[str, Any], key: str) -> dict[str, Any]:
    return dict(view["ranking"][0]) if view and view.get("ranking") else {key: float("nan"), "layer": None,
                                                                          "head": None}


def rows(result: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    if result.get("first_order"):
        top = _top(result["first_order"], "score")
        out.append({"metric": "first_order_top_score", "value": float(top["score"]), "layer": top["layer"],
                    "head": top["head"], "position": None})
    ic = result["in_context"]
    top = _top(ic, "mean_dla")
    out.append({"metric": "in_context_top_mean_dla", "value": float(top["mean_dla"]), "layer": top["layer"],
                "head": top["head"], "position": None})
    out += [{"metric": f"model_accuracy_{task}", "value": float(v), "layer": None, "head": None, "position": None}
            for task, v in ic["model_accuracy"].items()]
    return out


def summary(result: dict[str, Any]) -> list[str]:
    lines = []
    if result.get("first_order"):
        sd = result["first_order"]
        top = sd["ranking"][0]
        lines.append(f"first-order top head L{top['layer']}H{top['head']} score {top['score']:.3f} "
                     f"(chance {sd['chance']:.3f})")
    ic_top = result["in_context"]["ranking"][0]
    lines.append(f"in-context top head L{ic_top['layer']}H{ic_top['head']} mean DLA {ic_top['mean_dla']:.3f} logits")
    if result.get("mod10"):
        lines.append(f"mod-10: {result['mod10']['status']} {result['mod10']['reason']}")
    if result.get("left_out"):
        lines.append(f"remote backend: {result['left_out']}")
    return lines


SUCCESSOR_REPORT = Analysis(
    name="successor", document="successor",
    description="find successor heads (effective OV score and in-context DLA)",
    method="docs/methods/successor-heads.md", settings=SuccessorReportSettings, compute=compute, rows=rows,
    uses_corpus=False, remote=True, summary=summary,
)

DECLARED = (SUCCESSOR_REPORT,)
