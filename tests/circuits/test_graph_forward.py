"""The graph's edge count and the graph forward against HF logits."""

from __future__ import annotations

import torch

from circuits.forward import GraphForward
from circuits.graph import Graph
from tests.circuits.tiny import tiny_gpt2, tiny_llama

ATOL = 1e-4


def test_gpt2_small_edge_count_from_config_alone():
    g = Graph(n_layers=12, n_heads=12)
    assert g.n_forward == 1 + 12 * 13 and g.n_backward == 12 * 37 + 1
    assert g.n_edges == 32_491


def test_edge_count_by_hand_for_one_layer():
    # 1 layer, 2 heads: 6 head slots read the input (6 edges), the MLP reads input + 2 heads (3),
    # the logits read input, 2 heads and the MLP (4): 13 edges.
    assert Graph(1, 2).n_edges == 13


def test_graph_forward_matches_hf_tiny_llama_and_gpt2():
    for make in (tiny_llama, tiny_gpt2):
        model = make()
        ids = torch.randint(0, 60, (3, 11), generator=torch.Generator().manual_seed(0))
        ref = model.hf_model(ids).logits
        gf = GraphForward(model)
        out = gf.run(gf.embed(ids)).logits
        assert torch.allclose(out, ref, atol=ATOL), make.__name__


def test_graph_forward_matches_hf_on_smollm(smollm_with_ref):
    model, ref = smollm_with_ref
    gf = GraphForward(model)
    out = gf.run(gf.embed(ref.input_ids)).logits
    valid = ref.attention_mask.bool()
    assert torch.allclose(out[valid], ref.logits[valid], atol=ATOL)
