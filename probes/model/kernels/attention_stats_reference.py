"""Torch reference for the attention-statistics kernel (same signature; spec: kernels.md).

Chunked over queries: one chunk holds [batch, head, chunk, keys] scores, never the whole T x T
pattern (chunk chosen so that is at most ~2^25 floats). Computed in fp32 from inputs of any dtype.
Entropy here is -sum p log p (torch.special.xlogy), a different formula from the kernel's
lse - sum p s, so the two check each other.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

MAX_CHUNK_ELEMENTS = 2**25


def attention_stats_reference(
    q: Tensor, k: Tensor, v: Tensor, lengths: Tensor, scale: float, n_sink: int, window: int,
    received: bool,
) -> dict[str, Tensor]:
    """Statistics of causal (optionally sliding-window) softmax attention; see probes.model.kernels.attention."""
    bsz, h, t, _ = q.shape
    group = h // k.shape[1]
    kf = k.float().repeat_interleave(group, dim=1)
    vf = v.float().repeat_interleave(group, dim=1)
    qf = q.float()
    chunk = max(1, MAX_CHUNK_ELEMENTS // max(1, bsz * h * t))
    out = {name: torch.empty((bsz, h, t), device=q.device) for name in ("lse", "max_prob", "entropy")}
    out["sink"] = torch.zeros((bsz, h, t, n_sink), device=q.device)
    out["output"] = torch.empty(q.shape, device=q.device, dtype=q.dtype)
    rec = torch.zeros((bsz, h, t), device=q.device)
    keys = torch.arange(t, device=q.device)
    lengths = lengths.to(q.device)
    for c0 in range(0, t, chunk):
        c1 = min(t, c0 + chunk)
        rows = torch.arange(c0, c1, device=q.device)
        s = torch.einsum("bhqd,bhkd->bhqk", qf[:, :, c0:c1], kf[:, :, :c1]) * scale
        ok = keys[None, :c1] <= rows[:, None]
        if window > 0:
            ok &= rows[:, None] - keys[None, :c1] < window
        s = s.masked_fill(~ok, -math.inf)
        lse = torch.logsumexp(s, dim=-1)
        p = torch.exp(s - lse[..., None])
        out["lse"][:, :, c0:c1] = lse
        out["max_prob"][:, :, c0:c1] = p.amax(dim=-1)
        out["entropy"][:, :, c0:c1] = -torch.special.xlogy(p, p).sum(dim=-1)
        ns = min(n_sink, c1)
        out["sink"][:, :, c0:c1, :ns] = p[..., :ns]
        out["output"][:, :, c0:c1] = torch.einsum("bhqk,bhkd->bhqd", p, vf[:, :, :c1]).to(q.dtype)
        if received:
            real = (rows[None, :] < lengths[:, None]).float()  # [batch, chunk]
            rec[:, :, :c1] += torch.einsum("bhqk,bq->bhk", p, real)
    if received:
        out["received"] = rec
    return out
