"""Triton SAE encoder: x W_enc + b_enc fused with ReLU, JumpReLU or TopK (spec: kernels.md, "SAE encode").

One kernel, `_encode_kernel`, with the activation as a compile-time switch:
- ACT_RELU / ACT_JUMPRELU: a tiled GEMM whose epilogue applies the activation and writes the dense
  codes [N, F]; grid (row blocks, feature tiles).
- ACT_TOPK: each program owns BLOCK_M rows and loops over all feature tiles; the N x F
  pre-activations are never written. Per tile the fp32 pre-activations are packed with their
  feature index into one sortable int64 (upper 32 bits: the float's bits mapped to an order-preserving
  signed int; lower 32 bits: the index), so `tl.topk` - which returns values only and needs k a power
  of two - yields values and indices together. The running top-KP (KP = next power of two >= k) is
  merged with each tile's top-KP by `tl.join` + `tl.topk`; tiles with no element above a row's
  running KP-th value are skipped. The first k of the sorted KP are written. Ties between equal
  values go to the larger index (torch.topk may pick either).

Accumulation is fp32. fp16/bf16 operands go to `tl.dot` natively on GPU; under the interpreter
(TRITON_INTERPRET=1) they are cast to fp32 first, because the interpreter's bf16 arithmetic is
wrong (spec: "The Triton interpreter"). fp32 operands use input_precision="ieee" (no TF32).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from probes.model.kernels.dispatch import interpreting

ACT_RELU, ACT_JUMPRELU, ACT_TOPK = 0, 1, 2


@triton.jit
def _pack(vals, cols):
    """fp32 values + int32 column indices -> int64 keys ordered like (value, index)."""
    bits = vals.to(tl.int32, bitcast=True)
    key = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return (key.to(tl.int64) << 32) | cols.to(tl.int64)


@triton.jit
def _unpack(packed):
    key = (packed >> 32).to(tl.int32)
    bits = key ^ ((key >> 31) & 0x7FFFFFFF)
    return bits.to(tl.float32, bitcast=True), packed - ((packed >> 32) << 32)


@triton.jit
def _pre_tile(x_ptr, w_ptr, b_ptr, rows, cols, N, D, F, sxn, sxd, swd, swf,
              HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_F: tl.constexpr, BLOCK_D: tl.constexpr,
              CAST_F32: tl.constexpr, PRECISION: tl.constexpr):
    """fp32 pre-activations x[rows] @ W_enc[:, cols] + b_enc[cols] for one [BLOCK_M, BLOCK_F] tile."""
    acc = tl.zeros([BLOCK_M, BLOCK_F], dtype=tl.float32)
    row_ok = rows < N
    col_ok = cols < F
    for d0 in range(0, D, BLOCK_D):
        dd = d0 + tl.arange(0, BLOCK_D)
        d_ok = dd < D
        xa = tl.load(x_ptr + rows[:, None] * sxn + dd[None, :] * sxd, mask=row_ok[:, None] & d_ok[None, :], other=0.0)
        wa = tl.load(w_ptr + dd[:, None] * swd + cols[None, :] * swf, mask=d_ok[:, None] & col_ok[None, :], other=0.0)
        if CAST_F32:
            xa = xa.to(tl.float32)
            wa = wa.to(tl.float32)
        acc = tl.dot(xa, wa, acc, input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    return acc


@triton.jit
def _encode_kernel(x_ptr, w_ptr, b_ptr, thr_ptr, out_ptr, val_ptr, idx_ptr,
                   N, D, F, K, sxn, sxd, swd, swf, son, sof, svn, sin,
                   ACT: tl.constexpr, HAS_BIAS: tl.constexpr, RELU_TOPK: tl.constexpr, KP: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_F: tl.constexpr, BLOCK_D: tl.constexpr,
                   CAST_F32: tl.constexpr, PRECISION: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_f = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    if ACT == 2:
        best = _pack(tl.full([BLOCK_M, KP], float("-inf"), tl.float32), tl.zeros([BLOCK_M, KP], tl.int32))
        for f0 in range(0, F, BLOCK_F):
            cols = f0 + tl.arange(0, BLOCK_F)
            acc = _pre_tile(x_ptr, w_ptr, b_ptr, rows, cols, N, D, F, sxn, sxd, swd, swf,
                            HAS_BIAS, BLOCK_M, BLOCK_F, BLOCK_D, CAST_F32, PRECISION)
            acc = tl.where((cols < F)[None, :], acc, float("-inf"))
            keys = _pack(acc, cols)
            floor = tl.min(best, axis=1)
            n_better = tl.sum(tl.sum((keys > floor[:, None]).to(tl.int32), axis=1), axis=0)
            if n_better > 0:
                tile_best = tl.topk(keys, KP)
                best = tl.topk(tl.reshape(tl.join(best, tile_best), [BLOCK_M, 2 * KP]), KP)
        vals, idx = _unpack(best)
        if RELU_TOPK:
            vals = tl.maximum(vals, 0.0)
        kk = tl.arange(0, KP)
        mask = row_ok[:, None] & (kk < K)[None, :]
        tl.store(val_ptr + rows[:, None] * svn + kk[None, :], vals.to(val_ptr.dtype.element_ty), mask=mask)
        tl.store(idx_ptr + rows[:, None] * sin + kk[None, :], idx, mask=mask)
    else:
        cols = pid_f * BLOCK_F + tl.arange(0, BLOCK_F)
        col_ok = cols < F
        acc = _pre_tile(x_ptr, w_ptr, b_ptr, rows, cols, N, D, F, sxn, sxd, swd, swf,
                        HAS_BIAS, BLOCK_M, BLOCK_F, BLOCK_D, CAST_F32, PRECISION)
        if ACT == 0:
            acc = tl.maximum(acc, 0.0)
        else:
            thr = tl.load(thr_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
            acc = tl.where(acc > thr[None, :], acc, 0.0)
        tl.store(out_ptr + rows[:, None] * son + cols[None, :] * sof, acc.to(out_ptr.dtype.element_ty),
                 mask=row_ok[:, None] & col_ok[None, :])


def _next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def _config(act: int, kp: int) -> dict[str, int]:
    if interpreting():
        return {"BLOCK_M": 16, "BLOCK_F": max(32, kp), "BLOCK_D": 32, "num_warps": 1, "num_stages": 1}
    if act == ACT_TOPK:
        return {"BLOCK_M": 64, "BLOCK_F": max(128, kp), "BLOCK_D": 64, "num_warps": 8, "num_stages": 3}
    return {"BLOCK_M": 128, "BLOCK_F": 128, "BLOCK_D": 64, "num_warps": 8, "num_stages": 3}


def encode_triton(
    x: Tensor, W_enc: Tensor, b_enc: Tensor | None, act: int, threshold: Tensor | None = None, k: int = 0,
    relu_topk: bool = True,
) -> Tensor | tuple[Tensor, Tensor]:
    """Launch `_encode_kernel` (checked inputs: x [N, d], W_enc [d, F], same device). See saes.kernels.api."""
    n, d = x.shape
    f = W_enc.shape[1]
    kp = _next_pow2(k) if act == ACT_TOPK else 1
    cfg = _config(act, kp)
    cast = interpreting() or x.dtype != W_enc.dtype
    precision = "ieee" if (x.dtype == torch.float32 or cast) else "tf32"
    bias = b_enc if b_enc is not None else x  # dummy pointer when HAS_BIAS is False
    common = dict(ACT=act, HAS_BIAS=b_enc is not None, RELU_TOPK=relu_topk, KP=kp, CAST_F32=cast,
                  PRECISION=precision, **cfg)
    if act == ACT_TOPK:
        vals = torch.empty((n, k), device=x.device, dtype=x.dtype)
        idx = torch.empty((n, k), device=x.device, dtype=torch.int64)
        grid = (triton.cdiv(n, cfg["BLOCK_M"]), 1)
        _encode_kernel[grid](x, W_enc, bias, x, x, vals, idx, n, d, f, k, x.stride(0), x.stride(1),
                             W_enc.stride(0), W_enc.stride(1), 0, 0, vals.stride(0), idx.stride(0), **common)
        return vals, idx
    out = torch.empty((n, f), device=x.device, dtype=x.dtype)
    thr = threshold if threshold is not None else x
    grid = (triton.cdiv(n, cfg["BLOCK_M"]), triton.cdiv(f, cfg["BLOCK_F"]))
    _encode_kernel[grid](x, W_enc, bias, thr, out, x, x, n, d, f, 0, x.stride(0), x.stride(1),
                         W_enc.stride(0), W_enc.stride(1), out.stride(0), out.stride(1), 0, 0, **common)
    return out
