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
ROW_BLOCK = 256  # received_attention's query block
SUMMARIES = ("received", "received_xlogx", "entropy", "first")  # received_attention's keys with entropies=True


def attention_stats_reference(
    q: Tensor, k: Tensor, v: Tensor, lengths: Tensor, scale: float, n_sink: int, window: int,
    received: bool, output: bool = True,
) -> dict[str, Tensor]:
    """Statistics of causal (optionally sliding-window) softmax attention; see probes.model.kernels.attention."""
    bsz, h, t, _ = q.shape
    group = h // k.shape[1]
    kf = k.float().repeat_interleave(group, dim=1)
    vf = v.float().repeat_interleave(group, dim=1) if output else v
    qf = q.float()
    chunk = max(1, MAX_CHUNK_ELEMENTS // max(1, bsz * h * t))
    out = {name: torch.empty((bsz, h, t), device=q.device) for name in ("lse", "max_prob", "entropy")}
    out["sink"] = torch.zeros((bsz, h, t, n_sink), device=q.device)
    if output:
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
        if output:
            out["output"][:, :, c0:c1] = torch.einsum("bhqk,bhkd->bhqd", p, vf[:, :, :c1]).to(q.dtype)
        if received:
            real = (rows[None, :] < lengths[:, None]).float()  # [batch, chunk]
            rec[:, :, :c1] += torch.einsum("bhqk,bq->bhk", p, real)
    if received:
        out["received"] = rec
    return out


def received_attention(q: Tensor, k: Tensor, lengths: Tensor, scale: float, window: int,
                       entropies: bool = False) -> dict[str, Tensor]:
    """Per-key sums over the real queries, and with `entropies` per-query figures; fp32 [batch, head, pos]:
    - received: sum_i A[i, k], the attention key k receives;
    - received_xlogx (entropies): sum_i A[i, k] log A[i, k], for a column's entropy
      H(A[:, k] / received_k) = log received_k - received_xlogx_k / received_k;
    - entropy (entropies): H(A[i, :]) of each query's row, nats; first: A[i, 0].

    The lean form of the reference for the sink report and the dormancy statistics: grouped-query heads read
    their key without a copy, one softmax per query chunk, sums over queries as matrix products. Same chunk
    bound as the reference."""
    bsz, h, t, d = q.shape
    kv, g = k.shape[1], h // k.shape[1]
    qf = (q.float() * scale).reshape(bsz, kv, g, t, d)  # scaled once here, not per score
    kt = k.float()[:, :, None].transpose(-1, -2)  # [batch, kv, 1, d, keys]: broadcast over the group
    real = (torch.arange(t, device=q.device)[None] < lengths.to(q.device)[:, None]).float()  # [batch, queries]
    # Blocks of at most ROW_BLOCK queries: each reads only the keys up to its last query, so the causal
    # half of the scores is mostly skipped (at T = 1024 a quarter more work instead of twice the needed).
    chunk = max(1, min(ROW_BLOCK, MAX_CHUNK_ELEMENTS // max(1, bsz * h * t)))
    names = SUMMARIES if entropies else SUMMARIES[:1]
    out = {name: torch.zeros((bsz, kv, g, 1, t), device=q.device) for name in names}
    keys = torch.arange(t, device=q.device)
    for c0 in range(0, t, chunk):
        c1 = min(t, c0 + chunk)
        rows = torch.arange(c0, c1, device=q.device)
        s = torch.matmul(qf[:, :, :, c0:c1], kt[..., :c1])  # [batch, kv, group, chunk, keys]
        if window > 0:
            s.masked_fill_((keys[None, :c1] > rows[:, None]) | (rows[:, None] - keys[None, :c1] >= window), -math.inf)
        else:  # keys before the block are visible to all of it: only the block's own square needs the mask
            s[..., c0:c1].masked_fill_(keys[None, c0:c1] > rows[:, None], -math.inf)
        p = torch.softmax(s, dim=-1)
        weights = real[:, None, None, None, c0:c1]  # [batch, 1, 1, 1, chunk]
        out["received"][..., :c1] += torch.matmul(weights, p)
        if entropies:
            xlogx = torch.special.xlogy(p, p)
            out["received_xlogx"][..., :c1] += torch.matmul(weights, xlogx)
            out["entropy"][..., 0, c0:c1] = -xlogx.sum(dim=-1)
            out["first"][..., 0, c0:c1] = p[..., 0]
    return {name: value.view(bsz, h, t) for name, value in out.items()}
