"""Figures of the built-in batch probes, drawn from result rows alone (one unit's rows of results.jsonl).

Spec: docs/batch.md. Each function takes the rows of one unit and a title suffix naming the unit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go

from app.figures.theme import HEATMAP_SCALE, apply_theme


def _grid(rows: list[dict[str, Any]], col: str) -> tuple[list[int], list[int], list[list[float | None]]]:
    layers = sorted({int(r["layer"]) for r in rows})
    cols = sorted({int(r[col]) for r in rows})
    z: list[list[float | None]] = [[None] * len(cols) for _ in layers]
    li = {v: i for i, v in enumerate(layers)}
    ci = {v: i for i, v in enumerate(cols)}
    for r in rows:
        z[li[int(r["layer"])]][ci[int(r[col])]] = r["value"]
    return layers, cols, z


def residual_norms_figure(rows: list[dict[str, Any]], label: str) -> go.Figure:
    """Heatmap: mean ||resid_post|| by layer (y) and position (x)."""
    layers, positions, z = _grid(rows, "position")
    fig = go.Figure(go.Heatmap(
        z=z, x=positions, y=layers, colorscale=HEATMAP_SCALE, colorbar={"title": "mean norm"},
        hovertemplate="layer %{y}, position %{x}<br>mean ||resid_post|| = %{z:.2f}<extra></extra>",
    ))
    fig.update_layout(title=f"Residual-stream norm after each layer ({label})",
                      xaxis_title="position in window (tokens)", yaxis_title="layer (index)")
    return apply_theme(fig)


def first_token_attention_figure(rows: list[dict[str, Any]], label: str) -> go.Figure:
    """Heatmap: mean attention on the first token by layer (y) and head (x)."""
    layers, heads, z = _grid(rows, "head")
    fig = go.Figure(go.Heatmap(
        z=z, x=heads, y=layers, colorscale=HEATMAP_SCALE, zmin=0, zmax=1, colorbar={"title": "weight"},
        hovertemplate="layer %{y}, head %{x}<br>mean attention on first token = %{z:.3f}<extra></extra>",
    ))
    fig.update_layout(title=f"Attention on the first token ({label})",
                      xaxis_title="head (index)", yaxis_title="layer (index)")
    return apply_theme(fig)


RowFigure = Callable[[list[dict[str, Any]], str], go.Figure]

# A declared analysis's figure, by its name: drawn from its rows (a batch unit's, or a command's saved JSON).
ROW_FIGURES: dict[str, RowFigure] = {
    "residual_norms": residual_norms_figure,
    "first_token_attention": first_token_attention_figure,
}
