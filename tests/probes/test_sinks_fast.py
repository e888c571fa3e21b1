"""The sink report's statistics path (probes.sinks, attention="fast"; docs/kernels.md "The statistics path").

Reference: the pattern path (attention="patterns", eager patterns reduced in hooks), itself checked against
HF eager attention in tests/probes/test_sinks.py and on every family in tests/conformance/. fp32, 1e-5.
"""

from __future__ import annotations

import threading

import pytest
import torch

from probes.errors import BudgetError, InputError
from probes.sinks import compute_sinks, inputs_for_regime, sink_memory_bytes
from tests.probes.hook_recorder import count_calls


@pytest.fixture(scope="module")
def natural_ids(smollm):
    return inputs_for_regime(smollm, "natural", 3, 24, seed=5)


@pytest.fixture(params=["fused", "chunked"])
def sums_route(request, monkeypatch):
    """The fast path's per-key sums from the fused passes (CPU) or the chunked form, whatever the length."""
    import probes.attention_stats as stats

    monkeypatch.setattr(stats, "FUSED_FROM", 2 if request.param == "fused" else 10**9)
    return request.param


def test_fast_equals_patterns(smollm, natural_ids, sums_route):
    fast = compute_sinks(smollm, natural_ids, attention="fast", batch_size=2)
    slow = compute_sinks(smollm, natural_ids, attention="patterns", batch_size=2)
    torch.testing.assert_close(fast.alpha, slow.alpha, atol=1e-5, rtol=0)
    assert fast.sink1 == slow.sink1 and torch.equal(fast.head_rate, slow.head_rate)
    assert fast.metadata["settings"]["attention"] == "sdpa" and slow.metadata["settings"]["attention"] == "eager"


def test_the_model_is_left_as_it_was(smollm, natural_ids):
    attn = [m for m in smollm.hf_model.modules() if type(m).__name__.endswith("AttentionBridge")]
    before = [vars(m).get("forward") for m in attn]  # None, or the nnsight view's wrapper
    compute_sinks(smollm, natural_ids[:1], attention="fast")
    assert smollm.hf_model.config._attn_implementation == "eager"
    assert attn and [vars(m).get("forward") for m in attn] == before
    cap_before = compute_sinks(smollm, natural_ids[:1], attention="patterns")
    assert cap_before.alpha.isfinite().all()


def test_an_error_inside_the_run_restores_the_model(smollm, natural_ids):
    def boom(layer, q, k, v, scaling, lse):
        raise RuntimeError("observer failed")

    with pytest.raises(RuntimeError, match="observer failed"):
        smollm.run_observing_attention(natural_ids[:1], boom)
    assert smollm.hf_model.config._attn_implementation == "eager"
    logits = smollm.forward(natural_ids[:1])
    assert logits.isfinite().all()


