"""attention_statistics on the embedded model vs HF eager attention and probes.model.capture's pattern.

Independent references: the HF eager attention weights of the plain model (fixture smollm_with_ref)
and the eager pattern captured through the bridge. Tolerance 1e-4 absolute in fp32.
"""

from __future__ import annotations

import os

import pytest
import torch

from probes.attention_stats import AttentionStats, attention_statistics
from probes.errors import KernelUnavailableError
from probes.model.capture import capture
from probes.model.hooked_model import Tokens

N_SINK = 2


def _stats_from_pattern(pattern: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """pattern [batch, layer, head, q, k] -> the statistics, by the textbook formulas."""
    real_q = mask.float()[:, None, None, :, None]
    return {"max_prob": pattern.amax(-1), "entropy": -torch.special.xlogy(pattern, pattern).sum(-1),
            "sink": pattern[..., :N_SINK], "received": (pattern * real_q).sum(-2)}


def _assert_close(stats: AttentionStats, want: dict[str, torch.Tensor], mask: torch.Tensor) -> None:
    real = mask.bool()[:, None, None, :]
    for name, w in want.items():
        g = getattr(stats, name)
        sel = real[..., None].expand_as(g) if name == "sink" else real.expand_as(g)
        torch.testing.assert_close(g[sel], w[sel], atol=1e-4, rtol=0, msg=name)
        assert torch.isnan(g[~sel]).all(), f"{name} must be NaN at padded positions"


def test_matches_hf_eager_attention(smollm_with_ref):
    model, ref = smollm_with_ref
    toks = Tokens(ref.input_ids, ref.attention_mask, [[""] * ref.input_ids.shape[1]] * 2, False)
    stats = attention_statistics(model, toks, n_sink=N_SINK, backend="torch")
    pattern = torch.stack([a.float() for a in ref.attentions], dim=1)
    assert stats.backend == "torch" and stats.layers == list(range(model.facts.n_layers))
    _assert_close(stats, _stats_from_pattern(pattern, ref.attention_mask), ref.attention_mask)
    alpha = stats.alpha()
    lengths = ref.attention_mask.sum(1)
    t0 = int(lengths[1]) - 1  # last real key of prompt 1: seen by its own query only
    torch.testing.assert_close(alpha[1, :, :, t0], stats.received[1, :, :, t0])
    assert torch.isnan(alpha[1, :, :, int(lengths[1]):]).all()


def test_triton_backend_matches_capture_pattern(smollm):
    if not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"):
        pytest.skip("needs CUDA or Triton's interpreter")
    prompts = ["The days of the week are Monday, Tuesday,", "One, two"]
    cap = capture(smollm, prompts, what=["pattern"], layers=[0, 7])
    stats = attention_statistics(smollm, prompts, layers=[7, 0], n_sink=N_SINK, backend="triton")
    assert stats.layers == [0, 7] and stats.backend == "triton"
    _assert_close(stats, _stats_from_pattern(cap["pattern"], cap.mask), cap.mask)
    assert smollm.forward(smollm.to_tokens("hello")).shape[-1] == smollm.facts.d_vocab  # no hooks left behind


def test_explicit_triton_without_gpu_or_interpreter_raises(smollm, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(KernelUnavailableError, match="TRITON_INTERPRET=1"):
        attention_statistics(smollm, "hello there", backend="triton")


def test_to_dict_is_json_ready(smollm):
    stats = attention_statistics(smollm, ["a b c d"], layers=1, backend="torch")
    d = stats.to_dict()
    assert d["metadata"]["model"] == smollm.spec and d["layers"] == [1]
    assert len(d["alpha"][0][0]) == smollm.facts.n_heads


@pytest.mark.slow
def test_gemma_scale_and_sliding_window(gemma_with_ref):
    model, ref = gemma_with_ref
    from probes.attention_stats import layer_scale_and_window

    windows = [layer_scale_and_window(model, i)[1] for i in range(model.facts.n_layers)]
    assert any(w > 0 for w in windows) and any(w == 0 for w in windows)
    toks = Tokens(ref.input_ids, ref.attention_mask, [[""] * ref.input_ids.shape[1]] * 2, False)
    stats = attention_statistics(model, toks, n_sink=N_SINK, backend="torch")
    pattern = torch.stack([a.float() for a in ref.attentions], dim=1)
    _assert_close(stats, _stats_from_pattern(pattern, ref.attention_mask), ref.attention_mask)
