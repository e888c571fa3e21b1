"""The TopK SAE's sparse path (fused encode + sparse decode) equals its dense encode/decode."""

from __future__ import annotations

import pytest
import torch

from saes.registry import build, make_config


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_topk_sparse_path_matches_dense(backend):
    torch.manual_seed(0)
    sae = build(make_config("topk", d_in=16, d_sae=64, k=4, seed=1))
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    x = torch.randn(5, 16)
    with torch.no_grad():
        dense = sae.encode(x)
        values, indices = sae.encode_sparse(x, backend=backend)
        rebuilt = torch.zeros_like(dense).scatter(-1, indices, values)
        assert torch.allclose(rebuilt, dense, atol=1e-5)
        assert torch.allclose(sae.decode_sparse(values, indices, backend=backend), sae.decode(dense), atol=1e-5)
