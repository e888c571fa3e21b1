"""Figures for SAE results (saes/evaluate.py, saes/dashboard.py): data in, plotly Figure out."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from app.figures.theme import apply_theme, token_label


def density_histogram(metrics: dict[str, Any], title: str = "Feature density") -> go.Figure:
    """log10 feature density histogram from ReconstructionMetrics.to_dict()."""
    hist = metrics["log10_density_hist"]
    edges, counts = hist["edges"], hist["counts"]
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
    fig = go.Figure(go.Bar(x=centres, y=counts, hovertemplate="log10 density %{x:.2f}<br>%{y} features<extra></extra>"))
    fig.update_layout(title=f"{title} ({metrics['dead']} dead of {metrics['d_sae']})",
                      xaxis_title="log10(fraction of tokens the feature fires on)", yaxis_title="features (count)")
    return apply_theme(fig)


def feature_activation_histogram(entry: dict[str, Any]) -> go.Figure:
    """Histogram of one feature's positive activations (a feature_dashboards entry)."""
    edges, counts = entry["histogram"]["edges"], entry["histogram"]["counts"]
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
    fig = go.Figure(go.Bar(x=centres, y=counts, hovertemplate="activation %{x:.3f}<br>%{y} tokens<extra></extra>"))
    fig.update_layout(title=f"Feature {entry['feature']}: activations (density {entry['density']:.3%})",
                      xaxis_title="activation (SAE units)", yaxis_title="tokens (count)")
    return apply_theme(fig)


def _cell(token: str, focus: bool, width: int = 10) -> str:
    text = token_label(token, quoted=False)
    text = text if len(text) <= width else text[: width - 1] + "…"
    return f"<b>{text}</b>" if focus else text


def feature_top_tokens(entry: dict[str, Any]) -> go.Figure:
    """Heatmap of the top-activating contexts: one row per example, the token strings written in the cells
    (the top-activating token in bold) on a pale scale so the text stays readable, a titled colorbar."""
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
