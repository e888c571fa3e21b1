"""Sink_k^eps (spec attention-sinks.md, "Sink metric") against hand-worked values and HF eager attentions."""

from __future__ import annotations

import json

import pytest
import torch

from probes.errors import InputError
from probes.io import to_jsonable
from probes.sinks import alpha_from_pattern, check_eps, compute_sinks, inputs_for_regime, sink_rate

ATOL = 1e-4  # fp32 attention from two code paths (bridge hooks vs HF eager)


def test_alpha_hand_worked():
    # T = 3. Column 0 is seen by 3 queries, column 1 by 2, column 2 by 1.
    A = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.4, 0.0], [0.5, 0.2, 0.3]])
    alpha = alpha_from_pattern(A)
    assert torch.allclose(alpha, torch.tensor([(1 + 0.6 + 0.5) / 3, (0.4 + 0.2) / 2, 0.3 / 1]))
    # entries above the diagonal are ignored even if a pattern carries junk there
    junk = A + torch.triu(torch.ones(3, 3), 1)
    assert torch.allclose(alpha_from_pattern(junk), alpha)


def test_sink_rate_thresholds_before_averaging_and_is_strict():
    # 2 samples, 1 layer, 2 heads, T = 2. alpha for k = 0: 0.9, 0.3 | 0.31, 0.1
    alpha = torch.tensor([[[[0.9, 0.1], [0.3, 0.7]]], [[[0.31, 0.5], [0.1, 0.2]]]])
    rate = sink_rate(alpha, eps=0.3)
    # k=0: 0.9 > .3 yes, 0.3 > .3 NO (strict), 0.31 yes, 0.1 no -> 2/4; k=1: 0.7, 0.5 -> 2/4
    assert torch.allclose(rate, torch.tensor([50.0, 50.0]))
    # averaging alpha over samples first would give head 1: (0.3+0.1)/2 = 0.2 -> a different answer (25%)
    alpha2 = torch.tensor([[[[0.9]]], [[[0.0]]]])  # per-sample: 50%; averaged first: 0.45 > .3 -> 100%
    assert float(sink_rate(alpha2, 0.3)[0]) == 50.0


@pytest.mark.parametrize("eps", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_eps_outside_open_interval(eps):
    with pytest.raises(InputError, match="eps"):
        check_eps(eps)


def test_matches_hf_eager_attentions(smollm_with_ref):
    model, ref = smollm_with_ref
    T = int(ref.attention_mask.sum(1).min())  # both prompts have at least T real tokens; right padding
    ids = ref.input_ids[:, :T]
    result = compute_sinks(model, ids, eps=0.3, batch_size=1)
    # plain reference: loop over samples, layers, heads, keys
    n, L, H = ids.shape[0], len(ref.attentions), ref.attentions[0].shape[1]
    alpha = torch.zeros(n, L, H, T)
    for s in range(n):
        for layer in range(L):
            for h in range(H):
                A = ref.attentions[layer][s, h, :T, :T]
                for k in range(T):
                    alpha[s, layer, h, k] = sum(float(A[i, k]) for i in range(k, T)) / (T - k)
    assert torch.allclose(result.alpha, alpha, atol=ATOL)
    near = (alpha - 0.3).abs() < ATOL
    expected = 100 * ((alpha > 0.3) | near & (result.alpha > 0.3)).float().mean(dim=(0, 1, 2))
    assert torch.allclose(result.sink_rate, expected)
    assert result.sink1 == pytest.approx(float(expected[0]))
    assert torch.allclose(result.head_rate, 100 * (result.alpha[..., 0] > 0.3).float().mean(0))
    assert result.str_tokens[0][0] == model.to_str_tokens(ids[0])[0]
    json.dumps(to_jsonable(result.to_dict()))


def test_regimes(smollm):
    a = inputs_for_regime(smollm, "random", 3, 10, seed=5)
    assert a.shape == (3, 10) and torch.equal(a, inputs_for_regime(smollm, "random", 3, 10, seed=5))
    assert not torch.equal(a, inputs_for_regime(smollm, "random", 3, 10, seed=6))
    r = inputs_for_regime(smollm, "repeat", 2, 8, seed=1)
    assert (r == r[:, :1]).all()
    b = inputs_for_regime(smollm, "repeat", 2, 8, seed=1, prepend_bos=True)
    assert (b[:, 0] == smollm.facts.bos_token_id).all() and b.shape == (2, 8) and (b[:, 1:] == b[:, 1:2]).all()
    nat = inputs_for_regime(smollm, "natural", 2, 12)
    assert nat.shape == (2, 12)
    assert smollm.facts.bos_token_id not in a.tolist()[0]
    with pytest.raises(InputError, match="regime"):
        inputs_for_regime(smollm, "zipf", 2, 8)


def test_bad_inputs(smollm):
    with pytest.raises(InputError, match="shorter than T"):
        compute_sinks(smollm, [[1, 2, 3, 4], [5, 6]], T=4)
    with pytest.raises(InputError, match="shorter than T"):
        compute_sinks(smollm, [[10, 20, 30], [10, 20]])
    with pytest.raises(InputError, match="eps"):
        compute_sinks(smollm, torch.tensor([[10, 20, 30]]), eps=1.0)
    with pytest.raises(InputError, match="BOS"):
        compute_sinks(smollm, torch.tensor([[10, 20, 30]]), prepend_bos=True)
    with pytest.raises(InputError, match="regime"):
        compute_sinks(smollm, torch.tensor([[10, 20, 30]]), regime="zipf")


def test_rows_longer_than_T_are_cut(smollm):
    long = compute_sinks(smollm, [[10, 20, 30, 40, 50, 60]], T=4)
    short = compute_sinks(smollm, torch.tensor([[10, 20, 30, 40]]))
    assert torch.allclose(long.alpha, short.alpha, atol=1e-6)


@pytest.mark.slow
def test_gemma_with_bos_matches_hf(gemma_with_ref):
    model, ref = gemma_with_ref
    T = int(ref.attention_mask.sum(1).min())
    ids = ref.input_ids[:, :T]
    assert (ids[:, 0] == model.facts.bos_token_id).all()
    result = compute_sinks(model, ids, prepend_bos=True)
    alpha = torch.stack([alpha_from_pattern(a[:, :, :T, :T]) for a in ref.attentions], dim=1)
    assert torch.allclose(result.alpha, alpha, atol=ATOL)
    assert result.prepend_bos and result.first_is_bos
