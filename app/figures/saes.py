"""Figures for SAE results (docs/methods/saes.md, "Feature dashboards"; docs/saes.md): data in, figure out.

Inputs are plain data: ReconstructionMetrics.to_dict() (density_histogram), one entry of
saes.dashboard.feature_dashboards(...)["features"] (feature_top_tokens, feature_activation_histogram,
logit_figure, and feature_html, the self-contained HTML dashboard page), saes.dashboard.prompt_features
(prompt_figure), and rows of benchmarks/sae_train.py (architecture_comparison).
"""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go

from app.figures.theme import HEATMAP_SCALE, apply_theme, plain, token_label


def density_histogram(metrics: dict[str, Any], title: str = "Feature density") -> go.Figure:
    """log10 feature density histogram from ReconstructionMetrics.to_dict()."""
    metrics = plain(metrics)
    hist = metrics["log10_density_hist"]
    edges, counts = hist["edges"], hist["counts"]
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
    fig = go.Figure(go.Bar(x=centres, y=counts, hovertemplate="log10 density %{x:.2f}<br>%{y} features<extra></extra>"))
    fig.update_layout(title=f"{title} ({metrics['dead']} dead of {metrics['d_sae']})",
                      xaxis_title="log10(fraction of tokens the feature fires on)", yaxis_title="features (count)")
    return apply_theme(fig)


def feature_activation_histogram(entry: dict[str, Any]) -> go.Figure:
    """Histogram of one feature's positive activations (a feature_dashboards entry)."""
    entry = plain(entry)
    edges, counts = entry["histogram"]["edges"], entry["histogram"]["counts"]
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
    fig = go.Figure(go.Bar(x=centres, y=counts, hovertemplate="activation %{x:.3f}<br>%{y} tokens<extra></extra>"))
    fig.update_layout(title=f"Feature {entry['feature']}: activations (density {entry['density']:.3%})",
                      xaxis_title="activation (SAE units)", yaxis_title="tokens (count)")
    return apply_theme(fig)


def _cell(token: str, focus: bool, width: int = 10) -> str:
    text = token_label(token)
    text = text if len(text) <= width else text[: width - 1] + "…"
    return f"<b>{text}</b>" if focus else text


def feature_top_tokens(entry: dict[str, Any]) -> go.Figure:
    """Heatmap of the top-activating contexts: one row per example, the token strings written in the cells
    (the top-activating token in bold) on a pale scale so the text stays readable, a titled colorbar."""
    entry = plain(entry)
    examples = entry["top_examples"]
    width = max((len(e["tokens"]) for e in examples), default=1)
    z = [e["activations"] + [None] * (width - len(e["activations"])) for e in examples]
    text = [[_cell(t, i == e.get("focus")) for i, t in enumerate(e["tokens"])] + [""] * (width - len(e["tokens"]))
            for e in examples]
    hover = [[token_label(t) for t in e["tokens"]] + [""] * (width - len(e["tokens"])) for e in examples]
    fig = go.Figure(go.Heatmap(z=z, text=text, customdata=hover, texttemplate="%{text}",
                               textfont={"size": 13, "color": "#1F1F1F"}, xgap=2, ygap=2,
                               colorscale=[[0.0, "#FFFFFF"], [1.0, "#F0A35E"]], zmin=0.0,
                               colorbar={"title": {"text": "activation<br>(SAE units)", "side": "right"}},
                               hovertemplate="token %{customdata}<br>activation %{z:.3f}<extra></extra>"))
    fig.update_layout(title=f"Feature {entry['feature']}: top-activating contexts (bold: the top token)",
                      xaxis_title="position in window (tokens)", yaxis_title="example (rank)", yaxis_autorange="reversed")
    return apply_theme(fig, height=140 + 44 * max(1, len(examples)))


def architecture_comparison(rows: list[dict[str, Any]]) -> go.Figure:
    """FVU and CE loss recovered per architecture (rows from benchmarks/sae_train.py compare)."""
    names = [r["architecture"] for r in rows]
    fig = go.Figure()
    fig.add_bar(name="FVU", x=names, y=[r["reconstruction"]["fvu"] for r in rows])
    fig.add_bar(name="CE loss recovered", x=names, y=[r["ce"]["ce_loss_recovered"] for r in rows])
    fig.add_bar(name="dead fraction", x=names, y=[r["reconstruction"]["dead_fraction"] for r in rows])
    fig.update_layout(title="SAE architectures at matched sparsity", xaxis_title="architecture",
                      yaxis_title="value (fraction)", barmode="group")
    return apply_theme(fig)


