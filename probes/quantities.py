"""One definition per quantity read off an attention pattern (docs/methods/attention-sinks.md,
docs/methods/extreme-tokens.md). The query convention is an argument, never implicit:

- `attention_on_first(pattern)`: A[..., i, 0] for every query i (per query, nothing averaged).
- `residual_norm(resid, dtype)`: ||x||_2 over d_model, in float32 unless asked (the batch analysis: float64).
- `first_token_attention(pattern, min_query)`: mean over queries i >= min_query of A[..., i, 0].
  min_query=0 counts the first token's own query, whose causal softmax puts all its weight on key 0
  (so it adds 1/T); this is alpha_1 of the sink metric (probes.sinks.alpha_from_pattern's column 0).
  min_query=1, "non-first queries", is the extreme-token papers' and the batch analysis' default.

probes.attention_stats computes the same column means inside its kernel without the T x T pattern
(its `alpha`); probes.remote writes `first_token_attention` out inside its nnsight trace, because the
trace's source runs on a server that has torch but not this package (tests/probes/test_remote.py
checks the two agree).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from probes.errors import InputError


def residual_norm(resid: Float[Tensor, "... d_model"], dtype: torch.dtype | None = None) -> Float[Tensor, " ..."]:
    """The residual stream's L2 norm over d_model (detached), computed in `dtype` (default float32)."""
    return resid.detach().to(dtype or torch.float32).norm(dim=-1)


def attention_on_first(pattern: Float[Tensor, "... T T"]) -> Float[Tensor, "... T"]:
    """Attention of every query on key 0: pattern[..., i, 0]."""
    return pattern[..., :, 0]


def first_token_attention(pattern: Float[Tensor, "... T T"], min_query: int,
                          dtype: torch.dtype = torch.float32) -> Float[Tensor, " ..."]:
    """Mean over queries i >= min_query of A[..., i, 0], computed in `dtype` (min_query has no default:
    callers say which queries they mean, see the module docstring)."""
    if isinstance(pattern, Tensor) and not 0 <= min_query < pattern.shape[-2]:  # (nnsight proxies pass)
        raise InputError(f"min_query must be in 0..{pattern.shape[-2] - 1} (got {min_query}).")
    return mean_from_query(attention_on_first(pattern), min_query, dtype)


def mean_from_query(on_first: Float[Tensor, "... T"], min_query: int,
                    dtype: torch.dtype = torch.float32) -> Float[Tensor, " ..."]:
    """first_token_attention from A[..., i, 0] itself (e.g. attention_stats' `sink[..., 0]`, no pattern)."""
    return on_first[..., min_query:].to(dtype).mean(dim=-1)


# --- direct logit attribution with frozen norms (docs/methods/successor-heads.md, probes/successor/in_context.py);
# torch only, so the remote DLA trace (probes.remote_analyses.trace_dla) runs these same lines on the server.


def head_write(z: Float[Tensor, "... head d_head"], w_o: Float[Tensor, "head d_head d_model"]
               ) -> Float[Tensor, "... head d_model"]:
    """Each head's write z_h W_O[h] to the residual stream of one layer (no b_O)."""
    return torch.einsum("...he,hed->...hd", z, w_o)


def frozen_norm_scale(x: Float[Tensor, "b d_model"], eps: float, centered: bool) -> Float[Tensor, " b"]:
    """The scale a norm puts on its input x, to be frozen: 1 / sqrt(var(x) + eps) for a LayerNorm
    (centered), 1 / sqrt(mean(x^2) + eps) for an RMSNorm."""
    x = x.float()
    if centered:
        return 1.0 / torch.sqrt(x.var(dim=-1, unbiased=False) + eps)
    return torch.rsqrt(x.pow(2).mean(dim=-1) + eps)


def apply_frozen_norm(c: Float[Tensor, "b ... d_model"], scale: Float[Tensor, " b"], weight: Float[Tensor, " d_model"],
                      centered: bool) -> Float[Tensor, "b ... d_model"]:
    """A norm with its scale frozen (a linear map of c): w * (c - mean(c)) * scale, uncentered for an
    RMSNorm; the norm's bias is left out (it is no component's)."""
    if centered:
        c = c - c.mean(dim=-1, keepdim=True)
    return c * scale.reshape((c.shape[0],) + (1,) * (c.ndim - 1)) * weight


def dla_directions(w_u_targets: Float[Tensor, "n_targets d_model"]) -> Float[Tensor, "n_targets d_model"]:
    """Unembedding directions against the target set's mean: W_U[:, t] - mean_{t' in T} W_U[:, t'] (rows t)."""
    return w_u_targets - w_u_targets.mean(dim=0, keepdim=True)
