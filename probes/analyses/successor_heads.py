"""Successor heads as declared analyses: the first-order view (`successor_score`, effective OV score per head)
and the in-context view (`successor_in_context`, DLA to the correct successor).

Spec: docs/methods/successor-heads.md (Gould et al. 2023). Both are whole runs (`compute`) that make their own
inputs from the tokenizer (the succession tasks), so the corpus is not used. successor_score:
probes.successor.score.score_heads; rows "successor_score" per (layer, head). successor_in_context:
probes.successor.in_context.in_context_scores; rows "mean_dla" and "mean_rank_accuracy" per (layer, head; means
over tasks), "task", "chance" and "model_task_accuracy" per task (position = task).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probes.analysis import Analysis, AtlasView, FigureSpec, RunContext, setting
from probes.rows import (
    ProbeRows,
    Row,
    by_head,
    head_name,
    heads_figure,
    mean,
    ranked,
    ranked_rows,
    tensor_rows,
    top_head,
)

if TYPE_CHECKING:
    from probes.model.model_like import ModelLike


@dataclass(frozen=True)
class ScoreSettings:
    norm: str = setting("auto", "norms on the OV path", choices=("auto", "none", "mlp", "all"))
    source: str = setting("mlp0", "token representation the head reads", choices=("mlp0", "resid"))


@dataclass(frozen=True)
class InContextSettings:
    max_prompts: int = setting(20, "prompts per task", minimum=1)


def compute_scores(model: ModelLike, settings: ScoreSettings, run: RunContext) -> dict[str, Any]:
    from probes.successor.ov import OVSettings
    from probes.successor.score import score_heads

    found = score_heads(model, settings=OVSettings(norm=settings.norm, source=settings.source),  # type: ignore[arg-type]
                        reporter=run.reporter)
    return {"scores": found.scores}


def score_rows(result: dict[str, Any]) -> list[Row]:
    return tensor_rows("successor_score", result["scores"])


def score_headline(rows: ProbeRows) -> dict[str, Any]:
    scores = by_head(rows["successor_score"], "successor_score")
    top = top_head(scores)
    return {"max_successor_score": scores[top], "best_head": head_name(top)}


def compute_in_context(model: ModelLike, settings: InContextSettings, run: RunContext) -> dict[str, Any]:
    from probes.successor.in_context import in_context_scores

    ic = in_context_scores(model, max_prompts=settings.max_prompts, reporter=run.reporter)  # type: ignore[arg-type]
    return {"mean_dla": ic.overall, "mean_rank_accuracy": ic.rank_accuracy.mean(dim=0), "tasks": ic.task_names,
            "chance": ic.chance, "model_task_accuracy": ic.model_task_accuracy}


def in_context_rows(result: dict[str, Any]) -> list[Row]:
    return (tensor_rows("mean_dla", result["mean_dla"]) + tensor_rows("mean_rank_accuracy", result["mean_rank_accuracy"])
            + ranked_rows("task", result["tasks"]) + ranked_rows("chance", result["chance"])
            + ranked_rows("model_task_accuracy", result["model_task_accuracy"]))


def in_context_headline(rows: ProbeRows) -> dict[str, Any]:
    r = rows["successor_in_context"]
    dla, acc = by_head(r, "mean_dla"), by_head(r, "mean_rank_accuracy")
    top = top_head(dla)
    return {"best_head": head_name(top), "best_mean_dla": dla[top], "best_rank_accuracy": acc[top],
            "chance": mean(ranked(r, "chance")), "model_task_accuracy": mean(ranked(r, "model_task_accuracy"))}


def accuracy_bars(rows: ProbeRows) -> dict[str, Any]:
    r = rows["successor_in_context"]
    return {"series": [{"name": "", "x": ranked(r, "task"), "y": ranked(r, "model_task_accuracy")},
                       {"name": "chance", "x": ranked(r, "task"), "y": ranked(r, "chance")}]}


SUCCESSOR_SCORE = Analysis(
    name="successor_score",
    description="first-order successor score per head (Gould et al. 2023)",
    method="docs/methods/successor-heads.md", settings=ScoreSettings, compute=compute_scores, rows=score_rows,
    uses_corpus=False,
    atlas=(AtlasView(
        name="successor_heads", title="Successor heads, first-order view (effective OV score)",
        headline=score_headline,
        figure=heads_figure("successor_score", "successor_score", "Successor score per head", "score", 0.0, 1.0),
        notes="the corpus is not used (the tasks come from the tokenizer)."),),
)

SUCCESSOR_IN_CONTEXT = Analysis(
    name="successor_in_context",
    description="successor heads, in-context view: DLA to the correct successor",
    method="docs/methods/successor-heads.md", settings=InContextSettings, compute=compute_in_context,
    rows=in_context_rows, uses_corpus=False,
    atlas=(AtlasView(
        name="successor_in_context", title="Successor heads, in-context view (DLA to the successor)",
        headline=in_context_headline, budgets={"small": {"max_prompts": 10}, "standard": {"max_prompts": 20}},
        figure=FigureSpec("bars", "The model's accuracy per succession task (among the task's targets)",
                          accuracy_bars, "task", "accuracy"),
        notes="best head: the largest mean DLA over the tasks; rank accuracy: how often the correct successor has "
              "that head's highest DLA among the task's targets."),),
)

DECLARED = (SUCCESSOR_SCORE, SUCCESSOR_IN_CONTEXT)
