"""One definition per quantity read off an attention pattern (docs/methods/attention-sinks.md,
docs/methods/extreme-tokens.md). The query convention is an argument, never implicit:

- `attention_on_first(pattern)`: A[..., i, 0] for every query i (per query, nothing averaged).
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


def attention_on_first(pattern: Float[Tensor, "... T T"]) -> Float[Tensor, "... T"]:
    """Attention of every query on key 0: pattern[..., i, 0]."""
    return pattern[..., :, 0]


def first_token_attention(pattern: Float[Tensor, "... T T"], min_query: int,
                          dtype: torch.dtype = torch.float32) -> Float[Tensor, " ..."]:
    """Mean over queries i >= min_query of A[..., i, 0], computed in `dtype` (min_query has no default:
    callers say which queries they mean, see the module docstring)."""
    if isinstance(pattern, Tensor) and not 0 <= min_query < pattern.shape[-2]:  # (nnsight proxies pass)
        raise InputError(f"min_query must be in 0..{pattern.shape[-2] - 1} (got {min_query}).")
    return attention_on_first(pattern)[..., min_query:].to(dtype).mean(dim=-1)
