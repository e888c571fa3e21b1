"""Generic views of attention data (patterns, per-head grids, per-token bars, per-position lines).

Docs: docs/app.md ("Figures"). Used by the Model and Sinks pages on plain arrays or nested lists (an
attention pattern [query, key], one value per (layer, head), one per token). Token axes are numeric
positions labelled with theme.token_label, so repeated tokens stay separate; hover shows position and token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from app.figures.theme import HEATMAP_SCALE, apply_theme, token_label


def _token_axis(tokens: Sequence[str], limit: int = 80, offset: int = 0) -> dict:
    step = max(1, int(np.ceil(len(tokens) / limit)))
    ticks = list(range(0, len(tokens), step))
    return {"tickmode": "array", "tickvals": [offset + i for i in ticks], "ticktext": [token_label(tokens[i]) for i in ticks]}


def attention_pattern_figure(pattern: Any, tokens: Sequence[str], title: str, start: int = 0,
                             stop: int | None = None) -> go.Figure:
    """Heatmap of one head's attention [query, key] with the token strings on both axes and in hover.

    start/stop: the window of positions drawn (queries and keys alike; default all). Callers bound it
    (app.ui.inputs.PATTERN_MAX_TOKENS): the hover data grows with the square of the window."""
    pattern = np.asarray(pattern, dtype=float)
    stop = len(tokens) if stop is None else min(stop, len(tokens))
    pos = list(range(start, stop))
    n = len(pos)
    shown = [token_label(tokens[i]) for i in pos]
    custom = np.empty((n, n, 2), dtype=object)
    for i in range(n):
        for j in range(n):
            custom[i, j] = (shown[i], shown[j])
    causal = np.array(pos)[:, None] >= np.array(pos)[None, :]
    z = np.where(causal, pattern[start:stop, start:stop], np.nan)
    fig = go.Figure(go.Heatmap(
        z=z, x=pos, y=pos, customdata=custom, colorscale=HEATMAP_SCALE, zmin=0.0, zmax=1.0,
        colorbar={"title": {"text": "attention<br>probability"}},
        hovertemplate="query %{y} %{customdata[0]}<br>key %{x} %{customdata[1]}<br>attention %{z:.4f}<extra></extra>",
    ))
    window = [tokens[i] for i in pos]
    fig.update_layout(title=title, xaxis={"title": "key token (position)", **_token_axis(window, offset=start)},
                      yaxis={"title": "query token (position)", "autorange": "reversed",
                             **_token_axis(window, offset=start)})
    side = int(min(900, max(420, 14 * n + 200)))
    return apply_theme(fig, height=side)


def head_grid_figure(values: Any, title: str, colorbar: str, zmax: float | None = None,
                     hover_unit: str = "") -> go.Figure:
    """Heatmap of one number per (layer, head): heads on x, layers on y (layer 0 at the top)."""
    values = np.asarray(values, dtype=float)
    n_layers, n_heads = values.shape
    fig = go.Figure(go.Heatmap(
        z=values, x=list(range(n_heads)), y=list(range(n_layers)), colorscale=HEATMAP_SCALE, zmin=0.0, zmax=zmax,
        colorbar={"title": {"text": colorbar}},
        hovertemplate=f"layer %{{y}}, head %{{x}}<br>{colorbar.replace('<br>', ' ')} %{{z:.3f}}{hover_unit}"
                      "<extra></extra>",
    ))
    fig.update_layout(title=title, xaxis={"title": "head (index)", "dtick": 1},
                      yaxis={"title": "layer (index)", "autorange": "reversed"})
    return apply_theme(fig, height=int(min(900, max(380, 18 * n_layers + 160))))


def token_bar_figure(values: Any, tokens: Sequence[str], title: str, y_title: str,
                     threshold: float | None = None, highlight: Sequence[int] = ()) -> go.Figure:
    """One bar per token position, labelled with the token strings; `highlight` positions in a second colour."""
    shown = [token_label(t) for t in tokens]
    marked = set(int(i) for i in highlight)
    colors = ["#C8443B" if i in marked else "#2E5EAA" for i in range(len(tokens))]
    fig = go.Figure(go.Bar(
        x=list(range(len(tokens))), y=values, marker_color=colors, customdata=shown,
        hovertemplate="position %{x} %{customdata}<br>" + y_title + " %{y:.4f}<extra></extra>",
    ))
    if threshold is not None:
        fig.add_hline(y=threshold, line_dash="dash", line_color="#6E6E6E",
                      annotation_text=f"threshold {threshold:g}", annotation_position="top right")
    fig.update_layout(title=title, xaxis={"title": "key token (position)", **_token_axis(tokens)},
                      yaxis={"title": y_title}, bargap=0.1)
    return apply_theme(fig, height=380)


def position_line_figure(values: Any, title: str, y_title: str) -> go.Figure:
    """A line over key positions k = 1..T (1-based, as the sink metric counts them)."""
    values = np.asarray(values, dtype=float)
    k = np.arange(1, len(values) + 1)
    fig = go.Figure(go.Scatter(x=k, y=values, mode="lines+markers",
                               hovertemplate="k = %{x}<br>" + y_title + " %{y:.2f}<extra></extra>"))
    fig.update_layout(title=title, xaxis={"title": "key position k (1 = first token)"}, yaxis={"title": y_title})
    return apply_theme(fig, height=340)
