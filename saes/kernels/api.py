"""Public SAE kernel functions: encode (ReLU / JumpReLU / TopK) and sparse decode, with backward.

Spec: docs/methods/kernels.md ("SAE encode") and docs/kernels.md. Each function takes `backend`:
"auto" (the Triton kernel for CUDA tensors, else the torch reference), "triton" (the kernel; on CPU
only under TRITON_INTERPRET=1, else KernelUnavailableError), or "torch" (saes/kernels/reference.py).
Inputs may have leading batch dimensions (x [..., d]); they are flattened to rows.

Gradients (training):
- topk_encode: values are differentiable in x, W_enc, b_enc. The Triton backward uses the sparse
  kernels: dx = sparse decode of the selected grads with W_enc^T, dW_enc^T = atomic scatter of
  grad (x) x outer products, db_enc = index_add. Indices carry no gradient.
- relu_encode / jumprelu_encode: the backward is plain torch (two dense GEMMs: a kernel would gain
  nothing over cuBLAS). JumpReLU passes no gradient to `threshold` (its straight-through estimator
  belongs to the SAE class, which knows its bandwidth); the gradient to the pre-activation is
  dcodes where the code is non-zero.
- sparse_decode: dvalues by a gather-dot kernel, dW_dec by an fp32 atomic scatter kernel
  (non-deterministic summation order), db_dec = dout.sum(0).
On the torch backend gradients come from autograd through the reference ops.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from probes.errors import InputError
from probes.model.kernels.dispatch import resolve_backend
from saes.kernels import reference as ref

FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def _check_encode(x: Tensor, W_enc: Tensor, b_enc: Tensor | None, extra: Tensor | None = None) -> None:
    if W_enc.ndim != 2 or x.shape[-1] != W_enc.shape[0]:
        raise InputError(f"x [..., d] and W_enc [d, F] do not match: x {tuple(x.shape)}, W_enc {tuple(W_enc.shape)}.")
    for name, t in (("b_enc", b_enc), ("threshold", extra)):
        if t is not None and tuple(t.shape) != (W_enc.shape[1],):
            raise InputError(f"{name} must have shape [F] = [{W_enc.shape[1]}], got {tuple(t.shape)}.")
    tensors = [t for t in (x, W_enc, b_enc, extra) if t is not None]
    if any(t.dtype not in FLOATS for t in tensors):
        raise InputError("SAE kernels take float32, float16 or bfloat16 tensors; cast the inputs first.")
    if len({t.device for t in tensors}) > 1:
        raise InputError("x, W_enc, b_enc (and threshold) must be on the same device; move them with .to(device).")


class _DenseEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, W: Tensor, b: Tensor | None, thr: Tensor | None, act: int) -> Tensor:
        from saes.kernels.encode import encode_triton

        codes = encode_triton(x, W, b, act, threshold=thr)
        assert isinstance(codes, Tensor)
        ctx.save_for_backward(x, W, codes)
        ctx.has_bias = b is not None
        return codes

    @staticmethod
    def backward(ctx: Any, dcodes: Tensor) -> tuple[Tensor | None, ...]:
        x, W, codes = ctx.saved_tensors
        dpre = torch.where(codes != 0, dcodes.float(), 0.0)
        dx = (dpre @ W.float().T).to(x.dtype)
        dW = (x.float().T @ dpre).to(W.dtype)
        db = dpre.sum(0).to(W.dtype) if ctx.has_bias else None
        return dx, dW, db, None, None


class _TopKEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, W: Tensor, b: Tensor | None, k: int, relu: bool) -> tuple[Tensor, Tensor]:
        from saes.kernels.encode import ACT_TOPK, encode_triton

        vals, idx = encode_triton(x, W, b, ACT_TOPK, k=k, relu_topk=relu)
        ctx.save_for_backward(x, W, vals, idx)
        ctx.has_bias, ctx.relu = b is not None, relu
        ctx.mark_non_differentiable(idx)
        return vals, idx

    @staticmethod
    def backward(ctx: Any, dvals: Tensor, _didx: Tensor | None) -> tuple[Tensor | None, ...]:
        from saes.kernels.decode import decode_triton, scatter_outer_triton

        x, W, vals, idx = ctx.saved_tensors
        g = dvals.float()
        if ctx.relu:
            g = torch.where(vals > 0, g, 0.0)
        dx = dW = db = None
        if ctx.needs_input_grad[0]:  # W^T made contiguous: the decode's row gathers then read contiguous memory
            dx = decode_triton(g, idx, W.t().contiguous(), None, x.dtype)
        if ctx.needs_input_grad[1]:
            dW = scatter_outer_triton(g, idx, x, W.shape[1]).T.to(W.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = torch.zeros(W.shape[1], device=g.device).index_add_(0, idx.reshape(-1), g.reshape(-1)).to(W.dtype)
        return dx, dW, db, None, None


class _SparseDecode(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, vals: Tensor, idx: Tensor, W: Tensor, b: Tensor | None) -> Tensor:
        from saes.kernels.decode import decode_triton

        ctx.save_for_backward(vals, idx, W)
        ctx.has_bias = b is not None
        return decode_triton(vals, idx, W, b, W.dtype)

    @staticmethod
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        from saes.kernels.decode import gather_dot_triton, scatter_outer_triton

        vals, idx, W = ctx.saved_tensors
        dvals = gather_dot_triton(dout, idx, W).to(vals.dtype) if ctx.needs_input_grad[0] else None
        dW = scatter_outer_triton(vals, idx, dout, W.shape[0]).to(W.dtype) if ctx.needs_input_grad[2] else None
        db = dout.float().sum(0).to(W.dtype) if ctx.has_bias and ctx.needs_input_grad[3] else None
        return dvals, None, dW, db


def relu_encode(
    x: Float[Tensor, "... d"], W_enc: Float[Tensor, "d f"], b_enc: Float[Tensor, " f"] | None = None,
    backend: str = "auto",
) -> Float[Tensor, "... f"]:
    """ReLU(x W_enc + b_enc) as dense codes in x's dtype (spec: kernels.md "SAE encode")."""
    _check_encode(x, W_enc, b_enc)
    rows = x.reshape(-1, x.shape[-1])
    if resolve_backend(backend, x.device) == "torch":
        out = ref.relu_encode_ref(rows, W_enc, b_enc)
    else:
        out = _DenseEncode.apply(rows, W_enc, b_enc, None, 0)
    return out.reshape(*x.shape[:-1], W_enc.shape[1])


