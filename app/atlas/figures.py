"""Atlas figures: every model side by side, drawn from the batch rows alone.

Spec: docs/atlas.md. Heatmaps get one panel per model; curves get one trace per model.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from app.atlas.registry import ProbeRows, Row
from app.figures.theme import HEATMAP_SCALE, apply_theme

PALETTE = qualitative.Plotly  # one colour per model, the same in every curve figure


def pick(rows: list[Row], metric: str) -> list[Row]:
    return [r for r in rows if r["metric"] == metric]


def grid(rows: list[Row], col: str) -> tuple[list[int], list[int], list[list[float | None]]]:
    """rows of one metric -> (layers, columns, z[layer][column])."""
    layers = sorted({int(r["layer"]) for r in rows})
    cols = sorted({int(r[col]) for r in rows})
    z: list[list[float | None]] = [[None] * len(cols) for _ in layers]
    li = {v: i for i, v in enumerate(layers)}
    ci = {v: i for i, v in enumerate(cols)}
    for r in rows:
        z[li[int(r["layer"])]][ci[int(r[col])]] = r["value"]
    return layers, cols, z


def heatmaps(rows_by_model: dict[str, ProbeRows], models: list[str], probe: str, metric: str, title: str,
             colorbar: str, zmin: float | None = None, zmax: float | None = None) -> go.Figure | None:
    """One layer x head heatmap per model, sharing one colour scale."""
    present = [m for m in models if pick(rows_by_model.get(m, {}).get(probe, []), metric)]
    if not present:
        return None
    values = [r["value"] for m in present for r in pick(rows_by_model[m][probe], metric)]
    lo = min(values) if zmin is None else zmin
    hi = max(values) if zmax is None else zmax
    fig = make_subplots(rows=1, cols=len(present), subplot_titles=present, horizontal_spacing=0.08)
    for i, model in enumerate(present, start=1):
        layers, heads, z = grid(pick(rows_by_model[model][probe], metric), "head")
        fig.add_trace(go.Heatmap(
            z=z, x=heads, y=layers, colorscale=HEATMAP_SCALE, zmin=lo, zmax=hi, showscale=i == len(present),
            colorbar={"title": colorbar},
            hovertemplate=f"{model}<br>layer %{{y}}, head %{{x}}<br>{colorbar} = %{{z:.3g}}<extra></extra>",
        ), row=1, col=i)
        fig.update_xaxes(title_text="head (index)", row=1, col=i)
        fig.update_yaxes(title_text="layer (index)" if i == 1 else None, row=1, col=i)
    fig.update_layout(title=title)
    return apply_theme(fig, width=max(600, 420 * len(present)), height=460)


def curves(rows_by_model: dict[str, ProbeRows], models: list[str], probe: str, metric: str, x: str, title: str,
           x_title: str, y_title: str, log_y: bool = False, name: str = "") -> go.Figure | None:
    """One line per model of `metric` against the row field `x` (layer or position)."""
    fig = go.Figure()
    for i, model in enumerate(models):
        rows = sorted(pick(rows_by_model.get(model, {}).get(probe, []), metric), key=lambda r: int(r[x]))
        if rows:
            fig.add_trace(go.Scatter(x=[int(r[x]) for r in rows], y=[r["value"] for r in rows], mode="lines+markers",
                                     name=f"{model}{name}", line={"color": PALETTE[i % len(PALETTE)]}))
    if not fig.data:
        return None
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title)
    if log_y:
        fig.update_yaxes(type="log")
    return apply_theme(fig, width=900, height=460)


def add_curves(fig: go.Figure | None, other: go.Figure | None, dash: str = "dot") -> go.Figure | None:
    """Overlay the traces of `other` on `fig` (dashed), for 'sink vs rest' pairs."""
    if fig is None or other is None:
        return fig or other
    for trace in other.data:
        trace_any: Any = trace
        trace_any.line.dash = dash  # same colour as the model's solid line
        fig.add_trace(trace_any)
    return fig
