"""Greedy selection and pruning (hand-worked), faithfulness end points, export round trip, figures, CLI."""

from __future__ import annotations

import json

import torch

from app.figures.circuits import EDGE_TRACES, circuit_figure, curves_figure
from circuits.export import circuit_from_dict, circuit_to_dict
from circuits.faithfulness import baselines, curve, faithfulness
from circuits.forward import GraphForward
from circuits.graph import Graph
from circuits.peap import peap
from circuits.schema import Schema
from circuits.scores import EdgeScores
from circuits.selection import Circuit, Edge, candidates, greedy, greedy_order, prune
from tests.circuits.helpers import toy_task
from tests.circuits.tiny import tiny_llama


def _scores(g: Graph, entries: dict[tuple[int, int, int], float], n_spans: int = 1) -> EdgeScores:
    per_span = torch.zeros(n_spans, g.n_forward, g.n_backward)
    for (s, u, v), value in entries.items():
        per_span[s, u, v] = value
    return EdgeScores(g, Schema(tuple(f"s{i}" for i in range(n_spans))), "hand", per_span, torch.ones(n_spans))


def test_prune_drops_edges_from_unfed_nodes():
    g = Graph(2, 2)
    fed = Edge(0, g.head_slot(0, 0, 0), 1.0)  # input -> a0.h0<q>
    out = Edge(g.head(0, 0), g.logits_slot, 1.0)  # a0.h0 -> logits
    unfed = Edge(g.head(1, 1), g.logits_slot, 5.0)  # a1.h1 -> logits, nothing feeds a1.h1
    chain = Edge(g.head(1, 0), g.mlp_slot(1), 1.0)  # a1.h0 -> m1: a1.h0 unfed, m1 never reaches the logits
    assert prune([fed, out, unfed, chain], g) == [fed, out]


def test_greedy_grows_from_the_logits_by_abs_score():
    g = Graph(2, 2)
    h00, m1 = g.head(0, 0), g.mlp(1)
    s = _scores(g, {(0, m1, g.logits_slot): -3.0, (0, h00, g.logits_slot): 1.0, (0, 0, g.mlp_slot(1)): 2.0,
                    (0, 0, g.head_slot(1, 1, 2)): 9.0})  # the 9.0 edge feeds a1.h1, which is never opened
    order = greedy_order(s, position_aware=False)
    assert [(e.u, e.slot) for e in order] == [(m1, g.logits_slot), (0, g.mlp_slot(1)), (h00, g.logits_slot)]
    assert [e.score for e in order] == [-3.0, 2.0, 1.0]
    assert [(e.u, e.slot) for e in greedy(s, 2).edges] == [(m1, g.logits_slot), (0, g.mlp_slot(1))]


def test_position_aware_candidates_keep_spans_and_drop_backward_crossing():
    g = Graph(1, 1)
    s = _scores(g, {(1, 0, g.logits_slot): 2.0, (0, 0, g.logits_slot): -1.0}, n_spans=2)
    s.kv = torch.zeros(2, 2, g.n_forward, 2, 1, 1)
    s.kv[0, 1, 0, 1, 0, 0] = 4.0  # value read at span 0 by queries at span 1: allowed
    s.kv[1, 0, 0, 0, 0, 0] = 8.0  # keys at a later span than the query: no such edge
    got = [(e.u, e.slot, e.src_span, e.dst_span, e.score) for e in candidates(s, True)]
    assert got == [(0, g.head_slot(0, 0, 2), 0, 1, 4.0), (0, g.logits_slot, 1, 1, 2.0),
                   (0, g.logits_slot, 0, 0, -1.0)]


def _tiny_scores():
    gf = GraphForward(tiny_llama())
    task = toy_task()
    return gf, task, peap(gf, task)