def logit_figure(entry: dict[str, Any]) -> go.Figure:
    """The tokens one feature's decoder direction promotes most (top) and suppresses most (bottom), as bars."""
    entry = plain(entry)
    rows = entry["logit_effects"]["top"] + entry["logit_effects"]["bottom"][::-1]
    shown = [token_label(r["token"]) for r in rows]
    fig = go.Figure(go.Bar(x=[r["value"] for r in rows], y=list(range(len(rows))), orientation="h", customdata=shown,
                           marker_color=["#C8443B" if r["value"] >= 0 else "#2E5EAA" for r in rows],
                           hovertemplate="token %{customdata}<br>logit effect %{x:.3f}<extra></extra>"))
    fig.update_layout(title=f"Feature {entry['feature']}: tokens its decoder direction promotes / suppresses",
                      xaxis_title="logit effect (W_dec[j] . final-norm weights . W_U, logits per unit activation)",
                      yaxis={"title": "token", "tickmode": "array", "tickvals": list(range(len(rows))),
                             "ticktext": shown, "autorange": "reversed"})
    return apply_theme(fig, height=int(140 + 22 * len(rows)))


def prompt_figure(view: dict[str, Any], start: int = 0, stop: int | None = None) -> go.Figure:
    """Activation of the features that are top somewhere in the window (rows) at every token of positions
    start..stop-1 (columns; callers bound the window, app.ui.inputs.TOKEN_FIGURE_MAX). 0: not among that
    token's top features."""
    tokens = plain(view)["tokens"][start:stop]
    feats = sorted({f["feature"] for t in tokens for f in t["features"]})
    row_of = {f: i for i, f in enumerate(feats)}
    z = [[0.0] * len(tokens) for _ in feats]
    for col, t in enumerate(tokens):
        for f in t["features"]:
            z[row_of[f["feature"]]][col] = f["activation"]
    shown = [token_label(t["token"]) for t in tokens]
    pos = [t["position"] for t in tokens]
    fig = go.Figure(go.Heatmap(z=z, x=pos, y=[str(f) for f in feats], customdata=[shown for _ in feats],
                               colorscale=HEATMAP_SCALE, colorbar={"title": {"text": "activation<br>(SAE units)"}},
                               hovertemplate="token %{x} %{customdata}<br>feature %{y}<br>activation %{z:.3f}"
                                             "<extra></extra>"))
    fig.update_layout(title="Top features per token (0: not among that token's top features)",
                      xaxis={"title": "token (position)", "tickmode": "array", "tickvals": pos, "ticktext": shown},
                      yaxis={"title": "feature (index)", "type": "category"})
    return apply_theme(fig, height=int(min(900, 160 + 22 * max(1, len(feats)))))


def _tokens_html(example: dict[str, Any], vmax: float) -> str:
    spans = []
    for i, (tok, v) in enumerate(zip(example["tokens"], example["activations"], strict=True)):
        alpha = 0.0 if vmax <= 0 else max(0.0, min(1.0, v / vmax))
        border = "border-bottom:2px solid #333;" if i == example["focus"] else ""
        shown = token_label(tok)
        spans.append(f'<span title="{html.escape(shown)}: {v:.3f}" style="background:rgba(224,122,46,{alpha:.2f});'
                     f'{border}">{shown}</span>')
    return "<div class='ex'>" + "".join(spans) + f" <small>({example['activation']:.3f})</small></div>"


def feature_html(entry: dict[str, Any], title: str = "") -> str:
    """One feature's dashboard (an entry of feature_dashboards(...)["features"]) as a self-contained HTML page:
    top activations, logit effects, quantile examples, nearest features; tokens shown with theme.token_label."""
    entry = plain(entry)
    vmax = entry["max_activation"]
    logits = entry["logit_effects"]
    rows = "".join(f"<tr><td>{token_label(a['token'])}</td><td>{a['value']:+.3f}</td><td>{token_label(b['token'])}</td>"
                   f"<td>{b['value']:+.3f}</td></tr>" for a, b in zip(logits["top"], logits["bottom"], strict=True))
    quant = "".join(f"<h3>activations in ({q['range'][0]:.2f}, {q['range'][1]:.2f}] ({q['count']} tokens)</h3>"
                    + "".join(_tokens_html(e, vmax) for e in q["examples"]) for q in entry["quantile_examples"])
    near = ", ".join(f"{n['feature']} ({n['cosine']:.2f})" for n in entry["neighbours"])
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Feature {entry['feature']}</title>"
        "<style>body{font-family:Helvetica,Arial,sans-serif;max-width:900px;margin:2em auto}"
        ".ex{font-family:monospace;margin:4px 0;white-space:pre-wrap}td{padding:2px 10px}</style></head><body>"
        f"<h1>Feature {entry['feature']} {html.escape(title)}</h1>"
        f"<p>density {entry['density']:.4%}, max activation {vmax:.3f}; nearest by decoder cosine: {near}</p>"
        "<h2>Top activations</h2>" + "".join(_tokens_html(e, vmax) for e in entry["top_examples"])
        + "<h2>Logit effects (W_dec &middot; W_U)</h2><table><tr><th>promotes</th><th></th><th>suppresses</th><th></th></tr>"
        + rows + "</table><h2>Quantile examples</h2>" + quant + "</body></html>"
    )
