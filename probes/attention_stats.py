"""`attention_statistics(model, tokens, ...)`: per-head attention statistics without the T x T pattern.

Spec: docs/methods/kernels.md ("Attention statistics") and docs/kernels.md; docs/methods/attention-sinks.md
for alpha_k. One forward pass per batch runs the model's fast attention (SDPA) through
`HookedModel.run_observing_attention`, which hands over each layer's q, k and v exactly as the softmax
reads them (after q/k norms and rotary, with the layer's own scale); as soon as a layer's are seen its
statistics are computed with the Triton kernel (CUDA) or the chunked torch reference (elsewhere) and
dropped, and the pass stops after the last asked-for layer. No T x T pattern is built: memory is linear
in T (the reference's query chunks are bounded in size). The attention mode that ran is recorded in the
result's metadata ("attention": "sdpa").

Sliding windows come from the model (`HookedModel.attention_window`: key j visible from query i when
i - j < window, as HF masks it; Mistral and Phi-3 slide on every layer, Gemma and Qwen on the layers of
type "sliding_attention"). Attention-logit soft-capping (Gemma 2) is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from probes.errors import InputError
from probes.model.capture import as_tokens
from probes.model.hooked_model import HookedModel, Tokens
from probes.model.kernels.attention import attention_stats, kernel_takes
from probes.model.kernels.attention_stats_flash import received_from_lse
from probes.model.kernels.attention_stats_reference import SUMMARIES, received_attention
from probes.model.kernels.dispatch import resolve_backend
from probes.progress import Reporter, as_reporter
from probes.results import result_metadata


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
        return alpha_from_received(self.received, self.tokens.attention_mask.sum(dim=1), self.windows)

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


def alpha_from_received(received: Float[Tensor, "batch layer head pos"], lengths: Tensor,
                        windows: Sequence[int]) -> Float[Tensor, "batch layer head pos"]:
    """alpha_k = received_k / (number of real queries that see key k), NaN where none does (attention-sinks.md)."""
    lengths = lengths.float().cpu()
    keys = torch.arange(received.shape[-1], dtype=torch.float32)
    counts = []
    for w in windows:
        last = lengths[:, None] if w == 0 else torch.minimum(lengths[:, None], keys[None] + w)
        counts.append(last - keys[None])  # [batch, pos]
    seen = torch.stack(counts, dim=1)[:, :, None]  # [batch, layer, 1, pos]
    return torch.where(seen > 0, received / seen.clamp(min=1), torch.nan)


def received_for_batch(model: HookedModel, ids: Tensor, backend: str = "auto"
                       ) -> tuple[Float[Tensor, "batch layer head pos"], list[int]]:
    """Attention each key receives (summed over queries) in every layer, and the layers' windows: one forward
    with the model's fast attention, no pattern, no other statistic (the sink report's path)."""
    per_layer, windows = summaries_for_batch(model, ids, entropies=False, backend=backend)
    return per_layer["received"], windows


def summaries_for_batch(model: HookedModel, ids: Tensor, entropies: bool, backend: str = "auto"
                        ) -> tuple[dict[str, Float[Tensor, "batch layer head pos"]], list[int]]:
    """received_summaries of every layer, stacked over layers ([batch, layer, head, pos] each), from one
    forward with the model's fast attention (SDPA, no pattern), and the layers' windows."""
    f = model.facts
    plan = {layer: layer_scale_and_window(model, layer) for layer in range(f.n_layers)}
    ids = ids if ids.ndim == 2 else ids[None]
    lengths = torch.full((ids.shape[0],), ids.shape[1], dtype=torch.long)
    names = SUMMARIES if entropies else SUMMARIES[:1]
    out = {name: torch.empty(ids.shape[0], f.n_layers, f.n_heads, ids.shape[1]) for name in names}

    def observe(layer: int, q: Tensor, k: Tensor, v: Tensor, scaling: float | None, lse: Tensor | None) -> None:
        scale, window = plan[layer]
        got = received_summaries(q, k, v, lengths, scale if scaling is None else scaling, window, entropies, backend,
                                 lse)
        for name in names:
            out[name][:, layer] = got[name].cpu()

    model.run_observing_attention(ids, observe, last_layer=f.n_layers - 1, lse=True)
    return out, [plan[layer][1] for layer in range(f.n_layers)]


FUSED_FROM = 256  # below this many positions the chunked form is as fast as the fused passes and their copies


def received_summaries(q: Tensor, k: Tensor, v: Tensor, lengths: Tensor, scale: float, window: int,
                       entropies: bool, backend: str = "auto", lse: Tensor | None = None) -> dict[str, Tensor]:
    """Per-key sums and per-query figures of one layer (received_attention's keys). Given the model pass's
    log-sum-exp (the fused CPU op's, no window) and at least FUSED_FROM positions, they come from fused flash
    passes (attention_stats_flash).
    Otherwise `received` alone goes through the Triton kernel where the backend resolves to it (CUDA; d_head a
    power of two >= 16), and the chunked torch form, which runs on any device, computes the rest."""
    if lse is not None and window == 0 and q.shape[2] >= FUSED_FROM and resolve_backend(backend, q.device) == "torch":
        return received_from_lse(q, k, lse, lengths, scale, entropies)
    if not entropies and resolve_backend(backend, q.device) == "triton" and kernel_takes(q.shape[-1]):
        return {"received": attention_stats(q, k, v, lengths.to(q.device), scale=scale, n_sink=1, window=window,
                                            backend="triton")["received"]}
    return received_attention(q, k, lengths, scale, window, entropies)


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
    outputs: bool = True,
    reporter: Reporter | None = None,
) -> AttentionStats:
    """Attention statistics of every head of the asked-for layers (module docstring; spec kernels.md).
    outputs=False lets the torch reference skip the attention output it would otherwise recompute (SDPA
    already computes the model's). reporter (probes.progress): per batch, with a cancel check before each;
    `progress` without one shows a terminal bar."""
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
    mode = "sdpa"
    rep = as_reporter(reporter, progress, "attention statistics")
    for done, start in enumerate(starts, start=1):
        rep.check()
        batch = Tokens(toks.ids[start : start + batch_size], toks.attention_mask[start : start + batch_size],
                       toks.str_tokens[start : start + batch_size], toks.prepend_bos)
        per_layer, mode = _run_batch(model, batch, layer_ids, plan, n_sink, chosen, outputs)
        real = batch.attention_mask.bool()[:, None, :]  # [batch, 1, pos]
        for li, layer in enumerate(layer_ids):
            stats = per_layer[layer]
            rows = slice(start, start + batch.ids.shape[0])
            for name in out:
                out[name][rows, li] = torch.where(real, stats[name].float().cpu(), torch.nan)
            sink[rows, li] = torch.where(real[..., None], stats["sink"].float().cpu(), torch.nan)
        rep.update(f"attention statistics: batch {done} of {len(starts)}", done, len(starts))
    settings = {"layers": layer_ids, "n_sink": n_sink, "backend": chosen, "batch_size": batch_size, "attention": mode}
    return AttentionStats(
        tokens=toks, layers=layer_ids, n_sink=n_sink, backend=chosen,
        scales=[plan[x][0] for x in layer_ids], windows=[plan[x][1] for x in layer_ids],
        sink=sink, max_prob=out["max_prob"], entropy=out["entropy"], lse=out["lse"], received=out["received"],
        metadata=result_metadata(model, settings),
    )


def _run_batch(
    model: HookedModel, batch: Tokens, layers: list[int], plan: dict[int, tuple[float, int]], n_sink: int,
    backend: str, outputs: bool = True,
) -> tuple[dict[int, dict[str, Tensor]], str]:
    """One forward pass with the model's fast attention; each asked-for layer's statistics are computed from
    its q, k, v as the softmax reads them, then dropped. Returns them and the attention mode that ran."""
    results: dict[int, dict[str, Tensor]] = {}
    lengths = batch.attention_mask.sum(dim=1)
    wanted = set(layers)

    def observe(layer: int, q: Tensor, k: Tensor, v: Tensor, scaling: float | None, lse: Tensor | None) -> None:
        if layer not in wanted:
            return
        scale, window = plan[layer]
        results[layer] = attention_stats(q, k, v, lengths.to(q.device), scale=scale if scaling is None else scaling,
                                         n_sink=n_sink, window=window, backend=backend, output=outputs)

    mode = model.run_observing_attention(batch, observe, last_layer=max(layers))
    if set(results) != wanted:
        raise InputError(f"Attention statistics do not support {model.spec} (family {model.facts.family}): its "
                         f"layers {sorted(wanted - set(results))} never called the attention interface. "
                         "Use capture(model, prompts, what=['pattern']) instead.")
    return results, mode
