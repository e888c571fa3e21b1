"""Canonical weights reproduce the model: q, z, head outputs and attention output from W_Q/W_V/W_O."""

from __future__ import annotations

import pytest
import torch

from probes.capture import capture

ATOL = 1e-4
PROMPT = "The quick brown fox jumps over the lazy dog because it can."


def _check_weights(model, layers):
    result = capture(model, PROMPT, what=["resid_pre", "pattern", "q", "v", "z", "head_out", "attn_out"], layers=layers)
    for i, layer in enumerate(layers):
        x = result["resid_pre"][0, i]  # [pos, d_model]
        normed = model.adapter.attn_in_norm(layer)(x)
        v = torch.einsum("pm,hmd->phd", normed, model.W_V[layer])
        if model.b_V is not None:
            v = v + model.b_V[layer]
        assert torch.allclose(v, result["v"][0, i], atol=ATOL), "W_V (kv groups expanded) must give the hooked v"
        z = torch.einsum("hqk,khd->qhd", result["pattern"][0, i], v)
        assert torch.allclose(z, result["z"][0, i], atol=ATOL), "pattern @ v must give the hooked z"
        head_out = torch.einsum("phd,hdm->phm", z, model.W_O[layer])
        assert torch.allclose(head_out, result["head_out"][0, i], atol=ATOL)
        total = head_out.sum(dim=1) + (model.b_O[layer] if model.b_O is not None else 0)
        out_norm = model.adapter.attn_out_norm(layer)
        if out_norm is not None:
            total = out_norm(total)
        assert torch.allclose(total, result["attn_out"][0, i], atol=ATOL)
        if model.facts.positional == "learned":
            q = torch.einsum("pm,hmd->phd", normed, model.W_Q[layer])
            if model.b_Q is not None:
                q = q + model.b_Q[layer]
            assert torch.allclose(q, result["q"][0, i], atol=ATOL)


def test_smollm_weights_reproduce_heads(smollm):
    _check_weights(smollm, [0, 11, 29])


def test_smollm_pattern_from_q_and_k(smollm):
    result = capture(smollm, PROMPT, what=["q", "k", "pattern"], layers=[3])
    q, k = result["q"][0, 0], result["k"][0, 0]  # [pos, head, d_head]
    scores = torch.einsum("qhd,khd->hqk", q, k) / smollm.facts.d_head**0.5
    n = scores.shape[-1]
    scores = scores.masked_fill(torch.triu(torch.ones(n, n, dtype=torch.bool), 1), float("-inf"))
    assert torch.allclose(scores.softmax(-1), result["pattern"][0, 0], atol=ATOL)


def test_kv_groups_are_shared(smollm):
    w = smollm.W_V[4]
    assert torch.equal(w[0], w[2]) and not torch.equal(w[2], w[3])
    assert [smollm.kv_group(h) for h in range(9)] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_ov_matrix_shape(smollm):
    assert smollm.W_OV(2, 5).shape == (576, 576)


@pytest.mark.slow
def test_gemma_weights_reproduce_heads(gemma):
    _check_weights(gemma, [0, 17])