def test_faithfulness_end_points_and_curve_on_tiny_llama():
    gf, task, scores = _tiny_scores()
    g, base = gf.graph, baselines(gf, task)
    everything = [Edge(u, v, 1.0) for u, v in g.edge_mask.nonzero().tolist()]
    assert abs(faithfulness(gf, task, Circuit(everything, False, g), base) - 1.0) < 1e-5
    assert abs(faithfulness(gf, task, Circuit([], False, g), base)) < 1e-5
    assert abs(faithfulness(gf, task, Circuit([], True, g), base)) < 1e-5  # kv path, every key/value corrupted
    aware_all = [Edge(e.u, e.slot, 1.0, s, s) for e in everything for s in range(4)]
    aware_all += [Edge(u, g.head_slot(layer, h, 1 + w), 1.0, a, b) for a in range(4) for b in range(a, 4)
                  for u in range(g.n_forward) for w in range(2) for layer in range(g.n_layers)
                  for h in range(g.n_heads) if u < g.layer_start(layer)]
    assert abs(faithfulness(gf, task, Circuit(aware_all, True, g), base) - 1.0) < 1e-5
    n_all = g.n_edges
    c = curve(gf, task, scores, [1, n_all], False, base)
    assert abs(c.faithfulness[-1] - 1.0) < 1e-5  # greedy over every edge reached is the whole graph here
    assert abs(c.area - (c.faithfulness[0] + c.faithfulness[1]) / 2) < 1e-9  # trapezoid over [0, 1]
    assert c.edges_to_80 == next(n for n, f in zip(c.edges, c.faithfulness, strict=True) if f >= 0.8)


def test_export_round_trip_and_figures():
    gf, task, scores = _tiny_scores()
    for aware in (False, True):
        circ = greedy(scores, 40, aware)
        data = json.loads(json.dumps(circuit_to_dict(circ, task.schema)))
        back, schema = circuit_from_dict(data)
        assert back.edges == circ.edges and back.position_aware == aware and schema == task.schema
        assert data["n_edges"] == len(circ.edges) == len(data["edges"])
        ids = {n["id"] for n in data["nodes"]}
        assert all(e["src"] in ids and e["dst"] in ids for e in data["edges"])
        if aware:
            assert all("@" in i for i in ids)
        fig = circuit_figure(data)
        assert len(fig.data) == EDGE_TRACES + 1
        columns = list(fig.layout.xaxis.ticktext)
        assert columns == (list(task.schema.names) if aware else ["all positions"])
        hover_points = len(fig.data[2].x) + len(fig.data[3].x)
        assert hover_points == len(circ.edges) and len(fig.data[4].x) == len(ids)
        assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text == "layer"
    c = curve(gf, task, scores, [5, 20], True, baselines(gf, task)).to_dict()
    fig = curves_figure([c, {**c, "label": "other"}])
    assert len(fig.data) == 2 and list(fig.data[0].x) == [5, 20]
    assert fig.layout.xaxis.title.text == "edges in circuit"
    assert fig.layout.yaxis.title.text == "normalized faithfulness"


def test_cli_circuit_on_smollm(smollm, tmp_path, monkeypatch):
    import app.commands.circuit as cmd
    from app.cli import main

    monkeypatch.setattr(cmd, "load_from_args", lambda args: smollm)
    rc = main(["circuit", "succession", "--n", "2", "--agnostic", "--points", "5,20", "--out", str(tmp_path)])
    assert rc == 0
    data = json.loads((tmp_path / "circuit.json").read_text())
    (c,) = data["curves"]
    assert c["edges"][:2] == [5, 20]  # then along the 1-3-10 grid until faithfulness 0.8 (or every edge)
    assert c["edges_to_80"] == c["edges"][-1] or c["edges"][-1] == c["greedy_order_length"]
    assert data["settings"]["method"] == "eap" and data["scores"]["clean_metric"] != data["scores"]["corrupted_metric"]
    assert (tmp_path / "faithfulness_curves.html").exists() and (tmp_path / "circuit_position_agnostic.html").exists()
    assert main(["circuit", "succession", "--points", "x", "--out", str(tmp_path)]) == 2  # usage error
