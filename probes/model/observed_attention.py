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
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from torch import Tensor, nn

NAME = "glasshouse_observed"
FAST = "sdpa"  # what runs under the observer; recorded in results as the attention mode

# observer(layer, query, key, value, scaling): scaling is the layer's softmax scale (None: 1/sqrt(d_head))
Observer = Callable[[int, Tensor, Tensor, Tensor, "float | None"], None]

_OBSERVER: ContextVar[Observer | None] = ContextVar("glasshouse_attention_observer", default=None)
_REGISTERED = threading.Lock()
_NONE = object()
_done = False


class UnsupportedAttention(Exception):
    """The attention call carries something the observer cannot see through (a positional bias, soft-capping)."""


def _observed_attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor,
                        attention_mask: Tensor | None, **kwargs: Any) -> tuple[Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    observer = _OBSERVER.get()
    if observer is not None:
        if kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None:
            raise UnsupportedAttention("a positional bias or logit soft-capping is added to the scores")
        observer(int(getattr(module, "layer_idx", -1)), query, key, value, kwargs.get("scaling"))
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
def observing(hf_model: Any, observer: Observer) -> Iterator[None]:
    """Within the block, hf_model attends through SDPA and `observer` sees every layer's q, k, v.

    The caller holds the model's lock: the implementation is a property of the model's config."""
    register()
    previous = hf_model.config._attn_implementation
    bridges = _attention_bridges(hf_model)
    hf_model.set_attn_implementation(NAME)
    # An instance `forward` may already be there (nnsight's view wraps modules that way): put it back after.
    saved = [vars(bridge).get("forward", _NONE) for bridge in bridges]
    for bridge in bridges:  # the HF module itself runs, and so reaches the attention interface
        object.__setattr__(bridge, "forward", bridge.original_component.__call__)
    token = _OBSERVER.set(observer)
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
