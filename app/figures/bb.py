"""Figures of the BB lab: the sink forming over training steps, and attention on <s> per query token.

Spec: docs/methods/extreme-tokens.md, "The Bigram-Backcopy (BB) task".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures.theme import COLORWAY, apply_theme, token_label

S = token_label("<s>")  # "&lt;s&gt;": a raw <s> is a strike-through tag to plotly


def _series(rows: Sequence[Mapping[str, Any]], key: str, layer: int) -> list[float]:
    return [r[key][layer] if isinstance(r[key], list) else r[key] for r in rows]


def _ratio(rows: Sequence[Mapping[str, Any]], num: str, den: str, layer: int) -> list[float]:
    return [r[num][layer] / r[den][layer] if r[den][layer] else float("nan") for r in rows]


def sink_formation_figure(runs: Mapping[str, Sequence[Mapping[str, Any]]], layer: int = -1) -> go.Figure:
    """Four panels over training steps, one colour per run: attention on <s> (non-trigger solid,
    trigger dashed), <s> value-norm ratio, <s> residual-norm ratio, back-copy and bigram risks."""
    fig = make_subplots(rows=2, cols=2, subplot_titles=(
        f"Attention on {S} (solid: non-trigger, dashed: trigger queries)",
        f"Value-state norm, {S} / other tokens",
        f"Residual norm, {S} / other tokens",
        "Risk (solid: back-copy, dashed: bigram excess)",
    ), horizontal_spacing=0.12, vertical_spacing=0.16)
    for i, (name, rows) in enumerate(runs.items()):
        color = COLORWAY[i % len(COLORWAY)]
        steps = [r["step"] for r in rows]
        hover = f"{name}<br>step %{{x}}<br>%{{y:.4f}}<extra></extra>"
        panels = [
            (1, 1, _series(rows, "attn_sink_nontrigger", layer), "solid", True, "non-trigger"),
            (1, 1, _series(rows, "attn_sink_trigger", layer), "dash", False, "trigger"),
            (1, 2, _ratio(rows, "value_norm_sink", "value_norm_others", layer), "solid", False, ""),
            (2, 1, _ratio(rows, "resid_norm_sink", "resid_norm_others", layer), "solid", False, ""),
            (2, 2, _series(rows, "backcopy_risk", 0), "solid", False, "back-copy"),
            (2, 2, _series(rows, "bigram_risk", 0), "dash", False, "bigram"),
        ]
        for row, col, ys, dash, legend, what in panels:
            fig.add_trace(go.Scatter(
                x=steps, y=ys, mode="lines+markers", name=name, legendgroup=name, showlegend=legend,
                line={"color": color, "dash": dash}, marker={"size": 4},
                hovertemplate=hover.replace("<br>step", f" {what}<br>step") if what else hover,
            ), row=row, col=col)
    fig.update_xaxes(title_text="training step")
    fig.update_yaxes(title_text="attention weight (0-1)", row=1, col=1)
    fig.update_yaxes(title_text="norm ratio (x)", row=1, col=2)
    fig.update_yaxes(title_text="norm ratio (x)", row=2, col=1)
    fig.update_yaxes(title_text="nats per token", row=2, col=2)
    fig.update_layout(title=f"BB lab: does an attention sink on {S} form during training?")
    return apply_theme(fig, width=1100, height=760)


def token_attention_figure(token_attn: Mapping[str, float], triggers: Sequence[str], threshold: float = 0.89,
                           title: str = "") -> go.Figure:
    """Mean attention on <s> from each query token (bars), triggers highlighted, the 0.89 line drawn."""
    tokens = list(token_attn)
    shown = [token_label(t) for t in tokens]
    colors = [COLORWAY[1] if t in triggers else COLORWAY[0] for t in tokens]
    fig = go.Figure(go.Bar(
        x=shown, y=[token_attn[t] for t in tokens], marker={"color": colors},
        hovertext=[f"query token {s}{' (trigger)' if t in triggers else ''}" for s, t in zip(shown, tokens, strict=True)],
        hovertemplate=f"%{{hovertext}}<br>attention on {S}: %{{y:.3f}}<extra></extra>",
    ))
    fig.add_hline(y=threshold, line_dash="dot", annotation_text=f"active below {threshold}")
    fig.update_layout(title=(title or "Attention on <s> per query token (orange: triggers)").replace("<s>", S),
                      xaxis_title="query token (character)", yaxis_title=f"mean attention on {S} (0-1)")
    return apply_theme(fig, height=420)


def sink_by_position_figure(runs: Mapping[str, Mapping[str, float]]) -> go.Figure:
    """Attention on <s> from non-trigger queries by query-position bin, one line per run (last layer)."""
    fig = go.Figure()
    for i, (name, bins) in enumerate(runs.items()):
        fig.add_trace(go.Scatter(
            x=list(bins), y=list(bins.values()), mode="lines+markers", name=name,
            line={"color": COLORWAY[i % len(COLORWAY)]},
            hovertemplate=f"{name}<br>query positions %{{x}}<br>attention on {S}: %{{y:.3f}}<extra></extra>",
        ))
    fig.add_hline(y=0.89, line_dash="dot", annotation_text="0.89 (the spec's dormant threshold)")
    fig.update_layout(title=f"Attention on {S} from non-trigger queries, by query position",
                      xaxis_title="query positions (bin, 0-based; more keys compete further right)",
                      yaxis_title=f"mean attention on {S} (0-1)", yaxis_range=[0, 1])
    return apply_theme(fig, height=420)
