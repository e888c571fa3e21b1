"""Atlas figures: every model side by side, drawn from summary.json data alone (docs/atlas.md).

An analysis's figure in summary.json is {"kind", "title", "x_title", "y_title", "colorbar", "zmin",
"zmax", "log_y", "data": {model: data}} (app/atlas/registry.py FigureSpec):
- heatmap: data {"x": [...], "y": [...], "z": [[...]]}: one panel per model, one shared colour scale;
- curves: data {"series": [{"name", "x", "y", "dash"?}]}: one line per series, one colour per model;
- bars: the same data as grouped bars (x are category labels).
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from app.figures.theme import HEATMAP_SCALE, apply_theme

PALETTE = qualitative.Plotly  # one colour per model, the same in every figure


def atlas_figure(figure: dict[str, Any], models: list[str]) -> go.Figure | None:
    """The figure of one analysis from its summary entry (None when no model has data)."""
    data = figure.get("data", {})
    present = [m for m in models if data.get(m)]
    if not present:
        return None
    draw = {"heatmap": heatmaps, "curves": curves, "bars": bars}[figure["kind"]]
    return draw(figure, present)


def heatmaps(figure: dict[str, Any], models: list[str]) -> go.Figure:
    """One heatmap per model (layer x head, say), sharing one colour scale."""
    data = figure["data"]
    values = [v for m in models for row in data[m]["z"] for v in row if v is not None]
    lo = min(values) if figure.get("zmin") is None else figure["zmin"]
    hi = max(values) if figure.get("zmax") is None else figure["zmax"]
    label = figure.get("colorbar") or "value"
    fig = make_subplots(rows=1, cols=len(models), subplot_titles=models, horizontal_spacing=0.08)
    for i, model in enumerate(models, start=1):
        d = data[model]
        fig.add_trace(go.Heatmap(
            z=d["z"], x=d["x"], y=d["y"], colorscale=HEATMAP_SCALE, zmin=lo, zmax=hi, showscale=i == len(models),
            colorbar={"title": label},
            hovertemplate=f"{model}<br>{figure.get('y_title') or 'y'} %{{y}}, {figure.get('x_title') or 'x'} "
                          f"%{{x}}<br>{label} = %{{z:.3g}}<extra></extra>",
        ), row=1, col=i)
        fig.update_xaxes(title_text=figure.get("x_title") or None, row=1, col=i)
        fig.update_yaxes(title_text=(figure.get("y_title") or None) if i == 1 else None, row=1, col=i)
    fig.update_layout(title=figure["title"])
    return apply_theme(fig, width=max(600, 420 * len(models)), height=460)


def _series(figure: dict[str, Any], models: list[str]) -> list[tuple[str, int, dict[str, Any]]]:
    return [(model, i, s) for i, model in enumerate(models) for s in figure["data"][model]["series"]]


def _label(model: str, series: dict[str, Any]) -> str:
    return f"{model} {series['name']}".strip() if series.get("name") else model


def curves(figure: dict[str, Any], models: list[str]) -> go.Figure:
    """One line per (model, series); a model's series share its colour, dashed ones dotted."""
    fig = go.Figure()
    for model, i, s in _series(figure, models):
        line = {"color": PALETTE[i % len(PALETTE)], **({"dash": "dot"} if s.get("dash") else {})}
        fig.add_trace(go.Scatter(x=s["x"], y=s["y"], mode="lines+markers", name=_label(model, s), line=line))
    return _axes(fig, figure)


def bars(figure: dict[str, Any], models: list[str]) -> go.Figure:
    """Grouped bars: one bar group per x label, one colour per model."""
    fig = go.Figure()
    for model, i, s in _series(figure, models):
        fig.add_trace(go.Bar(x=[str(x) for x in s["x"]], y=s["y"], name=_label(model, s),
                             marker_color=PALETTE[i % len(PALETTE)]))
    fig.update_layout(barmode="group")
    return _axes(fig, figure)


def _axes(fig: go.Figure, figure: dict[str, Any]) -> go.Figure:
    fig.update_layout(title=figure["title"], xaxis_title=figure.get("x_title") or None,
                      yaxis_title=figure.get("y_title") or None)
    if figure.get("log_y"):
        fig.update_yaxes(type="log")
    return apply_theme(fig, width=900, height=460)
