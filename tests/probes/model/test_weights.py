"""Canonical weights reproduce the model: q, z, head outputs and attention output from W_Q/W_V/W_O."""

from __future__ import annotations

import pytest
import torch

from probes.model.capture import capture
from tests.probes.model.weights_check import check_weights_reproduce_heads

ATOL = 1e-4
PROMPT = "The quick brown fox jumps over the lazy dog because it can."


def test_smollm_weights_reproduce_heads(smollm):
    check_weights_reproduce_heads(smollm, [0, 11, 29])


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
    check_weights_reproduce_heads(gemma, [0, 17])
