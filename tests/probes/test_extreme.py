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


def test_zeroing_on_the_fast_attention_equals_the_hooks(smollm):
    """residual_norms under SDPA (a forward hook on the zeroed module, layer outputs from the HF pass, the
    last layer's from the final norm's input) against the TransformerLens hooks on eager attention."""
    ids = torch.tensor([[504, 2365, 314, 260, 1345, 28, 3622, 30]])
    cap = capture(smollm, ids, what=["resid_mid"], layers=[1])
    fast = smollm.residual_norms(ids, zero=("mlp", 1))
    assert torch.allclose(fast[:, 1], cap["resid_mid"][:, 0].norm(dim=-1), rtol=1e-5)
    for zero in (None, ("mlp", 1), ("attn", 0)):
        slow = smollm.residual_norms(ids, zero=zero, attention="patterns")
        torch.testing.assert_close(smollm.residual_norms(ids, zero=zero), slow, rtol=1e-5, atol=1e-3)
    assert (smollm.residual_norms(ids, zero=("attn", 0)) - smollm.residual_norms(ids)).abs().max() > 1.0
    fast_pa = peak_ablation(smollm, ids, layers=(0, 1), measure_layer=2)
    slow_pa = peak_ablation(smollm, ids, layers=(0, 1), measure_layer=2, attention="patterns")
    assert fast_pa.metadata["settings"]["attention"] == "sdpa" and slow_pa.metadata["settings"]["attention"] == "eager"
    for a, b in zip(fast_pa.rows, slow_pa.rows, strict=True):
        assert a["component"] == b["component"] and a["sink"] == pytest.approx(b["sink"], rel=1e-5)
    with pytest.raises(InputError, match="component"):
        smollm.residual_norms(ids, zero=("norm", 0))
