"""Circuit selection: top-n and greedy growth from the logits, then pruning (spec: circuits.md).

An edge is (src node, dst node, score). Position-agnostic nodes are forward node indices (the
logits are node -1); position-aware nodes are (forward node, span). Greedy: start from the logits
(at the last span when position-aware), repeatedly add the highest-|score| edge whose destination
is already in the circuit. Pruning drops edges out of nodes that have no path from the input
(such a node only ever outputs its corrupted value), repeated until nothing changes.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch

from circuits.graph import Graph
from circuits.scores import EdgeScores

LOGITS = -1


@dataclass(frozen=True)
class Edge:
    """One candidate edge. slot: backward slot; src_span/dst_span: None when position-agnostic."""

    u: int
    slot: int
    score: float
    src_span: int | None = None
    dst_span: int | None = None

    def src(self) -> Any:
        return self.u if self.src_span is None else (self.u, self.src_span)

    def dst(self, graph: Graph) -> Any:
        node = graph.backward_to_forward[self.slot]
        node = LOGITS if node is None else node
        return node if self.dst_span is None else (node, self.dst_span)


@dataclass
class Circuit:
    """Selected edges (in selection order) and the method that scored them."""

    edges: list[Edge]
    position_aware: bool
    graph: Graph
    meta: dict[str, Any] = field(default_factory=dict)

    def nodes(self) -> set[Any]:
        return {e.src() for e in self.edges} | {e.dst(self.graph) for e in self.edges}


def candidates(scores: EdgeScores, position_aware: bool, limit: int = 200_000) -> list[Edge]:
    """The `limit` highest-|score| edges: agnostic (u, v) or position-aware per span / span pair."""
    g = scores.graph
    mask = g.edge_mask
    if not position_aware:
        return _top(scores.agnostic.masked_fill(~mask, 0), limit, lambda i: Edge(i[0], i[1], 0.0))
    kv_slots = torch.zeros(g.n_backward, dtype=torch.bool)
    for layer in range(g.n_layers):
        for h in range(g.n_heads):
            kv_slots[g.head_slot(layer, h, 1)] = kv_slots[g.head_slot(layer, h, 2)] = True
    nc = scores.per_span.masked_fill(~mask[None] | kv_slots[None, None], 0)
    out = _top(nc, limit, lambda i: Edge(i[1], i[2], 0.0, i[0], i[0]))
    if scores.kv is not None:
        kv = scores.kv.clone()
        S = kv.shape[0]
        later = torch.ones(S, S, dtype=torch.bool).tril(-1)  # src > dst: no such edge
        kv[later] = 0

        def make(i: list[int]) -> Edge:
            s, d, u, w, layer, h = i
            return Edge(u, g.head_slot(layer, h, 1 + w), 0.0, s, d)

        out += _top(kv, limit, make)
        out.sort(key=lambda e: -abs(e.score))
        out = out[:limit]
    return out


def _top(t: torch.Tensor, limit: int, make: Any) -> list[Edge]:
    flat = t.flatten()
    k = min(limit, int((flat != 0).sum()))
    vals, idx = flat.abs().topk(k)
    coords = torch.stack(torch.unravel_index(idx, t.shape), dim=1).tolist()
    values = flat[idx].tolist()
    edges = []
    for c, value in zip(coords, values, strict=True):
        e = make(c)
        edges.append(Edge(e.u, e.slot, float(value), e.src_span, e.dst_span))
    return edges


def top_n(scores: EdgeScores, n: int, position_aware: bool = False) -> Circuit:
    """The n edges of largest |score|, pruned."""
    g = scores.graph
    return Circuit(prune(candidates(scores, position_aware, n), g), position_aware, g, {"method": "top_n"})


def greedy_order(scores: EdgeScores, position_aware: bool, limit: int = 200_000) -> list[Edge]:
    """Edges in the order greedy growth from the logits adds them (unpruned)."""
    g = scores.graph
    into: dict[Any, list[Edge]] = defaultdict(list)
    for e in candidates(scores, position_aware, limit):
        into[e.dst(g)].append(e)
    last = len(scores.schema) - 1
    start = LOGITS if not position_aware else (LOGITS, last)
    heap: list[tuple[float, int, Edge]] = []
    counter = 0
    seen_nodes: set[Any] = set()

    def open_node(node: Any) -> None:
        nonlocal counter
        if node in seen_nodes:
            return
        seen_nodes.add(node)
        for e in into.get(node, []):
            heapq.heappush(heap, (-abs(e.score), counter, e))
            counter += 1

    open_node(start)
    order = []
    while heap:
        _, _, e = heapq.heappop(heap)
        order.append(e)
        open_node(e.src())
    return order


def greedy(scores: EdgeScores, n: int, position_aware: bool = False, order: list[Edge] | None = None) -> Circuit:
    """Greedy circuit of n edges grown from the logits, pruned."""
    g = scores.graph
    order = greedy_order(scores, position_aware) if order is None else order
    return Circuit(prune(order[:n], g), position_aware, g, {"method": "greedy"})


def _is_input(node: Any) -> bool:
    return node == 0 or (isinstance(node, tuple) and node[0] == 0)


def prune(edges: list[Edge], graph: Graph) -> list[Edge]:
    """Drop edges out of nodes that have no path from the input, until stable."""
    kept = list(edges)
    while True:
        fed = {e.dst(graph) for e in kept}
        next_kept = [e for e in kept if _is_input(e.src()) or e.src() in fed]
        if len(next_kept) == len(kept):
            return kept
        kept = next_kept
