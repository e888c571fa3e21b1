"""Active-dormant heads (spec extreme-tokens.md) against HF eager attentions and hand-worked cases."""

from __future__ import annotations

import math

import pytest
import torch

from probes.dormant import (
    ablation_hooks,
    column_entropy,
    domain_inputs,
    dormancy,
    dormant_heads,
    head_statistics,
    is_sink_head,
    pick_heads,
    row_entropy,
)
from probes.errors import InputError
from tests.probes.hook_recorder import recorder


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
    keep = recorder(seen)

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
    chosen = dormant_heads(smollm, n=1, T=12, top=1, controls=0, heads=[(26, 7), (row.layer, row.head)])
    assert [(r.layer, r.head, r.role) for r in chosen.rows] == [(row.layer, row.head, "top"), (26, 7, "chosen")]
    with pytest.raises(InputError, match="layer"):
        dormant_heads(smollm, n=1, T=12, top=0, controls=0, heads=[(99, 0)])
    from probes.analyses.values import heads as parse_heads

    assert parse_heads("L26H7, l3h0") == [(26, 7), (3, 0)]
    with pytest.raises(InputError, match="L<layer>H<head>"):
        parse_heads("26.7")
    with pytest.raises(InputError, match="domain"):
        domain_inputs(smollm, "poetry", 1, 12)
    with pytest.raises(InputError, match="two different domains"):
        dormant_heads(smollm, domains=("prose",), n=1, T=12)


def _entropies_by_loops(a: list[list[float]]) -> tuple[float, float]:
    """Plain-python reference: mean normalized row entropy (queries 1..T-1), max normalized column
    entropy (keys 0..T-2)."""
    T = len(a)

    def h(ps: list[float]) -> float:
        return -sum(p * math.log(p) for p in ps if p > 0)

    rows = [h(a[i][: i + 1]) / math.log(i + 1) for i in range(1, T)]
    cols = []
    for k in range(T - 1):
        col = [a[i][k] for i in range(k, T)]
        total = sum(col)
        cols.append(h([c / total for c in col]) / math.log(T - k) if total > 0 else 0.0)
    return sum(rows) / len(rows), max(cols)


def test_entropies_hand_worked():
    T = 6
    sink = torch.zeros(T, T)
    sink[:, 0] = 1.0
    assert float(row_entropy(sink)) == pytest.approx(0.0, abs=1e-7)
    assert float(column_entropy(sink)) == pytest.approx(1.0, abs=1e-6)  # column 0 uniform over all T queries
    assert bool(is_sink_head(row_entropy(sink), column_entropy(sink)))
    uniform = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]
    assert float(row_entropy(uniform)) == pytest.approx(1.0, abs=1e-6)
    # column k gets 1/(i+1) from each query i >= k; normalized over those T - k queries
    want_col = max(
        -sum((w / sum(1 / (i + 1) for i in range(k, T))) * math.log(w / sum(1 / (i + 1) for i in range(k, T)))
             for w in [1 / (i + 1) for i in range(k, T)]) / math.log(T - k)
        for k in range(T - 1)
    )
    assert float(column_entropy(uniform)) == pytest.approx(want_col, abs=1e-6)
    assert not bool(is_sink_head(row_entropy(uniform), column_entropy(uniform)))
    previous = torch.zeros(T, T)
    previous[0, 0] = 1.0
    for i in range(1, T):
        previous[i, i - 1] = 1.0
    assert float(row_entropy(previous)) == pytest.approx(0.0, abs=1e-7)
    assert float(column_entropy(previous)) == pytest.approx(math.log(2) / math.log(T), abs=1e-6)  # column 0: queries 0, 1


def test_entropies_match_loops_on_hf(smollm_with_ref):
    model, ref = smollm_with_ref
    T = int(ref.attention_mask.sum(1).min())
    stats = head_statistics(model, ref.input_ids[:, :T], batch_size=1)
    n = ref.input_ids.shape[0]
    for layer, head in [(0, 0), (3, 4), (15, 8), (29, 2)]:
        per_seq = [_entropies_by_loops(ref.attentions[layer][b, head, :T, :T].double().tolist()) for b in range(n)]
        assert float(stats["row_entropy"][layer, head]) == pytest.approx(sum(r for r, _ in per_seq) / n, abs=1e-4)
        assert float(stats["column_entropy"][layer, head]) == pytest.approx(sum(c for _, c in per_seq) / n, abs=1e-4)
