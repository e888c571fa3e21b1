"""Head edits run on the fused output (probes.model.attention_edits) equal the same edits on eager patterns.

Reference: each edit's pattern form (hidden_sinks.calibrate_pattern, scale_first_token, the dormant ablations),
checked by hand in test_hidden_sinks.py / test_dormant.py, multiplied with v here or run as pattern hooks on
eager attention. fp32; per-token losses within 1e-4 nats (SDPA and eager differ by ~1e-5 in logits).
"""

from __future__ import annotations

import math

import pytest
import torch

from probes.dormant import ABLATIONS, ablation_edit
from probes.hidden_sinks import (
    calibrate_output,
    calibrate_pattern,
    calibration_edits,
    evaluate_intervention,
    scale_first_output,
    scale_first_token,
    scaling_edits,
)
from probes.model.attention_edits import AttentionParts
from probes.model.kernels.attention_stats_flash import flash_attention_with_lse
from probes.sinks import inputs_for_regime
from tests.probes.hook_recorder import count_calls


def _parts_with_a_hidden_sink(seed: int = 0) -> tuple[AttentionParts, torch.Tensor]:
    """Random causal attention where key 5 draws attention from most queries (a sink past the first token)."""
    gen = torch.Generator().manual_seed(seed)
    b, h, t, d = 2, 3, 24, 8
    q, k, v = (torch.randn(b, h, t, d, generator=gen) for _ in range(3))
    k[:, :2, 5] = q[:, :2].mean(dim=2) * 6.0  # heads 0 and 1: key 5 scores high against every query
    out, lse = flash_attention_with_lse(q, k, v, 0.5)
    i = torch.arange(t)
    pattern = torch.softmax((q @ k.transpose(-1, -2) * 0.5).masked_fill(i[None] > i[:, None], -math.inf), dim=-1)
    return AttentionParts(q, k, v, out, lse, 0.5), pattern


def test_calibration_output_equals_the_calibrated_pattern_times_v():
    parts, pattern = _parts_with_a_hidden_sink()
    calibrated = calibrate_pattern(pattern, beta=0.4)
    assert (calibrated - pattern).abs().max() > 0.05  # the planted sink was found and moved
    torch.testing.assert_close(calibrate_output(parts, 0.4), calibrated @ parts.v, atol=1e-5, rtol=0)


@pytest.mark.parametrize("gamma", [0.3, 1.0, 2.5])
def test_first_token_scaling_output_equals_the_scaled_pattern_times_v(gamma):
    parts, pattern = _parts_with_a_hidden_sink(1)
    torch.testing.assert_close(scale_first_output(parts, gamma), scale_first_token(pattern, gamma) @ parts.v,
                               atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def ids(smollm):
    return inputs_for_regime(smollm, "natural", 2, 48, seed=3)


def _edits(model):
    every = [(layer, h) for layer in range(model.facts.n_layers) for h in range(model.facts.n_heads)]
    return {
        "scale 0.5, every head": scaling_edits(model, every, 0.5),
        "scale 1.5": scaling_edits(model, [(3, 1), (10, 4)], 1.5),
        "calibrate": calibration_edits(model, [(14, 0), (12, 7), (13, 0)]),  # SmolLM2's hidden-sink heads
        **{mode: [ablation_edit(model, 5, 2, mode)] for mode in ABLATIONS},
    }


@pytest.mark.parametrize("name", ["scale 0.5, every head", "scale 1.5", "calibrate", *ABLATIONS])
def test_fused_edits_equal_pattern_edits_on_the_embedded_model(smollm, ids, name):
    edits = _edits(smollm)[name]
    assert smollm.attention_path("fast", edits) == "fast"
    fast = smollm.loss_per_token(ids, edits=edits)
    slow = smollm.loss_per_token(ids, edits=edits, attention="patterns")
    clean = smollm.loss_per_token(ids, attention="patterns")
    torch.testing.assert_close(fast, slow, atol=1e-4, rtol=0)
    assert (slow - clean).abs().max() > 1e-2  # the edit changes the loss, so the comparison can fail


def test_edits_take_the_pattern_path_where_the_fused_op_cannot(smollm, monkeypatch):
    edit = [ablation_edit(smollm, 5, 2, "zero_out_attn")]
    assert smollm.attention_path("fast") == "fast" and smollm.attention_path("patterns", edit) == "patterns"
    padded = torch.ones(1, 8, dtype=torch.long)
    padded[0, 6:] = 0
    assert smollm.attention_path("fast", edit, padded) == "patterns"
    monkeypatch.setattr(type(smollm), "attention_window", lambda self, layer: 4 if layer == 5 else 0)
    assert smollm.attention_path("fast", edit) == "patterns"
    assert smollm.attention_path("fast", [ablation_edit(smollm, 6, 2, "zero_out_attn")]) == "fast"


def test_interventions_record_their_path_and_agree(smollm, ids):
    fast = evaluate_intervention(smollm, ids, "scale_first", [(3, 1), (10, 4)], gamma=0.2)
    slow = evaluate_intervention(smollm, ids, "scale_first", [(3, 1), (10, 4)], gamma=0.2, attention="patterns")
    assert fast.metadata["settings"]["attention"] == "sdpa" and slow.metadata["settings"]["attention"] == "eager"
    assert fast.loss_after == pytest.approx(slow.loss_after, abs=1e-5)
    assert abs(slow.delta) > 1e-3


def test_forward_runs_the_fast_attention_and_equals_eager(smollm, ids, monkeypatch):
    import transformers.integrations.sdpa_attention as sdpa

    calls = count_calls(monkeypatch, sdpa, "sdpa_attention_forward")
    fast = smollm.forward(ids)
    assert len(calls) == smollm.facts.n_layers
    slow = smollm.forward(ids, attention="patterns")
    assert len(calls) == smollm.facts.n_layers  # the eager run does not reach it
    torch.testing.assert_close(fast, slow, atol=2e-4, rtol=1e-5)
    assert smollm.hf_model.config._attn_implementation == "eager"


def test_a_run_with_hooks_attached_takes_the_eager_attention(smollm, ids):
    """A hook added on the shared bridge (inside attention here) must still fire on a plain forward."""
    seen = []
    point = smollm.bridge.hook_dict["blocks.2.attn.hook_pattern"]
    point.add_hook(lambda pattern, hook: seen.append(pattern.shape))
    try:
        assert smollm.attention_path("fast") == "patterns"
        smollm.forward(ids)
    finally:
        point.remove_hooks()
    assert seen and smollm.attention_path("fast") == "fast"
