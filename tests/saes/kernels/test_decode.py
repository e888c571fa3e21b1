"""Sparse decode kernel and its backward vs independent computations (Triton interpreter on CPU).

Tolerance: 1e-5 absolute in fp32 (different summation order); bf16 output one rounding (2e-2).
"""

from __future__ import annotations

import pytest
import torch

from probes.errors import InputError
from saes.kernels import sparse_decode


def _codes(n: int = 13, k: int = 3, f: int = 40, d: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    vals = torch.rand(n, k, generator=g)
    idx = torch.stack([torch.randperm(f, generator=g)[:k] for _ in range(n)])
    idx[0] = idx[1]  # two rows share features: the scatter backward must add, not overwrite
    W = torch.randn(f, d, generator=g)
    b = torch.randn(d, generator=g)
    return vals, idx, W, b


def test_sparse_decode_equals_dense_matmul():
    vals, idx, W, b = _codes()
    dense = torch.zeros(vals.shape[0], W.shape[0]).scatter_(1, idx, vals)
    out = sparse_decode(vals, idx, W, b, backend="triton")
    torch.testing.assert_close(out, dense @ W + b, atol=1e-5, rtol=0)
    torch.testing.assert_close(sparse_decode(vals, idx, W, b, backend="torch"), dense @ W + b, atol=1e-5, rtol=0)


def test_sparse_decode_bf16():
    vals, idx, W, b = _codes(seed=1)
    out = sparse_decode(vals.bfloat16(), idx, W.bfloat16(), b.bfloat16(), backend="triton")
    want = torch.zeros(13, 40).scatter_(1, idx, vals.bfloat16().float()) @ W.bfloat16().float() + b.bfloat16().float()
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), want, atol=5e-2, rtol=2e-2)


def test_sparse_decode_gradients_equal_dense_gradients():
    vals, idx, W, b = _codes(seed=2)
    up = torch.randn(13, 24, generator=torch.Generator().manual_seed(9))
    v1, W1, b1 = (t.clone().requires_grad_(True) for t in (vals, W, b))
    (sparse_decode(v1, idx, W1, b1, backend="triton") * up).sum().backward()
    v2, W2, b2 = (t.clone().requires_grad_(True) for t in (vals, W, b))
    dense = torch.zeros(13, 40).scatter(1, idx, v2)
    ((dense @ W2 + b2) * up).sum().backward()
    torch.testing.assert_close(v1.grad, v2.grad, atol=1e-5, rtol=0)
    torch.testing.assert_close(W1.grad, W2.grad, atol=1e-5, rtol=0)
    torch.testing.assert_close(b1.grad, b2.grad, atol=1e-5, rtol=0)


def test_sparse_decode_rejects_out_of_range_indices():
    vals, idx, W, b = _codes()
    idx[2, 1] = 40
    with pytest.raises(InputError, match="indices must lie"):
        sparse_decode(vals, idx, W, b, backend="triton")
