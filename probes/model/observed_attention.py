"""Forward passes with the model's fast attention and an observer on every layer's q, k and v.

Spec: docs/methods/kernels.md ("Attention statistics"); docs/kernels.md ("The statistics path").

transformers 5 sends every attention call of the supported families through
`ALL_ATTENTION_FUNCTIONS[config._attn_implementation]`, with the query [batch, head, pos, d_head] and
the key and value [batch, kv_head, pos, d_head] exactly as the softmax reads them: after q/k norms and
rotary, before the key-value heads are repeated, with the layer's own `scaling`. This module registers
one more implementation, "glasshouse_observed", that hands those tensors to the current run's observer
and then computes the output with SDPA, so no T x T pattern is ever built in Python. Its mask function is
SDPA's. TransformerLens 4's bridge replaces each HF attention module by a bridge that re-implements
attention in Python (eager, T x T); for the run, each bridge hands its call to the HF module it wraps.
The observer lives in a ContextVar (per thread); HookedModel's lock keeps runs apart, and
`observing` puts the model's previous implementation back when the run ends, however it ends.

With `lse=True`, plain causal calls on the CPU compute the output with torch's fused flash op instead, which
returns each query's log-sum-exp too; the observer then receives it (probes/model/kernels/
attention_stats_flash.py turns it into per-key sums). Other calls (a mask tensor: padding or a sliding
window; CUDA) run SDPA and hand the observer lse=None.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from torch import Tensor, nn

from probes.model.attention_edits import HeadEdit, edit_output
from probes.model.kernels.attention_stats_flash import flash_attention_with_lse, flash_takes

NAME = "glasshouse_observed"
FAST = "sdpa"  # what runs under the observer; recorded in results as the attention mode

# observer(layer, query, key, value, scaling, lse): scaling is the layer's softmax scale (None: 1/sqrt(d_head));
# lse [batch, head, pos] each query's log-sum-exp when the run asked for it and the fused op could give it, else None
Observer = Callable[[int, Tensor, Tensor, Tensor, "float | None", "Tensor | None"], None]

_OBSERVER: ContextVar[tuple[Observer | None, bool, dict[int, list[HeadEdit]]] | None] = ContextVar(
    "glasshouse_attention_observer", default=None)
_REGISTERED = threading.Lock()
_NONE = object()
_done = False


class UnsupportedAttention(Exception):
    """The attention call carries something the observer cannot see through (a positional bias, soft-capping)."""


def _observed_attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor,
                        attention_mask: Tensor | None, **kwargs: Any) -> tuple[Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    current = _OBSERVER.get()
    if current is not None:
        observer, want_lse, edits = current
        if kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None:
            raise UnsupportedAttention("a positional bias or logit soft-capping is added to the scores")
        layer, scaling = int(getattr(module, "layer_idx", -1)), kwargs.get("scaling")
        causal = kwargs.get("is_causal") if kwargs.get("is_causal") is not None else getattr(module, "is_causal", True)
        fused = causal and flash_takes(query, key, attention_mask, float(kwargs.get("dropout") or 0.0))
        if layer in edits and not fused:
            raise UnsupportedAttention(f"layer {layer} is edited but its attention call cannot give the "
                                       "log-sum-exp (a mask tensor, or not on the CPU)")
        if fused and (want_lse or layer in edits):
            out, lse = flash_attention_with_lse(query, key, value, scaling)
            if observer is not None:
                observer(layer, query, key, value, scaling, lse)
            if layer in edits:
                scale = query.shape[-1] ** -0.5 if scaling is None else float(scaling)
                out = edit_output(edits[layer], query, key, value, out, lse, scale)
            return out.transpose(1, 2).contiguous(), None
        if observer is not None:
            observer(layer, query, key, value, scaling, None)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def register() -> None:
    """Register "glasshouse_observed" with transformers' attention and mask interfaces (once per process)."""
    global _done
    with _REGISTERED:
        if _done:
            return
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(NAME, _observed_attention)
        AttentionMaskInterface.register(NAME, sdpa_mask)
        _done = True


@contextmanager
def observing(hf_model: Any, observer: Observer | None, lse: bool = False,
              edits: Sequence[HeadEdit] = ()) -> Iterator[None]:
    """Within the block, hf_model attends through SDPA and `observer` (if any) sees every layer's q, k, v
    (and, with `lse`, each query's log-sum-exp where the fused CPU op runs; see the module docstring).
    `edits` (probes.model.attention_edits) change their heads' outputs; their layers must run fused.

    The caller holds the model's lock: the implementation is a property of the model's config."""
    register()
    previous = hf_model.config._attn_implementation
    bridges = _attention_bridges(hf_model)
    hf_model.set_attn_implementation(NAME)
    # An instance `forward` may already be there (nnsight's view wraps modules that way): put it back after.
    saved = [vars(bridge).get("forward", _NONE) for bridge in bridges]
    for bridge in bridges:  # the HF module itself runs, and so reaches the attention interface
        object.__setattr__(bridge, "forward", bridge.original_component.__call__)
    by_layer: dict[int, list[HeadEdit]] = {}
    for edit in edits:
        by_layer.setdefault(edit.layer, []).append(edit)
    token = _OBSERVER.set((observer, lse, by_layer))
    try:
        yield
    finally:
        _OBSERVER.reset(token)
        for bridge, before in zip(bridges, saved, strict=True):
            if before is _NONE:
                object.__delattr__(bridge, "forward")
            else:
                object.__setattr__(bridge, "forward", before)
        hf_model.set_attn_implementation(previous)


def _attention_bridges(hf_model: nn.Module) -> list[Any]:
    """TransformerLens 4's attention bridges inside hf_model: the bridge puts them in place of the HF attention
    modules and re-implements attention eagerly in Python; each keeps the HF module as `original_component`."""
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    return [m for m in hf_model.modules() if isinstance(m, AttentionBridge) and m.original_component is not None]