def jumprelu_encode(
    x: Float[Tensor, "... d"], W_enc: Float[Tensor, "d f"], b_enc: Float[Tensor, " f"] | None,
    threshold: Float[Tensor, " f"], backend: str = "auto",
) -> Float[Tensor, "... f"]:
    """JumpReLU codes: pre if pre > threshold[f] else 0, pre = x W_enc + b_enc (spec: kernels.md)."""
    _check_encode(x, W_enc, b_enc, threshold)
    rows = x.reshape(-1, x.shape[-1])
    if resolve_backend(backend, x.device) == "torch":
        out = ref.jumprelu_encode_ref(rows, W_enc, b_enc, threshold)
    else:
        out = _DenseEncode.apply(rows, W_enc, b_enc, threshold, 1)
    return out.reshape(*x.shape[:-1], W_enc.shape[1])


def topk_encode(
    x: Float[Tensor, "... d"], W_enc: Float[Tensor, "d f"], b_enc: Float[Tensor, " f"] | None, k: int,
    relu: bool = True, backend: str = "auto",
) -> tuple[Float[Tensor, "... k"], Int[Tensor, "... k"]]:
    """The k largest pre-activations of each row as (values, int64 feature indices), never forming N x F.

    Spec: kernels.md "SAE encode". The kernel returns them sorted by value (largest first); the torch
    reference returns them unsorted, so compare indices as sets. relu=True applies ReLU to the
    values (TopK SAEs as in OpenAI's and EleutherAI's); ties may resolve to different indices.
    """
    _check_encode(x, W_enc, b_enc)
    if not 1 <= int(k) <= W_enc.shape[1]:
        raise InputError(f"k must be between 1 and F = {W_enc.shape[1]}, got {k}.")
    rows = x.reshape(-1, x.shape[-1])
    if resolve_backend(backend, x.device) == "torch":
        vals, idx = ref.topk_encode_ref(rows, W_enc, b_enc, int(k), relu=relu)
    else:
        vals, idx = _TopKEncode.apply(rows, W_enc, b_enc, int(k), relu)
    lead = x.shape[:-1]
    return vals.reshape(*lead, int(k)), idx.reshape(*lead, int(k))


def sparse_decode(
    values: Float[Tensor, "... k"], indices: Int[Tensor, "... k"], W_dec: Float[Tensor, "f d"],
    b_dec: Float[Tensor, " d"] | None = None, backend: str = "auto",
) -> Float[Tensor, "... d"]:
    """sum_j values[..., j] W_dec[indices[..., j]] + b_dec, in W_dec's dtype (spec: kernels.md).

    Out-of-range indices raise InputError (checked on the host: a bad gather can crash the kernel).
    """
    if values.shape != indices.shape or W_dec.ndim != 2:
        raise InputError(f"values and indices must have the same shape [..., k] and W_dec be [F, d]; got "
                         f"{tuple(values.shape)}, {tuple(indices.shape)}, {tuple(W_dec.shape)}.")
    if b_dec is not None and tuple(b_dec.shape) != (W_dec.shape[1],):
        raise InputError(f"b_dec must have shape [d] = [{W_dec.shape[1]}], got {tuple(b_dec.shape)}.")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= W_dec.shape[0]):
        raise InputError(f"indices must lie in 0..{W_dec.shape[0] - 1} (the rows of W_dec).")
    lead = values.shape[:-1]
    k = values.shape[-1]
    v, i = values.reshape(-1, k), indices.reshape(-1, k).long()
    if resolve_backend(backend, values.device) == "torch":
        out = ref.sparse_decode_ref(v, i, W_dec, b_dec)
    else:
        out = _SparseDecode.apply(v, i.contiguous(), W_dec, b_dec)
    return out.reshape(*lead, W_dec.shape[1])
