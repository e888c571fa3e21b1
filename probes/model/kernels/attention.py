"""`attention_stats(q, k, v, ...)`: attention statistics without the T x T pattern, kernel or reference.

Spec: docs/methods/kernels.md ("Attention statistics") and docs/kernels.md. Inputs are post-rotary
q [batch, head, pos, d_head] and k, v [batch, kv_head, pos, d_head] (grouped-query: query head h
reads group h // (head / kv_head)). Returns fp32 tensors:
- lse [batch, head, pos]: log-sum-exp of the scaled, masked scores of each query
- max_prob [batch, head, pos]: the largest attention probability of each query
- entropy [batch, head, pos]: entropy of each query's attention distribution (nats)
- sink [batch, head, pos, n_sink]: attention of each query on keys 0..n_sink-1
- received [batch, head, pos] (if received=True): attention each key receives, summed over the
  real queries (query < lengths[b]); alpha_k = received / number of real queries that see key k
- output [batch, head, pos, d_head] (q's dtype): the attention output itself
Values at padded query positions (>= lengths[b]) are computed but meaningless.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from probes.errors import InputError
from probes.model.kernels.attention_stats_reference import attention_stats_reference
from probes.model.kernels.dispatch import resolve_backend


def _check(q: Tensor, k: Tensor, v: Tensor, n_sink: int, window: int) -> None:
    if q.ndim != 4 or k.ndim != 4 or k.shape != v.shape:
        raise InputError("q must be [batch, head, pos, d_head] and k, v [batch, kv_head, pos, d_head] (same shape).")
    b, h, t, d = q.shape
    if k.shape[0] != b or k.shape[2] != t or k.shape[3] != d or h % k.shape[1]:
        raise InputError(f"q {tuple(q.shape)} and k {tuple(k.shape)} do not match: batch, pos and d_head must "
                         "agree and the query heads must be a multiple of the key/value heads.")
    if not 1 <= n_sink <= t:
        raise InputError(f"n_sink must be between 1 and the sequence length {t}, got {n_sink}.")
    if window < 0:
        raise InputError("window must be 0 (no sliding window) or a positive number of keys.")


def kernel_takes(d_head: int) -> bool:
    """Whether the Triton kernel handles this head size: a power of two of at least 16."""
    return d_head >= 16 and not d_head & (d_head - 1)


def attention_stats(
    q: Float[Tensor, "batch head pos d_head"], k: Float[Tensor, "batch kv_head pos d_head"],
    v: Float[Tensor, "batch kv_head pos d_head"], lengths: Int[Tensor, " batch"] | None = None,
    scale: float | None = None, n_sink: int = 1, window: int = 0, received: bool = True,
    backend: str = "auto", output: bool = True,
) -> dict[str, Tensor]:
    """Causal attention statistics (see the module docstring); scale defaults to 1/sqrt(d_head).
    output=False: the torch reference skips the attention output (the Triton kernel always returns it)."""
    _check(q, k, v, n_sink, window)
    b, _, t, d = q.shape
    scale = d**-0.5 if scale is None else float(scale)
    lengths = torch.full((b,), t, dtype=torch.long) if lengths is None else lengths.long()
    if resolve_backend(backend, q.device) == "torch":
        return attention_stats_reference(q, k, v, lengths, scale, n_sink, window, received, output)
    if not kernel_takes(d):
        raise InputError(f"The Triton kernel needs d_head a power of two >= 16 (got {d}); use backend='torch'.")
    from probes.model.kernels.attention_stats_kernel import attention_stats_triton

    return attention_stats_triton(q, k, v, lengths, scale, n_sink, window, received)
