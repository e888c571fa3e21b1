"""Circuit figures (spec: circuits.md, "Evaluation"): the circuit graph with spans as columns and
layers as rows, and faithfulness-versus-edges curves. Both read plain data (circuit_to_dict output,
Curve.to_dict output), so saved results can be drawn again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from app.figures.theme import COLORWAY, apply_theme, number, plain

POSITIVE, NEGATIVE = "#C8443B", "#2E5EAA"
EDGE_TRACES = 4  # positive lines, negative lines, positive hover points, negative hover points


def _columns(data: dict[str, Any]) -> list[str]:
    return list(data["spans"]) if data["position_aware"] else ["all positions"]


def _xy(node: dict[str, Any], columns: list[str], n_heads: int) -> tuple[float, float]:
    col = columns.index(node["span"]) if node["span"] is not None else 0
    offset = 0.0 if node["head"] is None else 0.7 * (node["head"] + 0.5) / n_heads - 0.35
    return col + offset, float(node["row"])


def circuit_figure(data: dict[str, Any], title: str = "Circuit") -> go.Figure:
    """The circuit of `circuit_to_dict` as a graph: one column per span (one column when position-agnostic),
    one row per layer (heads at the layer, MLPs half a row above). Edges red for positive scores, blue for
    negative, width by |score|; hovering an edge's midpoint names it, its spans and its score.
    Traces: 4 edge traces then 1 node trace."""
    data = plain(data)
    columns = _columns(data)
    nodes = {n["id"]: n for n in data["nodes"]}
    pos = {nid: _xy(n, columns, data["n_heads"]) for nid, n in nodes.items()}
    lines: dict[bool, tuple[list[float | None], list[float | None]]] = {True: ([], []), False: ([], [])}
    mids: dict[bool, tuple[list[float], list[float], list[str]]] = {True: ([], [], []), False: ([], [], [])}
    for e in data["edges"]:
        (x0, y0), (x1, y1) = pos[e["src"]], pos[e["dst"]]
        sign = e["score"] >= 0
        lines[sign][0].extend([x0, x1, None])
        lines[sign][1].extend([y0, y1, None])
        mids[sign][0].append((x0 + x1) / 2)
        mids[sign][1].append((y0 + y1) / 2)
        where = "" if e["src_span"] is None else f"<br>span {e['src_span']} -> {e['dst_span']}"
        mids[sign][2].append(f"{e['src']} -> {e['dst']} ({e['slot_name']}){where}<br>score {e['score']:.4g}")
    fig = go.Figure()
    for sign, colour, label in ((True, POSITIVE, "positive score"), (False, NEGATIVE, "negative score")):
        fig.add_trace(go.Scatter(x=lines[sign][0], y=lines[sign][1], mode="lines", name=f"edge, {label}",
                                 line={"color": colour, "width": 1}, opacity=0.55, hoverinfo="skip"))
    for sign, colour, label in ((True, POSITIVE, "positive score"), (False, NEGATIVE, "negative score")):
        fig.add_trace(go.Scatter(x=mids[sign][0], y=mids[sign][1], mode="markers", name=f"edge midpoint, {label}",
                                 marker={"color": colour, "size": 4}, text=mids[sign][2], hoverinfo="text",
                                 showlegend=False))
    kinds = {"input": "square", "head": "circle", "mlp": "diamond", "logits": "star"}
    fig.add_trace(go.Scatter(
        x=[pos[i][0] for i in nodes], y=[pos[i][1] for i in nodes], mode="markers", name="node",
        marker={"size": 9, "color": COLORWAY[2], "symbol": [kinds[n["kind"]] for n in nodes.values()],
                "line": {"width": 1, "color": "#333"}},
        text=[n["id"] + ("" if n["span"] is None else f"<br>span {n['span']}") for n in nodes.values()],
        hoverinfo="text"))
    n_layers = data["n_layers"]
    apply_theme(fig, height=max(420, 22 * (n_layers + 2)), width=max(600, 110 * len(columns)))
    fig.update_layout(title=f"{title} ({data['n_edges']} edges)")
    fig.update_xaxes(title="span (token positions)", tickvals=list(range(len(columns))), ticktext=columns,
                     range=[-0.6, len(columns) - 0.4])
    fig.update_yaxes(title="layer", tickvals=[0] + [layer + 1 for layer in range(n_layers)] + [n_layers + 1],
                     ticktext=["input"] + [str(layer) for layer in range(n_layers)] + ["logits"])
    return fig


def curves_figure(curves: Sequence[dict[str, Any]], title: str = "Faithfulness against circuit size") -> go.Figure:
    """Normalized faithfulness against the number of edges, one line per curve (Curve.to_dict output),
    with the 0.8 level marked. Log-scaled edge axis."""
    curves = plain(list(curves))
    fig = go.Figure()
    for c in curves:
        hover = [f"{c['label']}<br>{n} edges requested ({k} after pruning)<br>faithfulness {number(f)}"
                 for n, k, f in zip(c["edges"], c.get("pruned_sizes", c["edges"]), c["faithfulness"], strict=True)]
        fig.add_trace(go.Scatter(x=c["edges"], y=c["faithfulness"], mode="lines+markers",
                                 name=f"{c['label']} (area {c['area']:.2f})", text=hover, hoverinfo="text"))
    fig.add_hline(y=0.8, line_dash="dash", line_color="#6E6E6E", annotation_text="0.8")
    apply_theme(fig)
    fig.update_layout(title=title)
    fig.update_xaxes(title="edges in circuit", type="log")
    fig.update_yaxes(title="normalized faithfulness")
    return fig
