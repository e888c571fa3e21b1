"""Triton attention with statistics, without the T x T pattern (spec: kernels.md, "Attention statistics").

Pass 1 (`_stats_fwd_kernel`): causal flash-style forward over grouped-query heads (query head h reads
key/value group h // group). Per (batch, head, query) it keeps, in fp32, the running max m, the
softmax denominator l and the unnormalised sum a = sum_j exp(s_ij - m) s_ij, all rescaled together
when m grows. At the end: lse = m + log l, max probability = 1 / l, entropy = lse - a / l, and the
attention on the first n_sink keys p_ij = exp(s_ij - lse) (recomputed from those keys). It also
writes the attention output o (the flash forward it is).
Pass 2 (`_received_kernel`): per key block, recomputes p = exp(s - lse) tile by tile over the
queries that see the keys (as a flash backward does) and sums over queries: attention received.
Queries at or past a row's length (right padding) are left out of the sums.
Masks: causal, optionally a sliding window (key j visible from query i when i - j < window, the
HF convention). Scores s = (q . k) * scale, in fp32. bf16/fp16 operands go to tl.dot natively on
GPU (fp32 accumulate); under the interpreter they are cast to fp32 first (its bf16 arithmetic is
wrong). fp32 operands use input_precision="ieee".
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from probes.model.kernels.dispatch import interpreting


@triton.jit
def _visible(offs_m, offs_n, T, WINDOW: tl.constexpr):
    ok = (offs_n[None, :] <= offs_m[:, None]) & (offs_n[None, :] < T)
    if WINDOW > 0:
        ok = ok & (offs_m[:, None] - offs_n[None, :] < WINDOW)
    return ok


@triton.jit
def _stats_fwd_kernel(Q, K, V, OUT, LSE, MAXP, ENT, SINK, scale, T, H, GROUP, N_SINK,
                      sqb, sqh, sqt, skb, skh, skt, svb, svh, svt, sob, soh, sot,
                      WINDOW: tl.constexpr, NS_PAD: tl.constexpr, D: tl.constexpr,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAST_F32: tl.constexpr,
                      PRECISION: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    hk = h // GROUP
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, D)
    m_ok = offs_m < T
    q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqt + offs_d[None, :], mask=m_ok[:, None], other=0.0)
    if CAST_F32:
        q = q.to(tl.float32)
    k_base = K + b * skb + hk * skh
    v_base = V + b * svb + hk * svh
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    a_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D], tl.float32)
    hi = tl.minimum((pid_m + 1) * BLOCK_M, T)
    lo = 0
    if WINDOW > 0:
        lo = tl.maximum(pid_m * BLOCK_M - WINDOW + 1, 0) // BLOCK_N * BLOCK_N
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_ok = offs_n < T
        k = tl.load(k_base + offs_n[:, None] * skt + offs_d[None, :], mask=n_ok[:, None], other=0.0)
        v = tl.load(v_base + offs_n[:, None] * svt + offs_d[None, :], mask=n_ok[:, None], other=0.0)
        if CAST_F32:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        ok = _visible(offs_m, offs_n, T, WINDOW)
        s = tl.where(ok, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(m_i - m_safe)
        p = tl.exp(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        a_i = a_i * alpha + tl.sum(p * tl.where(ok, s, 0.0), axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    l_safe = tl.where(l_i > 0, l_i, 1.0)
    lse = m_i + tl.log(l_safe)
    row = pid_bh * T + offs_m
    tl.store(LSE + row, lse, mask=m_ok)
    tl.store(MAXP + row, 1.0 / l_safe, mask=m_ok)
    tl.store(ENT + row, lse - a_i / l_safe, mask=m_ok)
    tl.store(OUT + b * sob + h * soh + offs_m[:, None] * sot + offs_d[None, :],
             (acc / l_safe[:, None]).to(OUT.dtype.element_ty), mask=m_ok[:, None])
    # attention on the first N_SINK keys, recomputed in fp32 from those keys
    offs_s = tl.arange(0, NS_PAD)
    ks = tl.load(k_base + offs_s[:, None] * skt + offs_d[None, :], mask=(offs_s < N_SINK)[:, None], other=0.0)
    s_sink = tl.sum(q.to(tl.float32)[:, None, :] * ks.to(tl.float32)[None, :, :], axis=2) * scale
    ok = _visible(offs_m, offs_s, T, WINDOW) & (offs_s < N_SINK)[None, :]
    p_sink = tl.where(ok, tl.exp(s_sink - lse[:, None]), 0.0)
    tl.store(SINK + row[:, None] * N_SINK + offs_s[None, :], p_sink,
             mask=m_ok[:, None] & (offs_s < N_SINK)[None, :])


@triton.jit
def _received_kernel(Q, K, LSE, LENS, REC, scale, T, H, GROUP,
                     sqb, sqh, sqt, skb, skh, skt,
                     WINDOW: tl.constexpr, D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     CAST_F32: tl.constexpr, PRECISION: tl.constexpr):
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    hk = h // GROUP
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D)
    n_ok = offs_n < T
    k = tl.load(K + b * skb + hk * skh + offs_n[:, None] * skt + offs_d[None, :], mask=n_ok[:, None], other=0.0)
    if CAST_F32:
        k = k.to(tl.float32)
    length = tl.load(LENS + b)
    hi = tl.minimum(T, length)
    if WINDOW > 0:
        hi = tl.minimum(hi, pid_n * BLOCK_N + BLOCK_N - 1 + WINDOW)
    lo = pid_n * BLOCK_N // BLOCK_M * BLOCK_M
    acc = tl.zeros([BLOCK_N], tl.float32)
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        m_ok = offs_m < hi
        q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqt + offs_d[None, :], mask=m_ok[:, None], other=0.0)
        if CAST_F32:
            q = q.to(tl.float32)
        lse = tl.load(LSE + pid_bh * T + offs_m, mask=m_ok, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        ok = _visible(offs_m, offs_n, T, WINDOW) & m_ok[:, None]
        acc += tl.sum(tl.where(ok, tl.exp(s - lse[:, None]), 0.0), axis=0)
    tl.store(REC + pid_bh * T + offs_n, acc, mask=n_ok)


def _next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def attention_stats_triton(
    q: Tensor, k: Tensor, v: Tensor, lengths: Tensor, scale: float, n_sink: int, window: int,
    received: bool,
) -> dict[str, Tensor]:
    """Launch both passes; shapes and meanings as in probes.model.kernels.attention_stats_reference."""
    bsz, h, t, d = q.shape
    group = h // k.shape[1]
    q, k, v = (x.contiguous() if x.stride(-1) != 1 else x for x in (q, k, v))
    cast = interpreting() or q.dtype == torch.float32
    precision = "ieee" if cast else "tf32"
    if interpreting():
        bm, bn, warps, stages = 16, 16, 1, 1
    else:
        bm, bn, warps, stages = 128, 64, 8 if d > 64 else 4, 3
    ns_pad = max(2, _next_pow2(n_sink))
    out = {name: torch.empty((bsz, h, t), device=q.device, dtype=torch.float32) for name in ("lse", "max_prob", "entropy")}
    out["sink"] = torch.empty((bsz, h, t, n_sink), device=q.device, dtype=torch.float32)
    out["output"] = torch.empty_like(q)
    common = dict(WINDOW=int(window), D=d, BLOCK_M=bm, BLOCK_N=bn, CAST_F32=cast, PRECISION=precision,
                  num_warps=warps, num_stages=stages)
    _stats_fwd_kernel[(triton.cdiv(t, bm), bsz * h)](
        q, k, v, out["output"], out["lse"], out["max_prob"], out["entropy"], out["sink"], float(scale), t, h,
        group, n_sink, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *out["output"].stride()[:3],
        NS_PAD=ns_pad, **common)
    if received:
        rec = torch.empty((bsz, h, t), device=q.device, dtype=torch.float32)
        lens = lengths.to(device=q.device, dtype=torch.int32).contiguous()
        _received_kernel[(triton.cdiv(t, bn), bsz * h)](
            q, k, out["lse"], lens, rec, float(scale), t, h, group, *q.stride()[:3], *k.stride()[:3], **common)
        out["received"] = rec
    return out
