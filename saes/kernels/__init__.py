"""Fused SAE kernels (Triton) with torch references: encode (ReLU / JumpReLU / TopK) and sparse decode.

Spec: docs/methods/kernels.md and docs/kernels.md; usage in docs/kernels.md. Wiring into an SAE class:
`codes = relu_encode(x, W_enc, b_enc)`; `vals, idx = topk_encode(x, W_enc, b_enc, k)` then
`x_hat = sparse_decode(vals, idx, W_dec, b_dec)`. All take backend="auto" | "triton" | "torch".
"""

from saes.kernels.api import jumprelu_encode, relu_encode, sparse_decode, topk_encode

__all__ = ["jumprelu_encode", "relu_encode", "sparse_decode", "topk_encode"]
