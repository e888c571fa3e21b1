"""Figures for successor heads (docs/methods/successor-heads.md): layer x head heatmaps with hover, per-task
bars with chance, the top head's confusion, and one head's top OV predictions.

Inputs are plain data: SuccessorScores.to_dict() (score_heatmap, top_head_bars, confusion_figure),
InContextScores.to_dict() (dla_heatmap, in_context_top_head_bars), rows of the page's live view
(prediction_figure).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from app.figures.theme import DIVERGING_SCALE, HEATMAP_SCALE, apply_theme, plain, token_label


def head_heatmap(values: list[list[float]], per_task: dict[str, list[list[float]]], title: str, unit: str,
                 diverging: bool = False) -> go.Figure:
    """A layer x head heatmap; hover shows the value and every task's value for that head."""
    hover = [[f"L{la}H{h}: {values[la][h]:.3f} {unit}<br>" + "<br>".join(
        f"{t}: {v[la][h]:.3f}" for t, v in per_task.items()) for h in range(len(values[0]))] for la in range(len(values))]
    fig = go.Figure(go.Heatmap(z=values, text=hover, hoverinfo="text", colorbar={"title": unit},
                               colorscale=DIVERGING_SCALE if diverging else HEATMAP_SCALE,
                               zmid=0 if diverging else None))
    fig.update_layout(title=title, xaxis_title="head (index)", yaxis_title="layer (index)")
    return apply_theme(fig)


def score_heatmap(scores: Mapping[str, Any]) -> go.Figure:
    """First-order successor score (fraction of pairs) of every head."""
    scores = plain(scores)
    s = scores["metadata"]["settings"]
    title = (f"Successor score per head (effective OV, norm={s['norm']}, source={s['source']}); "
             f"chance {scores['chance']:.3f}")
    return head_heatmap(scores["scores"], scores["per_task"], title, "fraction of pairs")


def dla_heatmap(ic: Mapping[str, Any]) -> go.Figure:
    """In-context mean DLA to the correct successor (mean over tasks) of every head."""
    ic = plain(ic)
    tasks = list(ic["dla"])
    n_l, n_h = len(ic["dla"][tasks[0]]), len(ic["dla"][tasks[0]][0])
    mean = [[sum(ic["dla"][t][la][h] for t in tasks) / len(tasks) for h in range(n_h)] for la in range(n_l)]
    return head_heatmap(mean, ic["dla"], "In-context direct logit attribution to the correct successor "
                        "(mean over tasks)", "logits", diverging=True)


def task_bars(per_task: dict[str, float], chance: dict[str, float], title: str, y_title: str) -> go.Figure:
    """One bar per task with its chance level beside it."""
    tasks = list(per_task)
    fig = go.Figure([
        go.Bar(name="head", x=tasks, y=[per_task[t] for t in tasks],
               hovertemplate="%{x}: %{y:.3f}<extra>head</extra>"),
        go.Bar(name="chance", x=tasks, y=[chance[t] for t in tasks], marker_color="#BBBBBB",
               hovertemplate="%{x}: chance %{y:.3f}<extra></extra>"),
    ])
    fig.update_layout(title=title, xaxis_title="task", yaxis_title=y_title, barmode="group")
    return apply_theme(fig)


def top_head_bars(scores: Mapping[str, Any]) -> go.Figure:
    """The top first-order head's accuracy per task beside chance."""
    scores = plain(scores)
    top = scores["top_head"]
    return task_bars(top["per_task"], scores["task_chance"],
                     f"Top first-order head L{top['layer']}H{top['head']}: accuracy per task vs chance",
                     "accuracy (fraction of pairs)")


def in_context_top_head_bars(ic: Mapping[str, Any]) -> go.Figure:
    """The top in-context head's rank accuracy per task beside chance."""
    ic = plain(ic)
    top = ic["ranking"][0]
    return task_bars(top["per_task_rank_accuracy"], ic["chance"],
                     f"Top in-context head L{top['layer']}H{top['head']}: rank accuracy per task vs chance",
                     "rank accuracy (fraction of prompts)")


def confusion_figure(scores: Mapping[str, Any], task: str) -> go.Figure:
    """For the top head on one task: which item it predicts for each source item."""
    scores = plain(scores)
    rows = scores["top_confusion"][task]
    items = next(t["items"] for t in scores["dataset"]["tasks"] if t["name"] == task)
    counts = Counter((r["source"], r["predicted"]) for r in rows)
    expected = {r["source"]: r["expected"] for r in rows}
    z = [[counts.get((src, pred), 0) for pred in items] for src in items]
    hover = [[f"source {token_label(src)}<br>predicted {token_label(pred)}<br>expected "
              f"{token_label(expected[src]) if src in expected else '-'}" for pred in items]
             for src in items]
    top = scores["top_head"]
    labels = [token_label(t) for t in items]
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=labels, text=hover, hoverinfo="text", colorscale=HEATMAP_SCALE,
                               colorbar={"title": "pairs"}))
    fig.update_layout(title=f"L{top['layer']}H{top['head']} on {task}: predicted item per source item",
                      xaxis_title="predicted token (highest OV logit among the task's tokens)",
                      yaxis_title="source token")
    return apply_theme(fig)


def prediction_figure(rows: list[dict[str, Any]], typed: str, layer: int, head: int) -> go.Figure:
    """Horizontal bars: the top output tokens of one head for the typed token, best at the top
    (rows: {"token", "logit"} each, best first)."""
    shown = [token_label(r["token"]) for r in rows]
    fig = go.Figure(go.Bar(
        x=[r["logit"] for r in rows], y=list(range(len(rows))), orientation="h", customdata=shown,
        hovertemplate="output token %{customdata}<br>effective OV logit %{x:.3f}<extra></extra>",
    ))
    fig.update_layout(title=f"L{layer}H{head}: tokens its OV circuit promotes for {token_label(typed)}",
                      xaxis_title="effective OV logit (W_U . W_OV . x(t), logits)",
                      yaxis={"title": "output token (rank)", "tickmode": "array", "tickvals": list(range(len(rows))),
                             "ticktext": shown, "autorange": "reversed"})
    return apply_theme(fig, height=int(120 + 26 * len(rows)))
