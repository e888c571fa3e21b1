"""Active-dormant heads (spec extreme-tokens.md) against HF eager attentions and hand-worked cases."""

from __future__ import annotations

import pytest
import torch

from probes.dormant import ablation_hooks, domain_inputs, dormancy, dormant_heads, pick_heads
from probes.errors import InputError


def test_dormancy_matches_hf(smollm_with_ref):
    model, ref = smollm_with_ref
    T = int(ref.attention_mask.sum(1).min())
    got = dormancy(model, ref.input_ids[:, :T], batch_size=1)
    want = torch.stack([a[:, :, 1:T, 0].mean(-1).mean(0) for a in ref.attentions])  # [layer, head]
    assert torch.allclose(got, want, atol=1e-4)


def test_ablations_set_the_head_output(smollm):
    ids = torch.tensor([[504, 2365, 314, 260, 1345, 28, 3622]])
    layer, head = 4, 5
    seen: dict[str, torch.Tensor] = {}

    def keep(name):
        def fn(x, hook):
            seen[name] = x.detach().clone()
        return fn

    watch = [(f"blocks.{layer}.attn.hook_z", keep("z")), (f"blocks.{layer}.attn.hook_v", keep("v"))]
    smollm.run_with_hooks(ids, fwd_hooks=ablation_hooks(smollm, layer, head, "zero_out_attn") + watch)
    assert (seen["z"][0, :, head] == 0).all() and (seen["z"][0, :, head - 1] != 0).any()
    smollm.run_with_hooks(ids, fwd_hooks=ablation_hooks(smollm, layer, head, "move_attn_to_bos") + watch)
    v0 = seen["v"][0, 0, smollm.kv_group(head)]
    assert torch.allclose(seen["z"][0, :, head], v0.expand(7, -1), atol=1e-6)
    with pytest.raises(InputError, match="ablation"):
        ablation_hooks(smollm, 0, 0, "mean_ablate")


def test_pick_heads_hand_worked():
    diff = torch.tensor([[0.5, -0.01, 0.0], [-0.8, 0.02, 0.3]])
    mean = torch.tensor([[0.5, 0.99, 0.1], [0.5, 0.2, 0.5]])
    picked = pick_heads(diff, mean, top=2, controls=2)
    assert picked[:2] == [(1, 0, "top"), (0, 0, "top")]
    # calm half by |diff|: (0,1) .01, (1,1) .02, (0,2) 0 -> most dormant (0,1), most active (0,2)
    assert picked[2:] == [(0, 1, "control"), (0, 2, "control")]


def test_small_run_and_bad_input(smollm):
    res = dormant_heads(smollm, n=1, T=12, top=1, controls=0)
    row = res.rows[0]
    assert row.role == "top"
    assert row.difference == pytest.approx(row.dormancy["prose"] - row.dormancy["code"])
    assert abs(row.difference) == pytest.approx(float((res.dormancy["prose"] - res.dormancy["code"]).abs().max()))
    assert set(row.loss_delta["code"]) == {"zero_out_attn", "move_attn_to_bos"}
    ids = domain_inputs(smollm, "code", 1, 12)
    from probes.hidden_sinks import mean_loss

    manual = mean_loss(smollm, ids, ablation_hooks(smollm, row.layer, row.head, "zero_out_attn")) - mean_loss(smollm, ids)
    assert row.loss_delta["code"]["zero_out_attn"] == pytest.approx(manual, abs=1e-5)
    with pytest.raises(InputError, match="domain"):
        domain_inputs(smollm, "poetry", 1, 12)
    with pytest.raises(InputError, match="two different domains"):
        dormant_heads(smollm, domains=("prose",), n=1, T=12)
