"""Figures for attention sinks, extreme tokens and active-dormant heads (results -> plotly Figures)."""

from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go
import torch

from app.figures.theme import DIVERGING_SCALE, HEATMAP_SCALE, apply_theme, token_label
from probes.dormant import DormantResult
from probes.extreme import ExtremeResult, PeakAblation
from probes.sinks import SinkResult


def sink_rate_by_regime(results: Mapping[str, SinkResult], max_k: int | None = None) -> go.Figure:
    """Sink_k^eps (percent) against key position k, one line per input regime."""
    fig = go.Figure()
    for regime, res in results.items():
        rate = res.sink_rate.tolist()[:max_k]
        tokens = [row[0] for row in res.str_tokens]
        hover = [f"k={k + 1}<br>Sink={r:.2f}%" + (f"<br>first tokens e.g. {', '.join(token_label(t) for t in tokens[:3])}" if k == 0 else "")
                 for k, r in enumerate(rate)]
        fig.add_trace(go.Scatter(x=list(range(1, len(rate) + 1)), y=rate, mode="lines+markers",
                                 name=f"{regime} (Sink_1={res.sink1:.1f}%)", hovertext=hover, hoverinfo="text"))
    eps = next(iter(results.values())).eps if results else 0.3
    fig.update_layout(title=f"Sink_k at eps={eps} by input regime", xaxis_title="key position k (1 = first token)",
                      yaxis_title="Sink_k (% of sample x layer x head with alpha > eps)")
    return apply_theme(fig)


def first_token_heatmap(res: SinkResult) -> go.Figure:
    """Mean alpha on the first token per layer and head, with the % of samples above eps in the hover."""
    mean = res.alpha[..., 0].mean(0)
    L, H = mean.shape
    text = [[f"layer {layer}, head {h}<br>mean alpha_1={float(mean[layer, h]):.3f}"
             f"<br>alpha_1 > {res.eps} in {float(res.head_rate[layer, h]):.0f}% of samples"
             f"<br>first token e.g. {token_label(res.str_tokens[0][0])}" for h in range(H)] for layer in range(L)]
    fig = go.Figure(go.Heatmap(z=mean.tolist(), x=list(range(H)), y=list(range(L)), colorscale=HEATMAP_SCALE,
                               zmin=0, zmax=1, hovertext=text, hoverinfo="text",
                               colorbar={"title": "alpha_1"}))
    fig.update_layout(title=f"Attention on the first token per head ({res.regime}, n={res.alpha.shape[0]})",
                      xaxis_title="head", yaxis_title="layer")
    return apply_theme(fig)


def token_view(res: SinkResult, sample: int = 0) -> go.Figure:
    """One sequence: alpha_k averaged over layers and heads per token, and the % of heads above eps."""
    alpha = res.alpha[sample]
    mean = alpha.mean(dim=(0, 1)).tolist()
    share = (100 * (alpha > res.eps).float().mean(dim=(0, 1))).tolist()
    toks = res.str_tokens[sample]
    hover = [f"k={k + 1}: {token_label(toks[k])}<br>mean alpha={m:.3f}<br>{s:.1f}% of heads above eps"
             for k, (m, s) in enumerate(zip(mean, share, strict=True))]
    fig = go.Figure(go.Bar(x=list(range(1, len(mean) + 1)), y=share, hovertext=hover, hoverinfo="text",
                           name="% heads alpha > eps"))
    fig.update_xaxes(tickmode="array", tickvals=list(range(1, len(toks) + 1)), ticktext=[token_label(t, quoted=False) for t in toks],
                     tickangle=-60)
    fig.update_layout(title=f"Which tokens are sinks in sample {sample} ({res.regime})",
                      xaxis_title="token (position k)", yaxis_title="% of (layer, head) with alpha_k > eps")
    return apply_theme(fig, height=480)


def residual_norm_heatmap(res: ExtremeResult, sample: int = 0) -> go.Figure:
    """||resid_post[l,k]|| per layer and position for one sequence (log colour), tokens in the hover."""
    import math

    norms = res.resid_norm[sample]
    toks = res.str_tokens[sample]
    L, T = norms.shape
    text = [[f"layer {layer}, pos {k}: {token_label(toks[k])}<br>||resid||={float(norms[layer, k]):.1f}" for k in range(T)]
            for layer in range(L)]
    z = [[math.log10(max(float(v), 1e-6)) for v in row] for row in norms.tolist()]
    fig = go.Figure(go.Heatmap(z=z, x=list(range(T)), y=list(range(L)), colorscale=HEATMAP_SCALE, hovertext=text,
                               hoverinfo="text", colorbar={"title": "log10 norm"}))
    fig.update_layout(title="Residual-state norm by layer and position (resid_post)",
                      xaxis_title="position (0 = first token)", yaxis_title="layer")
    return apply_theme(fig)


