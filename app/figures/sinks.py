"""Figures for attention sinks, extreme tokens and active-dormant heads, drawn from to_dict() data.

Specs: docs/methods/attention-sinks.md, docs/methods/extreme-tokens.md. Every function takes the plain
data of a result's to_dict() (live, with tensors, or loaded from its saved JSON: both are passed
through theme.plain first, so both draw the same figure):
- SinkResult.to_dict() (kind "sink_result"): sink_rate_by_regime, first_token_heatmap, token_view;
- ExtremeResult.to_dict() (kind "extreme_result"): residual_norm_heatmap, residual_norm_lines, value_norm_figure;
- PeakAblation.to_dict() (kind "peak_ablation"): peak_ablation_figure;
- DormantResult.to_dict() (kind "dormant"): dormancy_scatter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from app.figures.theme import DIVERGING_SCALE, HEATMAP_SCALE, apply_theme, plain, token_label

Data = Mapping[str, Any]


def _missing(data: Data, key: str, what: str) -> Any:
    from probes.errors import InputError

    if key not in data:
        raise InputError(f"This {what} has no '{key}' (it was saved by an older Glasshouse); run the analysis "
                         "again to draw this figure.")
    return data[key]


def sink_rate_by_regime(results: Mapping[str, Data], max_k: int | None = None) -> go.Figure:
    """Sink_k^eps (percent) against key position k, one line per input regime (SinkResult.to_dict() each)."""
    fig = go.Figure()
    eps = 0.3
    for regime, raw in results.items():
        res = plain(raw)
        eps = res["eps"]
        rate = res["sink_rate"][:max_k]
        tokens = [row[0] for row in res["str_tokens"]]
        hover = [f"k={k + 1}<br>Sink={r:.2f}%" + (f"<br>first tokens e.g. {', '.join(token_label(t) for t in tokens[:3])}"
                                                 if k == 0 else "") for k, r in enumerate(rate)]
        fig.add_trace(go.Scatter(x=list(range(1, len(rate) + 1)), y=rate, mode="lines+markers",
                                 name=f"{regime} (Sink_1={res['sink1']:.1f}%)", hovertext=hover, hoverinfo="text"))
    fig.update_layout(title=f"Sink_k at eps={eps} by input regime", xaxis_title="key position k (1 = first token)",
                      yaxis_title="Sink_k (% of sample x layer x head with alpha > eps)")
    return apply_theme(fig)


def first_token_heatmap(data: Data) -> go.Figure:
    """Mean alpha on the first token per layer and head (alpha_mean[..., 0]), with the % of samples above eps
    (head_rate) in the hover."""
    res = plain(data)
    mean = [[head[0] for head in layer] for layer in res["alpha_mean"]]
    rate, eps = res["head_rate"], res["eps"]
    first = token_label(res["str_tokens"][0][0])
    text = [[f"layer {layer}, head {h}<br>mean alpha_1={v:.3f}<br>alpha_1 > {eps} in {rate[layer][h]:.0f}% of samples"
             f"<br>first token e.g. {first}" for h, v in enumerate(row)] for layer, row in enumerate(mean)]
    fig = go.Figure(go.Heatmap(z=mean, x=list(range(len(mean[0]))), y=list(range(len(mean))),
                               colorscale=HEATMAP_SCALE, zmin=0, zmax=1, hovertext=text, hoverinfo="text",
                               colorbar={"title": "alpha_1"}))
    fig.update_layout(title=f"Attention on the first token per head ({res['regime']}, n={res['n']})",
                      xaxis_title="head (index)", yaxis_title="layer (index)")
    return apply_theme(fig)


def token_view(data: Data, sample: int = 0) -> go.Figure:
    """One sequence: the % of (layer, head) with alpha_k > eps per token (bars), mean alpha in the hover."""
    res = plain(data)
    mean = _missing(res, "token_alpha", "sink result")[sample]
    share = res["token_share"][sample]
    toks = res["str_tokens"][sample]
    hover = [f"k={k + 1}: {token_label(toks[k])}<br>mean alpha={m:.3f}<br>{s:.1f}% of heads above eps"
             for k, (m, s) in enumerate(zip(mean, share, strict=True))]
    fig = go.Figure(go.Bar(x=list(range(1, len(mean) + 1)), y=share, hovertext=hover, hoverinfo="text",
                           name="% heads alpha > eps"))
    fig.update_xaxes(tickmode="array", tickvals=list(range(1, len(toks) + 1)), ticktext=[token_label(t) for t in toks],
                     tickangle=-60)
    fig.update_layout(title=f"Which tokens are sinks in sample {sample} ({res['regime']})",
                      xaxis_title="token (position k)", yaxis_title="% of (layer, head) with alpha_k > eps")
    return apply_theme(fig, height=480)


def residual_norm_heatmap(data: Data, sample: int = 0) -> go.Figure:
    """||resid_post[l,k]|| per layer and position for one sequence (log colour), tokens in the hover."""
    res = plain(data)
    norms = _missing(res, "resid_norm", "extreme-token result")[sample]
    toks = res["str_tokens"][sample]
    text = [[f"layer {layer}, pos {k}: {token_label(toks[k])}<br>||resid||={v:.1f}" for k, v in enumerate(row)]
            for layer, row in enumerate(norms)]
    z = [[math.log10(max(v, 1e-6)) for v in row] for row in norms]
    fig = go.Figure(go.Heatmap(z=z, x=list(range(len(norms[0]))), y=list(range(len(norms))), colorscale=HEATMAP_SCALE,
                               hovertext=text, hoverinfo="text", colorbar={"title": "log10 norm"}))
    fig.update_layout(title="Residual-state norm by layer and position (resid_post)",
                      xaxis_title="position (0 = first token)", yaxis_title="layer (index)")
    return apply_theme(fig)


def residual_norm_lines(data: Data) -> go.Figure:
    """Mean residual norm of the first token against the largest and the mean of the others, per layer."""
    s = plain(data)
    x = list(range(len(s["resid_sink"])))
    fig = go.Figure()
    first = s["str_tokens"][0][0]
    for key, label in (("resid_sink", f"first token (e.g. {token_label(first)})"), ("resid_rest_max", "largest other"),
                       ("resid_rest_mean", "mean of others")):
        fig.add_trace(go.Scatter(x=x, y=s[key], mode="lines+markers", name=label,
                                 hovertemplate=f"{label}<br>layer %{{x}}<br>||resid_post|| %{{y:.1f}}<extra></extra>"))
    fig.update_layout(title="Residual-state peak: first token vs the rest", xaxis_title="layer (index)",
                      yaxis_title="||resid_post|| (L2, model units)", yaxis_type="log")
    return apply_theme(fig)


def value_norm_figure(data: Data) -> go.Figure:
    """Mean ||v_k W_O^h|| of the first token against the other tokens, per layer and head."""
    s = plain(data)
    sink, rest = s["value_sink"], s["value_rest"]
    labels = [f"L{layer}H{h}" for layer, row in enumerate(sink) for h in range(len(row))]
    first = token_label(s["str_tokens"][0][0])
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=labels, y=[v for row in sink for v in row], mode="markers", name=f"first token ({first})"))
    fig.add_trace(go.Scatter(x=labels, y=[v for row in rest for v in row], mode="markers", name="mean of other tokens"))
    fig.update_layout(title="Value-state drain: ||v_k W_O^h|| per head", xaxis_title="head (layer, head)",
                      yaxis_title="||v W_O|| (L2, model units)")
    return apply_theme(fig)


def peak_ablation_figure(data: Data) -> go.Figure:
    """First-token residual norm per layer, clean and after zeroing each ablated component."""
    ab = plain(data)
    x = list(range(len(ab["clean_sink"])))
    fig = go.Figure(go.Scatter(x=x, y=ab["clean_sink"], mode="lines", name="clean", line={"width": 4}))
    for row in ab["rows"]:
        fig.add_trace(go.Scatter(x=x, y=row["sink_by_layer"], mode="lines",
                                 name=f"zero {row['component']} L{row['layer']}",
                                 hovertext=[f"zero {row['component']} of layer {row['layer']}" for _ in x]))
    fig.update_layout(title=f"Which ablation removes the first-token peak (measured at layer {ab['measure_layer']})",
                      xaxis_title="layer (index)", yaxis_title="first-token ||resid_post|| (L2)", yaxis_type="log")
    return apply_theme(fig)


def _dormancy_hover(res: Data, layer: int, h: int, table: Mapping[tuple[int, int], Data]) -> str:
    a, b = res["domains"]
    da, db = res["dormancy"][a], res["dormancy"][b]
    line = f"layer {layer}, head {h}<br>{a}: {da[layer][h]:.3f}<br>{b}: {db[layer][h]:.3f}"
    for d in res.get("row_entropy", {}):
        sink = res.get("entropy_sink_heads", {}).get(d)
        line += (f"<br>{d} entropy: row {res['row_entropy'][d][layer][h]:.2f}, column "
                 f"{res['column_entropy'][d][layer][h]:.2f}" + (" (sink head)" if sink and sink[layer][h] else ""))
    row = table.get((layer, h))
    if row is not None and row.get("loss_delta"):
        line += "".join(f"<br>{d} loss +{m['zero_out_attn']:.4f} (zero) / +{m['move_attn_to_bos']:.4f} (to sink)"
                        for d, m in row["loss_delta"].items())
    return line


def dormancy_scatter(data: Data) -> go.Figure:
    """Dormancy of every head on one domain against the other; ranked heads marked with their ablation cost."""
    res = plain(data)
    a, b = res["domains"]
    da, db = res["dormancy"][a], res["dormancy"][b]
    n_layers, n_heads = len(da), len(da[0])
    table = {(r["layer"], r["head"]): r for r in res["rows"]}
    cells = [(layer, h) for layer in range(n_layers) for h in range(n_heads)]
    hover = [_dormancy_hover(res, layer, h, table) for layer, h in cells]
    xs, ys = [da[layer][h] for layer, h in cells], [db[layer][h] for layer, h in cells]
    fig = go.Figure(go.Scatter(x=xs, y=ys, mode="markers",
                               marker={"color": [abs(x - y) for x, y in zip(xs, ys, strict=True)],
                                       "colorscale": DIVERGING_SCALE, "showscale": True,
                                       "colorbar": {"title": {"text": "|difference|", "side": "right"}}},
                               hovertext=hover, hoverinfo="text", name="heads"))
    for row in res["rows"]:
        fig.add_annotation(x=row["dormancy"][a], y=row["dormancy"][b], text=f"L{row['layer']}H{row['head']}",
                           showarrow=True)
    lo, hi = min(xs + ys), max(xs + ys)
    pad = 0.02 * max(hi - lo, 1e-6)
    fig.add_trace(go.Scatter(x=[lo - pad, hi + pad], y=[lo - pad, hi + pad], mode="lines",
                             line={"dash": "dot", "color": "grey"}, name="equal (same dormancy on both)"))
    fig.update_layout(title=f"Dormancy per head: {a} vs {b} (mean attention on the first token)",
                      xaxis_title=f"dormancy on {a} (attention on sink, 0-1)",
                      yaxis_title=f"dormancy on {b} (attention on sink, 0-1)",
                      legend={"orientation": "h", "x": 0.0, "xanchor": "left", "y": -0.16, "yanchor": "top"})
    fig = apply_theme(fig)
    fig.update_layout(margin={"b": 110})  # room for the legend under the x-axis title
    return fig
