"""Edits of chosen heads' attention, defined once and run two ways: on the pattern or on the fused output.

Spec: docs/kernels.md ("Interventions without the pattern"); the interventions themselves are in
docs/methods/attention-sinks.md ("Hidden sinks", "First-token scaling") and docs/methods/active-dormant.md.

A `HeadEdit` names a layer, its heads and two forms of the same change:
- `on_pattern(A)`: the new [batch, heads, T, T] pattern of those heads, run as a hook on
  `blocks.{l}.attn.hook_pattern` (eager attention; the reference the tests hold the other form to);
- `on_output(parts)`: the new attention output of those heads, computed from what the fused pass keeps,
  `AttentionParts` (q, k, v, the output and each query's log-sum-exp), in O(T) memory: the probability
  of any one key is exp(scale q_i . k_j - lse_i), so an edit that moves mass between a few keys and the
  rest needs those keys alone.
HookedModel.loss_per_token(edits=...) runs the output form under the fast attention where every edited
layer can give its lse (the CPU's fused op, no sliding window), and the pattern form otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

_FAR = 1e30  # a finite stand-in for -inf in masks: no NaN where a query sees no key at all


@dataclass
class AttentionParts:
    """One layer's attention in the fused pass, restricted to the edited heads; fp32.

    q [batch, head, pos, d]; k, v [batch, head, pos, d] (the head's key-value group);
    out [batch, head, pos, d]: the unedited output; lse [batch, head, pos]."""

    q: Float[Tensor, "batch head pos d"]
    k: Float[Tensor, "batch head pos d"]
    v: Float[Tensor, "batch head pos d"]
    out: Float[Tensor, "batch head pos d"]
    lse: Float[Tensor, "batch head pos"]
    scale: float

    def probabilities(self, keys: Tensor) -> Float[Tensor, "batch head pos n_keys"]:
        """A[i, j] for the given key positions j (0 where j > i: the causal mask)."""
        s = torch.einsum("bhqd,bhkd->bhqk", self.q, self.k[:, :, keys]) * self.scale
        p = torch.exp(s - self.lse[..., None])
        rows = torch.arange(self.q.shape[2], device=self.q.device)
        return torch.where(keys.to(self.q.device)[None, :] <= rows[:, None], p, torch.zeros((), device=p.device))

    def without_keys(self, dropped: Tensor) -> tuple[Float[Tensor, "batch head pos d"], Float[Tensor, "batch head pos"]]:
        """Attention over the keys not `dropped` ([batch, head, pos] bool), renormalised: its output and its
        log-sum-exp (about -1e30 for a query that sees no such key), from one fused pass with a per-key mask."""
        mask = torch.where(dropped, torch.full_like(self.lse, -_FAR), torch.zeros_like(self.lse))[:, :, None, :]
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            self.q.contiguous(), self.k.contiguous(), self.v.contiguous(), 0.0, True, attn_mask=mask, scale=self.scale)
        return out, lse

    def received(self) -> Float[Tensor, "batch head pos"]:
        """Attention each key receives, summed over every query (the swapped fused pass)."""
        from probes.model.kernels.attention_stats_flash import received_from_lse

        lengths = torch.full((self.q.shape[0],), self.q.shape[2], dtype=torch.long)
        return received_from_lse(self.q, self.k, self.lse, lengths, self.scale)["received"]


@dataclass(frozen=True)
class HeadEdit:
    """The same change to some heads of one layer, as a pattern edit and as an output edit (module docstring)."""

    layer: int
    heads: tuple[int, ...]
    on_pattern: Callable[[Tensor], Tensor]
    on_output: Callable[[AttentionParts], Tensor]


def as_pattern_hooks(edits: Sequence[HeadEdit]) -> list[tuple[str, Callable[..., Tensor]]]:
    """run_with_hooks hooks applying each edit's pattern form to its heads' slice of the pattern."""
    hooks = []
    for edit in edits:
        index = torch.tensor(sorted(set(edit.heads)))

        def hook(pattern: Tensor, hook: Any, index: Tensor = index, change: Callable = edit.on_pattern) -> Tensor:
            out = pattern.clone()
            idx = index.to(pattern.device)
            out[:, idx] = change(pattern[:, idx])
            return out

        hooks.append((f"blocks.{edit.layer}.attn.hook_pattern", hook))
    return hooks


def edit_output(edits: Sequence[HeadEdit], query: Tensor, key: Tensor, value: Tensor, out: Tensor, lse: Tensor,
                scale: float) -> Tensor:
    """The layer's output [batch, head, pos, d] with every edit's output form applied to its heads."""
    group = query.shape[1] // key.shape[1]
    out = out.clone()
    for edit in edits:
        idx = torch.tensor(sorted(set(edit.heads)), device=query.device)
        kv = idx // group
        parts = AttentionParts(query[:, idx].float(), key[:, kv].float(), value[:, kv].float(), out[:, idx].float(),
                               lse[:, idx].float(), scale)
        out[:, idx] = edit.on_output(parts).to(out.dtype)
    return out
