"""Figures of accuracy and ZeroTuning's sweeps (docs/tasks.md): accuracy against gamma per layer, and the
layer x head map of the accuracy change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from app.figures.theme import COLORWAY, DIVERGING_SCALE, apply_theme, plain

Data = Mapping[str, Any]


def accuracy_by_gamma(data: Data) -> go.Figure:
    """One line per layer: accuracy on the split with every head of that layer scaled by gamma."""
    res = plain(data)
    fig = go.Figure()
    gammas = res["gammas"]
    for i, (layer, row) in enumerate(zip(res["layers"], res["accuracy"], strict=True)):
        fig.add_trace(go.Scatter(
            x=gammas, y=row, mode="lines+markers", name=f"layer {layer}",
            line={"color": COLORWAY[i % len(COLORWAY)]},
            hovertext=[f"layer {layer}, gamma {g}: accuracy {a:.3f} (unedited {res['baseline']:.3f}, "
                       f"n = {res['n']})" for g, a in zip(gammas, row, strict=True)], hoverinfo="text"))
    fig.add_hline(y=res["baseline"], line={"dash": "dot", "color": "grey"},
                  annotation_text=f"unedited {res['baseline']:.3f}")
    best = res["best"]
    where = "the first token" if res["key"] == 0 else f"position {res['key']} (control)"
    fig.update_layout(title=f"{res['task']}: accuracy with one layer's attention on {where} scaled "
                            f"({res['split']} split, n = {res['n']}); best layer {best['layer']} at gamma {best['gamma']}",
                      xaxis_title="gamma (scale of the attention on that position)", xaxis_type="log",
                      yaxis_title=f"accuracy on {res['split']} (fraction correct)")
    return apply_theme(fig)


def head_change_map(data: Data) -> go.Figure:
    """Layer x head: accuracy with that one head scaled, minus the unedited accuracy."""
    res = plain(data)
    change = res["change"]
    hover = [[f"L{layer}H{h}: {c:+.3f} (unedited {res['baseline']:.3f}, n = {res['n']})"
              for h, c in enumerate(row)] for layer, row in enumerate(change)]
    limit = max([abs(c) for row in change for c in row] + [1e-6])
    fig = go.Figure(go.Heatmap(z=change, zmin=-limit, zmax=limit, colorscale=DIVERGING_SCALE, hovertext=hover,
                               hoverinfo="text", colorbar={"title": {"text": "accuracy change", "side": "right"}}))
    measured = res.get("settings", {}).get("layers")
    note = f"; layers measured: {measured}" if measured and len(measured) < len(change) else ""
    fig.update_layout(title=f"{res['task']}: accuracy change with one head's first-token attention x {res['gamma']} "
                            f"({res['split']} split, n = {res['n']}{note})",
                      xaxis_title="head", yaxis_title="layer")
    return apply_theme(fig)