def residual_norm_lines(res: ExtremeResult) -> go.Figure:
    """Mean residual norm of the first token against the largest and the mean of the others, per layer."""
    s = res.summary()
    x = list(range(len(s["resid_sink"])))
    fig = go.Figure()
    first = res.str_tokens[0][0]
    for key, label in (("resid_sink", f"first token (e.g. {token_label(first)})"), ("resid_rest_max", "largest other"),
                       ("resid_rest_mean", "mean of others")):
        fig.add_trace(go.Scatter(x=x, y=s[key].tolist(), mode="lines+markers", name=label))
    fig.update_layout(title="Residual-state peak: first token vs the rest", xaxis_title="layer",
                      yaxis_title="||resid_post|| (L2, model units)", yaxis_type="log")
    return apply_theme(fig)


def value_norm_figure(res: ExtremeResult) -> go.Figure:
    """Mean ||v_k W_O^h|| of the first token against the other tokens, per layer and head."""
    s = res.summary()
    sink, rest = s["value_sink"], s["value_rest"]
    L, H = sink.shape
    labels = [f"L{layer}H{h}" for layer in range(L) for h in range(H)]
    first = res.str_tokens[0][0]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=labels, y=sink.flatten().tolist(), mode="markers", name=f"first token ({token_label(first)})"))
    fig.add_trace(go.Scatter(x=labels, y=rest.flatten().tolist(), mode="markers", name="mean of other tokens"))
    fig.update_layout(title="Value-state drain: ||v_k W_O^h|| per head", xaxis_title="head (layer, head)",
                      yaxis_title="||v W_O|| (L2, model units)")
    return apply_theme(fig)


def peak_ablation_figure(ab: PeakAblation) -> go.Figure:
    """First-token residual norm per layer, clean and after zeroing each ablated component."""
    x = list(range(len(ab.clean_sink)))
    fig = go.Figure(go.Scatter(x=x, y=ab.clean_sink.tolist(), mode="lines", name="clean", line={"width": 4}))
    for row in ab.rows:
        fig.add_trace(go.Scatter(x=x, y=row["sink_by_layer"].tolist(), mode="lines",
                                 name=f"zero {row['component']} L{row['layer']}",
                                 hovertext=[f"zero {row['component']} of layer {row['layer']}" for _ in x]))
    fig.update_layout(title=f"Which ablation removes the first-token peak (measured at layer {ab.measure_layer})",
                      xaxis_title="layer", yaxis_title="first-token ||resid_post|| (L2)", yaxis_type="log")
    return apply_theme(fig)


def dormancy_scatter(res: DormantResult) -> go.Figure:
    """Dormancy of every head on one domain against the other; ranked heads marked with their ablation cost."""
    a, b = res.domains
    da, db = res.dormancy[a], res.dormancy[b]
    L, H = da.shape
    table = {(r.layer, r.head): r for r in res.rows}
    hover = []
    for layer in range(L):
        for h in range(H):
            line = f"layer {layer}, head {h}<br>{a}: {float(da[layer, h]):.3f}<br>{b}: {float(db[layer, h]):.3f}"
            for d in res.row_entropy:
                line += (f"<br>{d} entropy: row {float(res.row_entropy[d][layer, h]):.2f}, column "
                         f"{float(res.column_entropy[d][layer, h]):.2f}"
                         + (" (sink head)" if bool(res.sink_heads(d)[layer, h]) else ""))
            row = table.get((layer, h))
            if row is not None and row.loss_delta:
                line += "".join(f"<br>{d} loss +{m['zero_out_attn']:.4f} (zero) / +{m['move_attn_to_bos']:.4f} (to sink)"
                                for d, m in row.loss_delta.items())
            hover.append(line)
    marked = [float(abs(da[i // H, i % H] - db[i // H, i % H])) for i in range(L * H)]
    fig = go.Figure(go.Scatter(x=da.flatten().tolist(), y=db.flatten().tolist(), mode="markers",
                               marker={"color": marked, "colorscale": DIVERGING_SCALE, "showscale": True,
                                       "colorbar": {"title": {"text": "|difference|", "side": "right"}}},
                               hovertext=hover, hoverinfo="text", name="heads"))
    for row in res.rows:
        fig.add_annotation(x=row.dormancy[a], y=row.dormancy[b], text=f"L{row.layer}H{row.head}", showarrow=True)
    values = torch.cat([da.flatten(), db.flatten()]).float()
    lo, hi = float(values.min()), float(values.max())
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

