"""Torch references for the SAE kernels: same signatures as the Triton versions (spec: kernels.md).

They accumulate in fp32 (inputs of any float dtype are upcast) and return the input dtype, so the
kernels can be compared with them. Rows are processed in chunks so a TopK encode never holds more
than `chunk_rows x F` pre-activations at once.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

CHUNK_ROWS = 4096


def _pre(x: Tensor, W_enc: Tensor, b_enc: Tensor | None) -> Tensor:
    pre = x.float() @ W_enc.float()
    return pre if b_enc is None else pre + b_enc.float()


def relu_encode_ref(
    x: Float[Tensor, "n d"], W_enc: Float[Tensor, "d f"], b_enc: Float[Tensor, " f"] | None
) -> Float[Tensor, "n f"]:
    """ReLU(x W_enc + b_enc), fp32 accumulation, in x's dtype."""
    return torch.relu(_pre(x, W_enc, b_enc)).to(x.dtype)


def jumprelu_encode_ref(
    x: Float[Tensor, "n d"], W_enc: Float[Tensor, "d f"], b_enc: Float[Tensor, " f"] | None,
    threshold: Float[Tensor, " f"],
) -> Float[Tensor, "n f"]:
    """JumpReLU: pre where pre > threshold[f], else 0 (pre = x W_enc + b_enc)."""
    pre = _pre(x, W_enc, b_enc)
    return torch.where(pre > threshold.float(), pre, torch.zeros_like(pre)).to(x.dtype)


def topk_encode_ref(
    x: Float[Tensor, "n d"], W_enc: Float[Tensor, "d f"], b_enc: Float[Tensor, " f"] | None, k: int,
    relu: bool = True, chunk_rows: int = CHUNK_ROWS,
) -> tuple[Float[Tensor, "n k"], Int[Tensor, "n k"]]:
    """The k largest pre-activations per row (values, int64 indices), unsorted; ReLU on the values if relu."""
    vals, idxs = [], []
    for start in range(0, x.shape[0], chunk_rows):
        v, i = torch.topk(_pre(x[start : start + chunk_rows], W_enc, b_enc), k, dim=-1, sorted=False)
        vals.append(torch.relu(v) if relu else v)
        idxs.append(i)
    return torch.cat(vals).to(x.dtype), torch.cat(idxs)


def sparse_decode_ref(
    values: Float[Tensor, "n k"], indices: Int[Tensor, "n k"], W_dec: Float[Tensor, "f d"],
    b_dec: Float[Tensor, " d"] | None,
) -> Float[Tensor, "n d"]:
    """sum_j values[n, j] W_dec[indices[n, j]] + b_dec, through embedding_bag (fp32 accumulation)."""
    out = torch.nn.functional.embedding_bag(
        indices, W_dec.float(), per_sample_weights=values.float(), mode="sum"
    )
    if b_dec is not None:
        out = out + b_dec.float()
    return out.to(W_dec.dtype)
