"""SAE encode kernel vs the torch reference, through Triton's interpreter on CPU (tiny shapes).

Tolerances: fp32 1e-5 absolute (both accumulate in fp32, different order); fp16/bf16 one rounding
of the output dtype (values ~10: 1e-2 fp16, 0.125 bf16 - the interpreter's bf16 cast may round
differently from torch's). TopK indices are compared as sets.
"""

from __future__ import annotations

import pytest
import torch

from probes.errors import InputError
from saes.kernels import jumprelu_encode, relu_encode, topk_encode
from saes.kernels import reference as ref

TOL = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 0.13}


def _data(n: int = 19, d: int = 24, f: int = 70, dtype: torch.dtype = torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    W = torch.randn(d, f, generator=g) / d**0.5
    b = torch.randn(f, generator=g) * 0.1
    return x.to(dtype), W.to(dtype), b.to(dtype)


def _same_sets(a: torch.Tensor, b: torch.Tensor) -> bool:
    return all(set(r.tolist()) == set(s.tolist()) for r, s in zip(a, b, strict=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_topk_encode_matches_reference(dtype):
    x, W, b = _data(dtype=dtype)
    vals, idx = topk_encode(x, W, b, k=5, relu=False, backend="triton")
    rv, ri = ref.topk_encode_ref(x, W, b, 5, relu=False)
    assert vals.dtype == dtype and idx.dtype == torch.int64
    assert _same_sets(idx, ri)
    got = torch.sort(vals.float(), dim=1).values
    want = torch.sort(rv.float(), dim=1).values
    torch.testing.assert_close(got, want, atol=TOL[dtype], rtol=0)


def test_topk_encode_against_plain_loop_with_nonpow2_k_and_relu():
    """Independent check: a Python loop over rows with sorted() - no torch.topk."""
    x, W, b = _data(n=5, d=16, f=40, seed=3)
    vals, idx = topk_encode(x, W, b, k=3, relu=True, backend="triton")
    pre = x @ W + b
    for r in range(5):
        ranked = sorted(range(40), key=lambda f, r=r: -float(pre[r, f]))[:3]
        assert set(idx[r].tolist()) == set(ranked)
        for j, f in enumerate(idx[r].tolist()):
            assert abs(float(vals[r, j]) - max(float(pre[r, f]), 0.0)) < 1e-5
    assert (vals[:, :-1] >= vals[:, 1:]).all(), "the kernel returns values sorted, largest first"


def test_topk_encode_negative_values_ordering():
    """All pre-activations negative: the packed sort key must order negative floats correctly."""
    x, W, _ = _data(n=4, d=16, f=36, seed=5)
    b = torch.full((36,), -50.0)
    vals, idx = topk_encode(x, W, b, k=4, relu=False, backend="triton")
    rv, ri = ref.topk_encode_ref(x, W, b, 4, relu=False)
    assert _same_sets(idx, ri)
    torch.testing.assert_close(vals.sort(1).values, rv.sort(1).values, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_relu_and_jumprelu_encode_match_reference(dtype):
    x, W, b = _data(n=17, d=20, f=45, dtype=dtype)
    thr = (torch.rand(45, generator=torch.Generator().manual_seed(1)) * 0.5).to(dtype)
    out = relu_encode(x, W, b, backend="triton")
    torch.testing.assert_close(out.float(), ref.relu_encode_ref(x, W, b).float(), atol=TOL[dtype], rtol=0)
    out = jumprelu_encode(x, W, b, thr, backend="triton")
    want = ref.jumprelu_encode_ref(x, W, b, thr).float()
    torch.testing.assert_close(out.float(), want, atol=TOL[dtype], rtol=0)
    assert ((want == 0) | (want > thr.float())).all() and (want == 0).any() and (want > 0).any()


def test_encode_gradients_match_reference():
    x, W, b = _data(n=9, d=16, f=33)
    up = torch.randn(9, 33, generator=torch.Generator().manual_seed(2))  # a weight per (row, feature)
    grads = []
    for backend in ("triton", "torch"):
        xs, Ws, bs = (t.clone().requires_grad_(True) for t in (x, W, b))
        vals, idx = topk_encode(xs, Ws, bs, k=4, relu=True, backend=backend)
        (vals * up.gather(1, idx)).sum().backward()  # independent of the order of the k outputs
        grads.append((xs.grad, Ws.grad, bs.grad))
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    grads = []
    for backend in ("triton", "torch"):
        xs, Ws, bs = (t.clone().requires_grad_(True) for t in (x, W, b))
        (relu_encode(xs, Ws, bs, backend=backend) * torch.arange(33.0)).sum().backward()
        grads.append((xs.grad, Ws.grad, bs.grad))
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)


def test_encode_rejects_bad_input():
    x, W, b = _data()
    with pytest.raises(InputError, match="do not match"):
        topk_encode(x[:, :5], W, b, k=2, backend="torch")
    with pytest.raises(InputError, match="k must be"):
        topk_encode(x, W, b, k=0, backend="torch")
    with pytest.raises(InputError, match="threshold"):
        jumprelu_encode(x, W, b, torch.zeros(3), backend="torch")


def test_leading_dims_and_auto_backend_on_cpu():
    x, W, b = _data(n=6)
    vals, idx = topk_encode(x.reshape(2, 3, -1), W, b, k=2)
    assert vals.shape == (2, 3, 2) and idx.shape == (2, 3, 2)
    rv, ri = ref.topk_encode_ref(x, W, b, 2)
    assert _same_sets(idx.reshape(6, 2), ri)
