"""A circuit as plain data: nodes, edges, spans and scores (spec: circuits.md, "Evaluation"; the
figures and the CLI read this form).

Node ids: "input", "a{layer}.h{head}", "m{layer}", "logits"; a position-aware node carries its span
as "@{span name}" (e.g. "a3.h2@S2"). Rows for drawing: the input is row 0, layer l's heads row l + 1,
its MLP row l + 1.5, the logits row n_layers + 1. Edge "slot" is the destination input: q, k, v (a
head), mlp or logits. `circuit_from_dict(circuit_to_dict(c))` gives back the same edges in order.
"""

from __future__ import annotations

from typing import Any

from circuits.graph import SLOTS, Graph
from circuits.schema import Schema
from circuits.selection import LOGITS, Circuit, Edge
from probes.errors import InputError, cause


def node_info(graph: Graph, node: int) -> dict[str, Any]:
    """Name, kind, layer, head and drawing row of a forward node (LOGITS for the logits)."""
    if node == LOGITS:
        return {"name": "logits", "kind": "logits", "layer": graph.n_layers, "head": None,
                "row": graph.n_layers + 1.0}
    if node == 0:
        return {"name": "input", "kind": "input", "layer": -1, "head": None, "row": 0.0}
    layer, within = divmod(node - 1, graph.n_heads + 1)
    if within == graph.n_heads:
        return {"name": f"m{layer}", "kind": "mlp", "layer": layer, "head": None, "row": layer + 1.5}
    return {"name": f"a{layer}.h{within}", "kind": "head", "layer": layer, "head": within, "row": layer + 1.0}


def slot_name(graph: Graph, slot: int) -> str:
    """q, k, v, mlp or logits: which input of the destination node a backward slot is."""
    if slot == graph.logits_slot:
        return "logits"
    within = slot % (3 * graph.n_heads + 1)
    return "mlp" if within == 3 * graph.n_heads else SLOTS[within // graph.n_heads]


def _node_id(name: str, span: int | None, schema: Schema) -> str:
    return name if span is None else f"{name}@{schema.names[span]}"


def circuit_to_dict(circuit: Circuit, schema: Schema) -> dict[str, Any]:
    """The circuit as JSON-ready data (see the module docstring)."""
    g = circuit.graph
    nodes: dict[str, dict[str, Any]] = {}
    edges = []
    for e in circuit.edges:
        dst_node = e.dst(g)
        src, dst = node_info(g, e.u), node_info(g, dst_node if e.dst_span is None else dst_node[0])
        src_id, dst_id = _node_id(src["name"], e.src_span, schema), _node_id(dst["name"], e.dst_span, schema)
        for nid, info, span in ((src_id, src, e.src_span), (dst_id, dst, e.dst_span)):
            nodes.setdefault(nid, {"id": nid, **info, "span": None if span is None else schema.names[span]})
        edges.append({"src": src_id, "dst": dst_id, "u": e.u, "slot": e.slot, "slot_name": slot_name(g, e.slot),
                      "score": e.score, "src_span": None if e.src_span is None else schema.names[e.src_span],
                      "dst_span": None if e.dst_span is None else schema.names[e.dst_span]})
    return {"n_layers": g.n_layers, "n_heads": g.n_heads, "position_aware": circuit.position_aware,
            "spans": list(schema.names), "meta": dict(circuit.meta), "n_edges": len(edges),
            "nodes": list(nodes.values()), "edges": edges}


def circuit_from_dict(data: dict[str, Any]) -> tuple[Circuit, Schema]:
    """Rebuild a Circuit (and its schema) from `circuit_to_dict` output."""
    try:
        graph = Graph(int(data["n_layers"]), int(data["n_heads"]))
        schema = Schema(tuple(data["spans"]))
        edges = [Edge(int(e["u"]), int(e["slot"]), float(e["score"]),
                      None if e["src_span"] is None else schema.index(e["src_span"]),
                      None if e["dst_span"] is None else schema.index(e["dst_span"])) for e in data["edges"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"Not a circuit export (missing or bad field: {cause(exc)}). Use circuit_to_dict's output.") from exc
    return Circuit(edges, bool(data["position_aware"]), graph, dict(data.get("meta", {}))), schema
