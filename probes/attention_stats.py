"""`attention_statistics(model, tokens, ...)`: per-head attention statistics without the T x T pattern.

Spec: docs/methods/kernels.md ("Attention statistics") and docs/kernels.md; docs/methods/attention-sinks.md
for alpha_k. Hooks the post-rotary q and k and the v of each asked-for layer (TL bridge hooks
blocks.{l}.attn.hook_rot_q / hook_rot_k / hook_v), and as soon as a layer's three are seen computes
its statistics with the Triton kernel (CUDA) or the chunked torch reference (elsewhere), then drops
them; the forward pass stops after the last asked-for layer. Memory is linear in T (the reference's
query chunks are bounded in size).

Scale and sliding window come from the model (`HookedModel.attn_scale`, `attention_window`: key j
visible from query i when i - j < window, as HF masks it; Mistral and Phi-3 slide on every layer,
Gemma and Qwen on the layers of type "sliding_attention"). Attention-logit soft-capping (Gemma 2)
is refused. Where the bridge's post-rotary hooks never fire (GPT-NeoX, Phi-3, Falcon) or do not exist
(learned positions: GPT-2, OPT), q and k are read from hook_q / hook_k and rotated here with the
model's own rotary cos/sin (`qk_source`).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from probes.errors import InputError
from probes.model.architecture import apply_rotary
from probes.model.capture import as_tokens
from probes.model.hooked_model import HookedModel, Tokens
from probes.model.kernels.attention import attention_stats
from probes.model.kernels.dispatch import resolve_backend
from probes.results import result_metadata

HOOKS = {"q": "attn.hook_rot_q", "k": "attn.hook_rot_k", "v": "attn.hook_v"}
PLAIN_HOOKS = {"q": "attn.hook_q", "k": "attn.hook_k", "v": "attn.hook_v"}
_SOURCE: weakref.WeakKeyDictionary[HookedModel, str] = weakref.WeakKeyDictionary()


def qk_source(model: HookedModel) -> str:
    """Where q and k come from: "rot" (the bridge's post-rotary hooks fire), "plain" (no rotary: hook_q/hook_k
    are what the softmax reads) or "rotate" (rotary applied here to hook_q/hook_k, from the model's own cos/sin).
    Refuses models with q/k norms whose post-rotary hooks do not fire (where hook_q sits is then unknown)."""
    if model in _SOURCE:
        return _SOURCE[model]
    names = model.hook_names()
    fired: set[str] = set()
    if "blocks.0.attn.hook_rot_q" in names:
        hooks = [(f"blocks.0.{HOOKS[w]}", lambda t, hook, w=w: fired.add(w)) for w in ("q", "k")]
        with torch.no_grad():
            model.run_with_hooks(torch.zeros(1, 2, dtype=torch.long), fwd_hooks=hooks)
    if fired == {"q", "k"}:
        source = "rot"
    elif model.facts.qk_norm:
        raise InputError(f"Attention statistics do not support {model.spec} (family {model.facts.family}): its "
                         "post-rotary q/k hooks do not fire and it normalizes q and k. Use capture(model, prompts, "
                         "what=['pattern']) instead.")
    else:
        source = "plain" if model.rotary_cos_sin(1, torch.zeros(1)) is None else "rotate"
    _SOURCE[model] = source
    return source


class _StopForward(Exception):
    """Raised by the last layer's hook to skip the rest of the forward pass."""


@dataclass
class AttentionStats:
    """Statistics per (prompt, layer, head, position); fp32 on the CPU; NaN at padded positions.

    sink [batch, layer, head, query, n_sink]: attention on keys 0..n_sink-1.
    max_prob, entropy (nats), lse [batch, layer, head, query].
    received [batch, layer, head, key]: attention the key receives, summed over real queries.
    """

    tokens: Tokens
    layers: list[int]
    n_sink: int
    backend: str
    scales: list[float]
    windows: list[int]
    sink: Float[Tensor, "batch layer head pos n_sink"]
    max_prob: Float[Tensor, "batch layer head pos"]
    entropy: Float[Tensor, "batch layer head pos"]
    lse: Float[Tensor, "batch layer head pos"]
    received: Float[Tensor, "batch layer head pos"]
    metadata: dict[str, Any] = field(default_factory=dict)

    def alpha(self) -> Float[Tensor, "batch layer head pos"]:
        """Sink importance alpha_k = received_k / (number of real queries that see key k); spec attention-sinks.md."""
        lengths = self.tokens.attention_mask.sum(dim=1).float()  # [batch]
        t = self.received.shape[-1]
        keys = torch.arange(t, dtype=torch.float32)
        counts = []
        for w in self.windows:
            last = lengths[:, None] if w == 0 else torch.minimum(lengths[:, None], keys[None] + w)
            counts.append(last - keys[None])  # [batch, pos]
        seen = torch.stack(counts, dim=1)[:, :, None]  # [batch, layer, 1, pos]
        return torch.where(seen > 0, self.received / seen.clamp(min=1), torch.nan)

    def to_dict(self) -> dict[str, Any]:
        from probes.io import to_jsonable

        return {
            "metadata": self.metadata,
            "layers": self.layers,
            "n_sink": self.n_sink,
            "backend": self.backend,
            "scales": self.scales,
            "windows": self.windows,
            "str_tokens": self.tokens.str_tokens,
            "sink": to_jsonable(self.sink),
            "max_prob": to_jsonable(self.max_prob),
            "entropy": to_jsonable(self.entropy),
            "received": to_jsonable(self.received),
            "alpha": to_jsonable(self.alpha()),
        }


def layer_scale_and_window(model: HookedModel, layer: int) -> tuple[float, int]:
    """The softmax scale and sliding window (0 = none) of one layer; refuses logit soft-capping."""
    if model.facts.attn_softcap:
        raise InputError(f"{model.spec} (family {model.facts.family}) soft-caps its attention logits; attention "
                         "statistics (probes.attention_stats.attention_statistics) do not model that. Use "
                         "capture(model, prompts, what=['pattern']) instead.")
    return model.attn_scale(layer), model.attention_window(layer)


def attention_statistics(
    model: HookedModel,
    tokens: str | Sequence[str] | Tokens | Tensor,
    layers: Sequence[int] | int | None = None,
    n_sink: int = 1,
    backend: str = "auto",
    batch_size: int = 8,
    progress: bool = False,
) -> AttentionStats:
    """Attention statistics of every head of the asked-for layers (module docstring; spec kernels.md)."""
    toks = as_tokens(model, tokens, None)
    f = model.facts
    layer_ids = sorted({model.check_layer(x) for x in ([layers] if isinstance(layers, int) else layers
                                                      or range(f.n_layers))})
    n, t = toks.ids.shape
    if not 1 <= n_sink <= t:
        raise InputError(f"n_sink must be between 1 and the prompt length {t}, got {n_sink}.")
    chosen = resolve_backend(backend, model.device)
    plan = {layer: layer_scale_and_window(model, layer) for layer in layer_ids}
    shape = (n, len(layer_ids), f.n_heads, t)
    out = {name: torch.full(shape, torch.nan) for name in ("max_prob", "entropy", "lse", "received")}
    sink = torch.full((*shape, n_sink), torch.nan)
    starts = range(0, n, batch_size)
    for start in tqdm(starts, desc="attention statistics", disable=not progress):
        batch = Tokens(toks.ids[start : start + batch_size], toks.attention_mask[start : start + batch_size],
                       toks.str_tokens[start : start + batch_size], toks.prepend_bos)
        per_layer = _run_batch(model, batch, layer_ids, plan, n_sink, chosen)
        real = batch.attention_mask.bool()[:, None, :]  # [batch, 1, pos]
        for li, layer in enumerate(layer_ids):
            stats = per_layer[layer]
            rows = slice(start, start + batch.ids.shape[0])
            for name in out:
                out[name][rows, li] = torch.where(real, stats[name].float().cpu(), torch.nan)
            sink[rows, li] = torch.where(real[..., None], stats["sink"].float().cpu(), torch.nan)
    settings = {"layers": layer_ids, "n_sink": n_sink, "backend": chosen, "batch_size": batch_size}
    return AttentionStats(
        tokens=toks, layers=layer_ids, n_sink=n_sink, backend=chosen,
        scales=[plan[x][0] for x in layer_ids], windows=[plan[x][1] for x in layer_ids],
        sink=sink, max_prob=out["max_prob"], entropy=out["entropy"], lse=out["lse"], received=out["received"],
        metadata=result_metadata(model, settings),
    )


def _run_batch(
    model: HookedModel, batch: Tokens, layers: list[int], plan: dict[int, tuple[float, int]], n_sink: int,
    backend: str,
) -> dict[int, dict[str, Tensor]]:
    """One forward pass with hooks that compute each layer's statistics from its q, k, v."""
    seen: dict[int, dict[str, Tensor]] = {layer: {} for layer in layers}
    results: dict[int, dict[str, Tensor]] = {}
    lengths = batch.attention_mask.sum(dim=1)
    last = max(layers)

    source = qk_source(model)
    rope = None
    if source == "rotate":
        cs = model.rotary_cos_sin(batch.ids.shape[1], torch.zeros(1, device=model.device, dtype=model.dtype))
        rope = None if cs is None else (cs[0][None, :, None, :], cs[1][None, :, None, :])

    def make_hook(layer: int, which: str) -> Any:
        def hook(tensor: Tensor, hook: Any) -> Tensor:
            x = tensor.detach()
            if rope is not None and which in ("q", "k"):
                x = apply_rotary(x, rope[0].to(x.dtype), rope[1].to(x.dtype))
            seen[layer][which] = x
            if len(seen[layer]) == 3:
                q, k, v = (seen[layer].pop(x).transpose(1, 2) for x in ("q", "k", "v"))  # [b, head, pos, d]
                scale, window = plan[layer]
                results[layer] = attention_stats(q, k, v, lengths, scale=scale, n_sink=n_sink, window=window,
                                                 backend=backend)
                if layer == last:
                    raise _StopForward
            return tensor

        return hook

    names = HOOKS if source == "rot" else PLAIN_HOOKS
    hooks = [(f"blocks.{layer}.{names[w]}", make_hook(layer, w)) for layer in layers for w in names]
    missing = [name for name, _ in hooks if name not in model.hook_names()]
    if missing:
        raise InputError(f"The bridge for {model.spec} (family {model.facts.family}) offers no hook {missing[0]}; "
                         "attention statistics need the post-rotary q and k and the v of each layer.")
    try:
        with torch.no_grad():
            model.run_with_hooks(batch, fwd_hooks=hooks)
    except _StopForward:
        pass
    if set(results) != set(layers):
        raise InputError(f"Attention statistics do not support {model.spec} (family {model.facts.family}): the "
                         f"bridge never fired the q, k and v hooks of layers {sorted(set(layers) - set(results))}. "
                         "Use capture(model, prompts, what=['pattern']) instead.")
    return results
