"""The TopK sparse training step through the Triton kernels equals the dense step (loss, terms, every gradient).

The kernels run through Triton's interpreter on CPU (TRITON_INTERPRET=1, set in tests/conftest.py when
there is no GPU) at tiny shapes; on a GPU machine the same tests run the compiled kernels on CUDA.
"""

from __future__ import annotations

import os

import pytest
import torch

from saes import registry

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"),
    reason="needs CUDA or TRITON_INTERPRET=1 (set before triton is imported)",
)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _sae(d_sae=40, aux_k=7):
    sae = registry.build(registry.make_config("topk", d_in=12, d_sae=d_sae, k=5, aux_k=aux_k, seed=3, norm_scale=1.3))
    with torch.no_grad():
        sae.b_dec.normal_(0, 0.2, generator=torch.Generator().manual_seed(1))
        sae.b_enc.normal_(0, 0.2, generator=torch.Generator().manual_seed(2))
    return sae.to(DEVICE)


def _run(sae, fn, x, mask):
    sae.zero_grad(set_to_none=True)
    out = fn(x, dead_mask=mask)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in sae.named_parameters()}


@pytest.mark.parametrize("dead", [False, True])
def test_kernel_sparse_step_equals_dense_step(dead):
    sae = _sae()
    x = torch.randn(17, 12, generator=torch.Generator().manual_seed(4)).to(DEVICE)
    mask = (torch.arange(40) % 3 == 0).to(DEVICE) if dead else None
    dense, g_dense = _run(sae, sae.loss, x, mask)
    sparse, g_sparse = _run(sae, lambda x, dead_mask: sae.loss_sparse(x, dead_mask, backend="triton"), x, mask)
    assert sparse.feature_acts is None and sparse.codes is not None  # no batch x d_sae matrix came back
    assert float(sparse.loss.detach()) == pytest.approx(float(dense.loss.detach()), rel=1e-5)
    assert float(sparse.terms["auxk"].detach()) == pytest.approx(float(dense.terms["auxk"].detach()), rel=1e-5, abs=1e-7)
    assert (float(dense.terms["auxk"].detach()) > 0) == dead
    assert torch.allclose(sparse.x_hat, dense.x_hat, atol=1e-5)
    for name in g_dense:
        assert g_dense[name].abs().max() > 0, name  # every parameter gets a gradient, so the comparison bites
        assert torch.allclose(g_sparse[name], g_dense[name], rtol=1e-4, atol=1e-5), name
    assert sparse.l0() == dense.l0() == 5.0
    # the (values, indices) codes scatter back to the dense codes
    values, indices = sparse.codes
    rebuilt = torch.zeros(17, 40, device=DEVICE).scatter(-1, indices, values)
    assert torch.allclose(rebuilt, dense.feature_acts.detach(), atol=1e-5)


def test_kernel_step_equals_torch_sparse_step_with_every_feature_dead():
    """All features dead and aux_k above d_sae: AuxK selects among all of them (the clamp to n_dead)."""
    sae = _sae(d_sae=14, aux_k=20)
    x = torch.randn(9, 12, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    mask = torch.ones(14, dtype=torch.bool, device=DEVICE)
    ref, g_ref = _run(sae, lambda x, dead_mask: sae.loss_sparse(x, dead_mask, backend="torch"), x, mask)
    ker, g_ker = _run(sae, lambda x, dead_mask: sae.loss_sparse(x, dead_mask, backend="triton"), x, mask)
    assert float(ker.terms["auxk"].detach()) == pytest.approx(float(ref.terms["auxk"].detach()), rel=1e-5)
    assert float(ref.terms["auxk"].detach()) > 0
    for name in g_ref:
        assert torch.allclose(g_ker[name], g_ref[name], rtol=1e-4, atol=1e-5), name
