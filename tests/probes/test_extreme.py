"""Extreme-token measurements (spec extreme-tokens.md) against HF eager attentions and plain loops."""

from __future__ import annotations

import math

import pytest
import torch

from probes.errors import InputError
from probes.extreme import extreme_tokens, logit_gap, peak_ablation, resid_norms, zero_hooks
from probes.model.capture import capture

ATOL = 1e-4


def test_logit_gap_hand_worked():
    s = torch.tensor([[1.0, 0, 0, 0], [2.0, 5.0, 0, 0], [3.0, 1.0, 7.0, 0], [4.0, 1.0, 3.0, 9.0]])
    gap = logit_gap(s)
    assert math.isnan(gap[0]) and math.isnan(gap[1])  # no key strictly between the sink and the query
    assert float(gap[2]) == pytest.approx(3.0 - 1.0)  # self-key (7) excluded
    assert float(gap[3]) == pytest.approx(4.0 - (1.0 + 3.0) / 2)
    with_self = logit_gap(s, include_self=True)  # the BB lab's variant: keys 1..i
    assert math.isnan(with_self[0])
    assert [float(g) for g in with_self[1:]] == pytest.approx([2.0 - 5.0, 3.0 - 4.0, 4.0 - 13.0 / 3])


def test_against_hf_and_plain_loops(smollm_with_ref):
    model, ref = smollm_with_ref
    T = int(ref.attention_mask.sum(1).min())
    ids = ref.input_ids[:, :T]
    res = extreme_tokens(model, ids)
    L, H = len(ref.attentions), ref.attentions[0].shape[1]
    for layer in (0, 7, L - 1):
        A = ref.attentions[layer][:, :, :T, :T]
        assert torch.allclose(res.sink_attention[:, layer], A[..., 1:, 0].mean(-1), atol=ATOL)
        # the gap of log-probabilities equals the gap of logits (the log-normalizer cancels)
        logA = A.clamp_min(1e-38).log()
        for i in (2, T - 1):
            want = logA[..., i, 0] - logA[..., i, 1:i].mean(-1)
            assert torch.allclose(res.logit_gap[:, layer, :, i], want, atol=1e-3)
    cap = capture(model, ids, what=["v", "resid_post"], layers=[0, 5])
    for j, layer in enumerate([0, 5]):
        assert torch.allclose(res.resid_norm[:, layer], cap["resid_post"][:, j].norm(dim=-1), rtol=1e-5, atol=ATOL)
        for h in (0, H - 1):
            for k in (0, T - 1):
                want = (cap["v"][0, j, k, h] @ model.W_O[layer, h]).norm()
                assert float(res.value_norm[0, layer, h, k]) == pytest.approx(float(want), rel=1e-4)
    s = res.summary()
    assert s["resid_sink"].shape == (L,) and 0 <= s["peak_layer"] < L


def test_zeroing_mlp_leaves_resid_mid(smollm):
    ids = torch.tensor([[504, 2365, 314, 260, 1345, 28]])
    cap = capture(smollm, ids, what=["resid_mid"], layers=[1])
    norms = resid_norms(smollm, ids, zero_hooks(smollm, "mlp", [1]))
    assert torch.allclose(norms[:, 1], cap["resid_mid"][:, 0].norm(dim=-1), rtol=1e-5)
    pa = peak_ablation(smollm, ids, layers=(0,), components=("attn",), measure_layer=2)
    assert pa.rows[0]["component"] == "attn" and pa.measure_layer == 2
    with pytest.raises(InputError, match="component"):
        zero_hooks(smollm, "norm", [0])
