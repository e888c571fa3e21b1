"""Attention-statistics kernel (Triton interpreter on CPU) and torch reference vs a naive full pattern.

The naive computation builds the whole [T, T] softmax per head with an explicit mask (possible only
at tiny T). Tolerance 1e-4 absolute in fp32 (measured ~1e-6).
"""

from __future__ import annotations

import math

import pytest
import torch

from probes.errors import InputError
from probes.model.kernels.attention import attention_stats


def _naive(q, k, v, lengths, scale, n_sink, window):
    b, h, t, _ = q.shape
    rep = h // k.shape[1]
    k, v = k.float().repeat_interleave(rep, 1), v.float().repeat_interleave(rep, 1)
    s = q.float() @ k.transpose(-1, -2) * scale
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    ok = (j <= i) & ((i - j < window) if window else True)
    p = torch.softmax(s.masked_fill(~ok, -math.inf), dim=-1)
    real = (torch.arange(t)[None, :] < lengths[:, None]).float()
    logp = torch.log(p.clamp_min(1e-30))
    return {"max_prob": p.amax(-1), "entropy": -(p * logp).sum(-1), "sink": p[..., :n_sink],
            "received": torch.einsum("bhqk,bq->bhk", p, real), "output": p @ v, "lse": torch.logsumexp(
                s.masked_fill(~ok, -math.inf), -1)}


def _inputs(b=2, h=4, hk=2, t=37, d=16, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, n, t, d, generator=g).to(dtype) for n in (h, hk, hk))
    k[:, :, 0] *= 3  # a strong first key, like a sink
    return q, k, v, torch.tensor([t, t - 7][:b])


@pytest.mark.parametrize("window", [0, 9])
@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_statistics_match_naive_pattern(backend, window):
    q, k, v, lengths = _inputs()
    got = attention_stats(q, k, v, lengths, n_sink=3, window=window, backend=backend)
    want = _naive(q, k, v, lengths, 16**-0.5, 3, window)
    for name, w in want.items():
        g = got[name]
        if name != "received":  # per-query statistics: only real queries matter
            g, w = g[0], w[0]
        torch.testing.assert_close(g.float(), w, atol=1e-4, rtol=0, msg=f"{backend} {name} window {window}")


def test_bf16_inputs_and_custom_scale():
    q, k, v, lengths = _inputs(b=1, h=2, hk=1, t=20, dtype=torch.bfloat16, seed=4)
    got = attention_stats(q, k, v, lengths, scale=0.3, n_sink=1, backend="triton")
    want = _naive(q, k, v, lengths, 0.3, 1, 0)
    for name in ("max_prob", "entropy", "sink", "received", "lse"):
        torch.testing.assert_close(got[name], want[name], atol=1e-4, rtol=0, msg=name)


def test_bad_shapes_raise():
    q, k, v, lengths = _inputs()
    with pytest.raises(InputError, match="multiple"):
        attention_stats(q[:, :3], k, v, backend="torch")
    with pytest.raises(InputError, match="n_sink"):
        attention_stats(q, k, v, n_sink=0, backend="torch")


@pytest.mark.parametrize("window", [0, 9])
def test_received_summaries_kernel_equals_torch(window):
    """The sink report's per-layer step: the Triton kernel's `received` where it runs, the lean torch form."""
    import os

    from probes.attention_stats import received_summaries

    if not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"):
        pytest.skip("needs CUDA or Triton's interpreter")
    q, k, v, lengths = _inputs()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    q, k, v = q.to(dev), k.to(dev), v.to(dev)
    kernel = received_summaries(q, k, v, lengths, 0.25, window, entropies=False, backend="triton")
    torch_form = received_summaries(q, k, v, lengths, 0.25, window, entropies=False, backend="torch")
    want = _naive(q.cpu(), k.cpu(), v.cpu(), lengths, 0.25, 1, window)["received"]
    torch.testing.assert_close(kernel["received"].cpu(), want, atol=1e-4, rtol=0)
    torch.testing.assert_close(torch_form["received"].cpu(), want, atol=1e-4, rtol=0)
