"""Triton sparse decode and its backward (spec: kernels.md, "SAE encode", the decoder side).

- `_decode_kernel`: out[n] = sum_j values[n, j] W[indices[n, j]] + b, a gather of k rows per token
  (2 N k d FLOPs instead of the dense 2 N F d). Grid (row blocks, d blocks), fp32 accumulation.
- `_gather_dot_kernel`: dvalues[n, j] = dout[n] . W[indices[n, j]] (the backward to the values).
- `_scatter_outer_kernel`: dW[indices[n, j]] += values[n, j] * dout[n] with fp32 atomic adds into an
  fp32 buffer (the backward to W; also gives the TopK encoder's dW_enc^T). The summation order of
  the atomics varies from run to run, so this gradient is not bit-for-bit deterministic.
The TopK encoder's dx is this decode with W = W_enc^T. Under the interpreter every operand is
cast to fp32 (bf16 arithmetic is wrong there; bf16 atomic_add fails there).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from probes.model.kernels.dispatch import interpreting


@triton.jit
def _decode_kernel(val_ptr, idx_ptr, w_ptr, b_ptr, out_ptr, N, D, K, svn, sin, swf, swd, son,
                   HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    dd = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    row_ok = rows < N
    d_ok = dd < D
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for j in range(0, K):
        v = tl.load(val_ptr + rows * svn + j, mask=row_ok, other=0.0).to(tl.float32)
        i = tl.load(idx_ptr + rows * sin + j, mask=row_ok, other=0)
        w = tl.load(w_ptr + i[:, None] * swf + dd[None, :] * swd, mask=row_ok[:, None] & d_ok[None, :], other=0.0)
        acc += v[:, None] * w.to(tl.float32)
    if HAS_BIAS:
        acc += tl.load(b_ptr + dd, mask=d_ok, other=0.0).to(tl.float32)[None, :]
    tl.store(out_ptr + rows[:, None] * son + dd[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=row_ok[:, None] & d_ok[None, :])


@triton.jit
def _gather_dot_kernel(g_ptr, idx_ptr, w_ptr, out_ptr, N, D, K, sgn, sin, swf, swd, son,
                       BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    for j in range(0, K):
        i = tl.load(idx_ptr + rows * sin + j, mask=row_ok, other=0)
        acc = tl.zeros([BLOCK_M], dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            dd = d0 + tl.arange(0, BLOCK_D)
            m = row_ok[:, None] & (dd < D)[None, :]
            g = tl.load(g_ptr + rows[:, None] * sgn + dd[None, :], mask=m, other=0.0).to(tl.float32)
            w = tl.load(w_ptr + i[:, None] * swf + dd[None, :] * swd, mask=m, other=0.0).to(tl.float32)
            acc += tl.sum(g * w, axis=1)
        tl.store(out_ptr + rows * son + j, acc, mask=row_ok)


@triton.jit
def _scatter_outer_kernel(val_ptr, idx_ptr, g_ptr, dw_ptr, N, D, K, svn, sin, sgn,
                          BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    dd = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    row_ok = rows < N
    m = row_ok[:, None] & (dd < D)[None, :]
    g = tl.load(g_ptr + rows[:, None] * sgn + dd[None, :], mask=m, other=0.0).to(tl.float32)
    for j in range(0, K):
        v = tl.load(val_ptr + rows * svn + j, mask=row_ok, other=0.0).to(tl.float32)
        i = tl.load(idx_ptr + rows * sin + j, mask=row_ok, other=0)
        tl.atomic_add(dw_ptr + i[:, None] * D + dd[None, :], v[:, None] * g, mask=m)


def _blocks() -> tuple[int, int, int]:
    """BLOCK_M, BLOCK_D, num_warps."""
    return (16, 32, 1) if interpreting() else (64, 128, 4)


def _f32_if_interpreting(*ts: Tensor) -> list[Tensor]:
    return [t.float() if interpreting() else t for t in ts]


def decode_triton(values: Tensor, indices: Tensor, W: Tensor, b: Tensor | None, out_dtype: torch.dtype) -> Tensor:
    """values/indices [N, k], W [F, d] (any strides), b [d] or None -> [N, d] in out_dtype."""
    values, W = _f32_if_interpreting(values, W)
    if b is not None:
        (b,) = _f32_if_interpreting(b)
    n, k = values.shape
    d = W.shape[1]
    bm, bd, warps = _blocks()
    out = torch.empty((n, d), device=values.device, dtype=torch.float32 if interpreting() else out_dtype)
    grid = (triton.cdiv(n, bm), triton.cdiv(d, bd))
    _decode_kernel[grid](values, indices, W, b if b is not None else values, out, n, d, k,
                         values.stride(0), indices.stride(0), W.stride(0), W.stride(1), out.stride(0),
                         HAS_BIAS=b is not None, BLOCK_M=bm, BLOCK_D=bd, num_warps=warps)
    return out.to(out_dtype)


def gather_dot_triton(grad: Tensor, indices: Tensor, W: Tensor) -> Tensor:
    """[N, d] grad, [N, k] indices, W [F, d] -> fp32 [N, k] with grad[n] . W[indices[n, j]]."""
    grad, W = _f32_if_interpreting(grad.contiguous(), W)
    n, k = indices.shape
    d = W.shape[1]
    bm, bd, warps = _blocks()
    out = torch.empty((n, k), device=grad.device, dtype=torch.float32)
    _gather_dot_kernel[(triton.cdiv(n, bm),)](grad, indices, W, out, n, d, k, grad.stride(0), indices.stride(0),
                                               W.stride(0), W.stride(1), out.stride(0),
                                               BLOCK_M=bm, BLOCK_D=bd, num_warps=warps)
    return out


def scatter_outer_triton(values: Tensor, indices: Tensor, grad: Tensor, n_rows: int) -> Tensor:
    """fp32 [n_rows, d] with row f = sum over (n, j) where indices[n, j] = f of values[n, j] * grad[n]."""
    values, grad = _f32_if_interpreting(values.contiguous(), grad.contiguous())
    n, k = indices.shape
    d = grad.shape[1]
    bm, bd, warps = _blocks()
    dw = torch.zeros((n_rows, d), device=grad.device, dtype=torch.float32)
    grid = (triton.cdiv(n, bm), triton.cdiv(d, bd))
    _scatter_outer_kernel[grid](values, indices, grad, dw, n, d, k, values.stride(0), indices.stride(0),
                                grad.stride(0), BLOCK_M=bm, BLOCK_D=bd, num_warps=warps)
    return dw