def test_fast_and_pattern_runs_in_threads_see_only_their_own(smollm, natural_ids):
    want = {m: compute_sinks(smollm, natural_ids, attention=m).alpha for m in ("fast", "patterns")}
    got: dict[str, list[torch.Tensor]] = {"fast": [], "patterns": []}

    def worker(mode: str) -> None:
        for _ in range(2):
            got[mode].append(compute_sinks(smollm, natural_ids, attention=mode).alpha)

    threads = [threading.Thread(target=worker, args=(m,)) for m in ("fast", "patterns", "fast")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for mode, results in got.items():
        for alpha in results:
            assert torch.equal(alpha, want[mode])


def test_unknown_mode_is_refused(smollm, natural_ids):
    with pytest.raises(InputError, match="Unknown attention mode 'flash'"):
        compute_sinks(smollm, natural_ids, attention="flash")


def test_memory_estimate_is_linear_for_fast_and_quadratic_for_patterns(smollm):
    Ts = (4096, 6144, 8192)  # equally spaced: an affine f has f(a) - 2 f(b) + f(c) = 0
    f = [sink_memory_bytes(smollm, 1, T, "fast") for T in Ts]
    p = [sink_memory_bytes(smollm, 1, T, "patterns") for T in Ts]
    assert f[2] - 2 * f[1] + f[0] == 0 and f[2] > f[1] > f[0]  # affine in T: a bounded chunk plus per-token terms
    assert p[2] - 2 * p[1] + p[0] > 0 and 3.5 < p[2] / p[0] < 4.1  # quadratic
    h, T = smollm.facts.n_heads, Ts[-1]
    assert p[-1] >= h * T * T * 4 > f[-1]  # one layer's fp32 pattern alone outweighs the whole fast path


def test_over_budget_is_refused_before_running_with_the_numbers(smollm, natural_ids, monkeypatch):
    monkeypatch.setattr("probes.sinks.default_budget_bytes", lambda device: 1000)
    with pytest.raises(BudgetError, match=r"needs about .* GiB .*budget"):
        compute_sinks(smollm, natural_ids, attention="patterns")


def test_the_cli_offers_the_same_modes_without_importing_torch():
    from probes.analyses.sinks_report import ATTENTION as CLI_MODES
    from probes.sinks import ATTENTION_MODES

    assert CLI_MODES == ATTENTION_MODES


def test_an_nnsight_trace_after_a_fast_run_still_sees_attention(smollm, natural_ids):
    """The nnsight view wraps modules' forward on the instance; the fast run must put those wrappers back."""
    from probes import remote as nd

    lm = smollm.nnsight
    before = nd.first_token_attention(lm, natural_ids, min_query=1)
    compute_sinks(smollm, natural_ids, attention="fast")
    torch.testing.assert_close(nd.first_token_attention(lm, natural_ids, min_query=1), before, atol=0, rtol=0)


@pytest.mark.parametrize("window", [0, 9])
@pytest.mark.parametrize("max_chunk", [2**25, 2000])  # one chunk, and many
def test_received_attention_equals_the_reference_and_a_softmax(window, max_chunk, monkeypatch):
    import math

    import probes.model.kernels.attention_stats_reference as ref

    monkeypatch.setattr(ref, "MAX_CHUNK_ELEMENTS", max_chunk)
    gen = torch.Generator().manual_seed(0)
    b, h, kv, t, d = 3, 6, 2, 40, 16
    q = torch.randn(b, t, h, d, generator=gen).transpose(1, 2)  # non-contiguous, as HF passes it
    k = torch.randn(b, kv, t, d, generator=gen)
    lengths = torch.tensor([40, 23, 5])
    got = ref.received_attention(q, k, lengths, 0.3, window, entropies=True)
    want = ref.attention_stats_reference(q, k, k, lengths, 0.3, 1, window, True)
    torch.testing.assert_close(got["received"], want["received"], atol=1e-5, rtol=0)
    torch.testing.assert_close(got["entropy"], want["entropy"], atol=1e-5, rtol=0)
    torch.testing.assert_close(got["first"], want["sink"][..., 0], atol=1e-6, rtol=0)
    assert set(ref.received_attention(q, k, lengths, 0.3, window)) == {"received"}
    i = torch.arange(t)
    visible = (i[None] <= i[:, None]) & ((i[:, None] - i[None] < window) if window else True)
    s = (q @ k.repeat_interleave(h // kv, dim=1).transpose(-1, -2)) * 0.3
    p = torch.softmax(s.masked_fill(~visible, -math.inf), dim=-1)  # textbook, all T x T at once
    real = (i[None] < lengths[:, None]).float()
    torch.testing.assert_close(got["received"], torch.einsum("bhqk,bq->bhk", p, real), atol=1e-5, rtol=0)
    xlogx = torch.special.xlogy(p, p)
    torch.testing.assert_close(got["received_xlogx"], torch.einsum("bhqk,bq->bhk", xlogx, real), atol=1e-5, rtol=0)


def test_dormancy_statistics_fast_equal_patterns(smollm, sums_route):
    from probes.dormant import domain_inputs, head_statistics

    ids = domain_inputs(smollm, "code", 3, 24, seed=2)
    fast = head_statistics(smollm, ids, batch_size=2, attention="fast")
    slow = head_statistics(smollm, ids, batch_size=2, attention="patterns")
    for name in ("dormancy", "row_entropy", "column_entropy"):
        torch.testing.assert_close(fast[name], slow[name], atol=1e-5, rtol=0, msg=name)


@pytest.mark.parametrize("scale_up", [1.0, 8.0])  # ordinary heads, and near one-hot rows (dormant-like)
def test_received_from_lse_equals_a_softmax(scale_up):
    """The fused route (attention_stats_flash): per-key sums from the model pass's lse and a swapped pass."""
    import math

    from probes.model.kernels.attention_stats_flash import flash_attention_with_lse, received_from_lse

    gen = torch.Generator().manual_seed(1)
    b, h, kv, t, d = 2, 6, 2, 37, 16
    q = torch.randn(b, t, h, d, generator=gen).transpose(1, 2) * scale_up
    k, v = torch.randn(b, kv, t, d, generator=gen), torch.randn(b, kv, t, d, generator=gen)
    lengths = torch.tensor([37, 20])
    out, lse = flash_attention_with_lse(q, k, v, 0.3)
    i = torch.arange(t)
    s = (q @ k.repeat_interleave(h // kv, dim=1).transpose(-1, -2)) * 0.3
    s = s.masked_fill(i[None] > i[:, None], -math.inf)  # textbook, all T x T at once
    p = torch.softmax(s, dim=-1)
    torch.testing.assert_close(lse, torch.logsumexp(s, -1), atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(out, p @ v.repeat_interleave(h // kv, dim=1), atol=1e-5, rtol=0)
    got = received_from_lse(q, k, lse, lengths, 0.3, entropies=True)
    real = (i[None] < lengths[:, None]).float()
    seen = i[None, None] < lengths[:, None, None]  # [batch, 1, key]: keys past a prompt's end are padding
    xlogx = torch.special.xlogy(p, p)
    want = {"received": torch.einsum("bhqk,bq->bhk", p, real), "received_xlogx": torch.einsum("bhqk,bq->bhk", xlogx, real),
            "entropy": -xlogx.sum(-1), "first": p[..., 0]}
    for name, value in want.items():
        torch.testing.assert_close(got[name][seen.expand_as(value)], value[seen.expand_as(value)],
                                   atol=2e-5 * scale_up, rtol=1e-5, msg=name)
    assert set(received_from_lse(q, k, lse, lengths, 0.3)) == {"received"}


def test_the_fused_route_runs_on_every_layer_of_the_embedded_model(smollm, monkeypatch):
    """On the CPU the sink report takes each layer's lse from the fused op and its sums from the swapped pass."""
    import probes.attention_stats as stats

    calls = count_calls(monkeypatch, stats, "received_from_lse")
    ids = inputs_for_regime(smollm, "random", 1, stats.FUSED_FROM, seed=2)
    fast = compute_sinks(smollm, ids, attention="fast")
    assert len(calls) == smollm.facts.n_layers
    compute_sinks(smollm, ids[:, : stats.FUSED_FROM - 1], attention="fast")  # shorter: the chunked form
    assert len(calls) == smollm.facts.n_layers
    slow = compute_sinks(smollm, ids, attention="patterns")
    torch.testing.assert_close(fast.alpha, slow.alpha, atol=1e-5, rtol=0)


def test_the_fused_route_is_not_taken_where_the_op_cannot_give_lse():
    from probes.model.kernels.attention_stats_flash import flash_takes

    q = torch.zeros(1, 2, 5, 8)
    assert flash_takes(q, q, None, 0.0)
    assert not flash_takes(q, q, torch.ones(1, 1, 5, 5, dtype=torch.bool), 0.0)  # padding or a sliding window
    assert not flash_takes(q, q, None, 0.1)  # dropout
    assert not flash_takes(q[:, :, :1], q, None, 0.0)  # one query against a cache
    assert not flash_takes(q.double(), q.double(), None, 0.0)
