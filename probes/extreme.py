"""Extreme-token phenomena (Guo et al. 2024): attention sink, value-state drain, residual-state peak.

Spec: docs/methods/extreme-tokens.md ("Per-token measurements on any model"). The sink is the
first position (0-based index 0). Per batch, every quantity is reduced inside hooks, layer by layer:
- sink attention[l,h]   = mean over non-sink queries i >= 1 of A[l,h,i,0]
- value norm[l,h,k]     = || v_k W_O^h ||  (the head's value vector through its slice of W_O;
                          grouped-query value heads expanded; no bias; before Gemma's post-attention norm)
- residual norm[l,k]    = || resid_post[l,k] ||  (L2 over d_model)
- logit gap[l,h,i]      = s[i,0] - mean_{1<=j<i} s[i,j] for queries i >= 2, where s are the
                          pre-softmax attention logits (`hook_attn_scores`, scaled as the softmax reads
                          them); NaN for i < 2 where the mean is over no keys. In a sliding-window layer
                          (`HookedModel.key_visible`) the mean runs over the keys the query sees, and the gap
                          is NaN once the sink has left the window (i >= window): masked keys never enter.
                          For OPT, whose bridge gives no logits (`HookedModel.attn_scores_are_pattern`), log A[i, j] is
                          used: the same gap, since the log-normalizer cancels (A clamped at 1e-38).
Two ways (`attention=`), equal within 1e-4 on every family of the conformance suite: "fast" (the default)
runs the model's fast attention and measures from each layer's q, k, v and the layers' outputs, with no
T x T pattern (measure_batch_fast; the gap as scale q_i . (k_0 - mean_j k_j)); "patterns" reduces eager
patterns and scores in hooks (measure_batch).
Ablations zero one layer's MLP output (`hook_mlp_out`) or attention output (`hook_attn_out`) and
measure the residual norms again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from probes.errors import InputError
from probes.model.hooked_model import HookedModel
from probes.progress import NullReporter, Reporter, batches
from probes.quantities import first_token_attention, residual_norm
from probes.results import result_metadata
from probes.sinks import check_ids

if TYPE_CHECKING:
    from probes.model.model_like import ModelLike

COMPONENTS = ("mlp", "attn")


def sink_attention(pattern: Float[Tensor, "... T T"]) -> Float[Tensor, " ..."]:
    """Mean over non-sink queries i >= 1 of A[i, 0] (probes.quantities.first_token_attention, min_query=1)."""
    return first_token_attention(pattern, min_query=1)


def logit_gap(scores: Float[Tensor, "... T T"], include_self: bool = False,
              visible: Tensor | None = None) -> Float[Tensor, "... T"]:
    """s[i,0] - mean_{1<=j<i} s[i,j] per query i (NaN for i < 2); self-key and sink excluded.
    With include_self the mean runs over 1 <= j <= i (NaN only for i = 0). visible [query, key]
    (a sliding window, `HookedModel.key_visible`) keeps hidden keys out of the mean and gives NaN
    where the query no longer sees the sink."""
    T = scores.shape[-1]
    s = scores.float()
    j = torch.arange(T, device=s.device)
    between = (j[None, :] >= 1) & (j[None, :] < j[:, None] + int(include_self))  # [query, key]
    sees_sink = torch.ones(T, dtype=torch.bool, device=s.device)
    if visible is not None:
        visible = visible.to(s.device)
        between, sees_sink = between & visible, visible[:, 0]
    count = between.sum(-1).float()
    mean_other = torch.where(between, s, torch.zeros((), device=s.device)).sum(-1) / count.clamp_min(1)
    gap = s[..., :, 0] - mean_other
    return torch.where((count > 0) & sees_sink, gap, torch.full_like(gap, float("nan")))


def value_norms(model: HookedModel, layer: int, v: Float[Tensor, "b T kv d_head"]) -> Float[Tensor, "b head T"]:
    """|| v_k W_O^h || for every head of one layer (value heads expanded to query heads)."""
    f = model.facts
    if v.shape[2] != f.n_heads:
        v = v.repeat_interleave(f.n_heads // v.shape[2], dim=2)
    w_o = model.W_O[layer].to(v.device, torch.float32)  # [head, d_head, d_model]
    out = torch.einsum("bkhd,hdm->bhkm", v.float(), w_o)
    return out.norm(dim=-1)


@dataclass
class ExtremeResult:
    """Per-token extreme-token measurements on a batch of sequences."""

    sink_attention: Float[Tensor, "n layer head"]
    value_norm: Float[Tensor, "n layer head T"]
    resid_norm: Float[Tensor, "n layer T"]
    logit_gap: Float[Tensor, "n layer head T"]
    str_tokens: list[list[str]]
    metadata: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """Sink (position 0) against the rest: residual norm per layer, value norms, logit gap."""
        return extreme_summary(self.sink_attention, self.value_norm, self.resid_norm, self.logit_gap)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "extreme_result", **self.metadata, **self.summary(), "resid_norm": self.resid_norm,
                "resid_norm_mean": self.resid_norm.mean(0), "value_norm_mean": self.value_norm.mean(0),
                "str_tokens": self.str_tokens}


def extreme_summary(sink: Float[Tensor, "n layer head"], value: Float[Tensor, "n layer head T"],
                    resid: Float[Tensor, "n layer T"], gap: Float[Tensor, "n layer head T"]) -> dict[str, Any]:
    """The sink (position 0) against the rest, averaged over the sequences: residual norm per layer (mean and
    max of the rest), the peak layer, value norms and attention on the sink per head, the mean logit gap."""
    rest = resid[..., 1:]
    return {
        "resid_sink": resid[..., 0].mean(0),
        "resid_rest_mean": rest.mean(dim=(0, 2)),
        "resid_rest_max": rest.amax(dim=2).mean(0),
        "peak_layer": int(resid[..., 0].mean(0).argmax()),
        "value_sink": value[..., 0].mean(0),
        "value_rest": value[..., 1:].mean(dim=(0, 3)),
        "sink_attention": sink.mean(0),
        "logit_gap": torch.nanmean(gap, dim=(0, 3)),
    }


def measure_batch(model: HookedModel, ids: Int[Tensor, "b T"], fwd_hooks: list[Any] | None = None
                  ) -> dict[str, Tensor]:
    """All four measurements on one batch, reduced in hooks; extra `fwd_hooks` (ablations) run too."""
    got: dict[str, dict[int, Tensor]] = {"sink": {}, "value": {}, "resid": {}, "gap": {}}

    def layer_of(hook: Any) -> int:
        return int(hook.name.split(".")[1])

    def on_pattern(p: Tensor, hook: Any) -> None:
        got["sink"][layer_of(hook)] = sink_attention(p.detach()).cpu()

    def on_v(v: Tensor, hook: Any) -> None:
        got["value"][layer_of(hook)] = value_norms(model, layer_of(hook), v.detach()).cpu()

    def on_resid(x: Tensor, hook: Any) -> None:
        got["resid"][layer_of(hook)] = residual_norm(x).cpu()

    def visible(hook: Any, n: int) -> Tensor:
        return model.key_visible(layer_of(hook), n)

    def on_scores(s: Tensor, hook: Any) -> None:
        got["gap"][layer_of(hook)] = logit_gap(s.detach(), visible=visible(hook, s.shape[-1])).cpu()

    def on_pattern_as_scores(p: Tensor, hook: Any) -> None:
        on_pattern(p, hook)
        log_p = p.detach().float().clamp_min(1e-38).log()
        got["gap"][layer_of(hook)] = logit_gap(log_p, visible=visible(hook, p.shape[-1])).cpu()

    hooks = list(fwd_hooks or [])
    no_scores = model.attn_scores_are_pattern
    for layer in range(model.facts.n_layers):
        hooks += [(f"blocks.{layer}.attn.hook_v", on_v), (f"blocks.{layer}.hook_resid_post", on_resid)]
        if no_scores:  # the gap of log-probabilities equals the gap of logits (the log-normalizer cancels)
            hooks.append((f"blocks.{layer}.attn.hook_pattern", on_pattern_as_scores))
        else:
            hooks += [(f"blocks.{layer}.attn.hook_pattern", on_pattern),
                      (f"blocks.{layer}.attn.hook_attn_scores", on_scores)]
    with torch.no_grad():
        model.run_with_hooks(ids, fwd_hooks=hooks)
    layers = range(model.facts.n_layers)
    return {key: torch.stack([got[key][layer] for layer in layers], dim=1) for key in got}


def logit_gap_from_qk(q: Float[Tensor, "b head T d"], k: Float[Tensor, "b kv T d"], scale: float,
                      window: int = 0) -> Float[Tensor, "b head T"]:
    """logit_gap without the scores: s[i,0] - mean_j s[i,j] = scale q_i . (k_0 - mean_j k_j), the mean over the
    keys 1 <= j < i the query sees, from a running sum of the keys (float64); NaN where logit_gap has NaN."""
    b, h, t, _ = q.shape
    group = h // k.shape[1]
    kd = k.double()
    total = torch.cumsum(kd, dim=2)  # total[:, :, j] = k_0 + ... + k_j
    i = torch.arange(t, device=q.device)
    first = torch.ones_like(i) if not window else torch.clamp(i - window + 1, min=1)  # first key in the mean
    count = (i - first).clamp(min=0)  # keys first .. i-1
    last_sum = total[:, :, (i - 1).clamp(min=0)]
    before = torch.where((first - 1 >= 0)[:, None], total[:, :, (first - 1).clamp(min=0)], torch.zeros((), dtype=kd.dtype))
    mean = (last_sum - before) / count.clamp(min=1)[:, None].double()  # [b, kv, T, d]
    direction = (kd[:, :, :1] - mean).repeat_interleave(group, dim=1)
    gap = scale * (q.double() * direction).sum(-1)
    valid = (count > 0) & ((i < window) if window else torch.ones_like(i, dtype=torch.bool))
    return torch.where(valid, gap, torch.full_like(gap, float("nan"))).float()


def measure_batch_fast(model: HookedModel, ids: Int[Tensor, "b T"]) -> dict[str, Tensor]:
    """measure_batch's four measurements from one forward with the model's fast attention: A[i, 0] from each
    query's lse (the fused CPU op) or the chunked torch form (sliding windows, CUDA), the logit gap from q and k
    (logit_gap_from_qk), value norms from v as the softmax reads it, residual norms from the layers' outputs."""
    from probes.attention_stats import layer_scale_and_window
    from probes.model.kernels.attention_stats_flash import first_key_attention
    from probes.model.kernels.attention_stats_reference import received_attention

    f = model.facts
    plan = {layer: layer_scale_and_window(model, layer) for layer in range(f.n_layers)}
    lengths = torch.full((ids.shape[0],), ids.shape[1], dtype=torch.long)
    got: dict[str, dict[int, Tensor]] = {"sink": {}, "value": {}, "resid": {}, "gap": {}}

    def observe(layer: int, q: Tensor, k: Tensor, v: Tensor, scaling: float | None, lse: Tensor | None) -> None:
        scale, window = plan[layer]
        scale = scale if scaling is None else float(scaling)
        if lse is not None and not window:
            first = first_key_attention(q, k, lse, scale)
        else:
            first = received_attention(q, k, lengths, scale, window, entropies=True)["first"]
        got["sink"][layer] = first[..., 1:].mean(-1).cpu()
        got["value"][layer] = value_norms(model, layer, v.transpose(1, 2)).cpu()
        got["gap"][layer] = logit_gap_from_qk(q, k, scale, window).cpu()

    def on_resid(layer: int, x: Tensor) -> None:
        got["resid"][layer] = residual_norm(x).cpu()

    model.run_observing_attention(ids, observe, lse=True, residual=on_resid)
    layers = range(f.n_layers)
    return {key: torch.stack([got[key][layer] for layer in layers], dim=1) for key in got}


def extreme_tokens(model: ModelLike, ids: Int[Tensor, "n T"], batch_size: int = 8,
                   reporter: Reporter | None = None, attention: str = "fast") -> ExtremeResult:
    """Sink attention, value norms, residual norms and logit gaps for sequences of equal length, measured
    where the model runs (ModelLike.extreme_statistics: measure_batch_fast or measure_batch's hooks here,
    inside the trace remotely). attention: "fast" (no pattern) or "patterns" (eager, in hooks).
    reporter (probes.progress): per batch."""
    run = model.attention_run(attention)
    ids = check_ids(model, ids)  # type: ignore[arg-type]
    parts = batches(ids, batch_size, lambda b: model.extreme_statistics(b, attention), reporter, "extreme tokens")
    cat = {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
    settings = {"n": int(ids.shape[0]), "T": int(ids.shape[1]), "attention": run}
    return ExtremeResult(cat["sink"], cat["value"], cat["resid"], cat["gap"],
                         model.tokens_from_ids(ids).str_tokens, result_metadata(model, settings))


def zero_hooks(model: HookedModel, component: str, layers: Sequence[int]) -> list[tuple[str, Any]]:
    """Hooks that replace the MLP ("mlp") or attention ("attn") output of the given layers by zeros."""
    if component not in COMPONENTS:
        raise InputError(f"Unknown component '{component}'. Choose 'mlp' or 'attn'.")
    name = "hook_mlp_out" if component == "mlp" else "hook_attn_out"

    def zero(x: Tensor, hook: Any) -> Tensor:
        return torch.zeros_like(x)

    return [(f"blocks.{model.check_layer(layer)}.{name}", zero) for layer in layers]


def resid_norms(model: HookedModel, ids: Int[Tensor, "n T"], fwd_hooks: list[Any] | None = None,
                batch_size: int = 8, reporter: Reporter | None = None, dtype: torch.dtype | None = None
                ) -> Float[Tensor, "n layer T"]:
    """|| resid_post[l, k] || for every layer and position, with optional extra hooks. reporter: per batch.
    dtype: the norm's (probes.quantities.residual_norm; default float32)."""
    ids = check_ids(model, ids)

    def run(batch: Tensor) -> Tensor:
        got: dict[int, Tensor] = {}

        def on_resid(x: Tensor, hook: Any) -> None:
            got[int(hook.name.split(".")[1])] = residual_norm(x, dtype).cpu()

        hooks = list(fwd_hooks or []) + [(f"blocks.{layer}.hook_resid_post", on_resid)
                                         for layer in range(model.facts.n_layers)]
        with torch.no_grad():
            model.run_with_hooks(batch, fwd_hooks=hooks)
        return torch.stack([got[layer] for layer in range(model.facts.n_layers)], dim=1)

    return torch.cat(batches(ids, batch_size, run, reporter, "residual norms"))


def default_ablation_layers(clean_sink: Float[Tensor, " layer"]) -> list[int]:
    """Layers 0 and 1 and the layer where the clean first-token norm grows most, with the one before it."""
    growth = torch.cat([clean_sink[:1], clean_sink[1:] - clean_sink[:-1]])
    jump = int(growth.argmax())
    return sorted({0, 1, max(jump - 1, 0), jump})


def ablation_row(component: str, layer: int, norms: Float[Tensor, "n layer T"], at: int) -> dict[str, Any]:
    """One row of the peak ablation: the sink's norm and the largest other norm at layer `at`."""
    return {"component": component, "layer": layer, "sink": float(norms[:, at, 0].mean()),
            "rest_max": float(norms[:, at, 1:].amax(-1).mean()), "sink_by_layer": norms[..., 0].mean(0)}


@dataclass
class PeakAblation:
    """The sink's residual norm after zeroing one layer's MLP or attention output."""

    clean_sink: Float[Tensor, " layer"]  # mean over samples of ||resid_post[l, 0]||
    clean_rest_max: Float[Tensor, " layer"]  # mean over samples of max_{k>=1} ||resid_post[l, k]||
    measure_layer: int
    rows: list[dict[str, Any]] = field(default_factory=list)  # component, layer, sink, rest_max, sink_by_layer
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "peak_ablation", **self.metadata, "clean_sink": self.clean_sink, "clean_rest_max": self.clean_rest_max,
                "measure_layer": self.measure_layer, "rows": self.rows}


def zeroed_norms(model: ModelLike, ids: Int[Tensor, "n T"], zero: tuple[str, int] | None, batch_size: int,
                 reporter: Reporter | None = None, attention: str = "fast") -> Float[Tensor, "n layer T"]:
    """ModelLike.residual_norms of every sequence, a batch at a time, with `zero` (component, layer) zeroed."""
    return torch.cat(batches(ids, batch_size, lambda b: model.residual_norms(b, zero=zero, attention=attention),
                             reporter, "residual norms"))


def peak_ablation(
    model: ModelLike, ids: Int[Tensor, "n T"], layers: Sequence[int] | None = None,
    components: Sequence[str] = COMPONENTS, measure_layer: int | None = None, batch_size: int = 8,
    reporter: Reporter | None = None, attention: str = "fast",
) -> PeakAblation:
    """Zero each listed layer's MLP / attention output in turn; report the sink's residual norm at
    `measure_layer` (default: the layer where the clean sink norm peaks) and the largest other norm.

    layers=None: layers 0 and 1 (where the spec's Llama builds its peak) and the layer where the clean
    first-token norm grows most, with the one before it (where this model builds it).
    reporter (probes.progress): the clean run, then one step per (component, layer) zeroed.
    The zeroing runs where the model does (ModelLike.residual_norms: a forward hook on the module under the fast
    attention here, or TransformerLens hooks with attention="patterns"; an nnsight intervention remotely).
    """
    rep = reporter or NullReporter()
    ids = check_ids(model, ids)  # type: ignore[arg-type]
    for component in components:
        if component not in COMPONENTS:
            raise InputError(f"Unknown component '{component}'. Choose 'mlp' or 'attn'.")
    run = model.attention_run(attention)
    clean = zeroed_norms(model, ids, None, batch_size, rep.part(0.0, 0.2), attention)
    sink, rest = clean[..., 0].mean(0), clean[..., 1:].amax(-1).mean(0)
    at = int(sink.argmax()) if measure_layer is None else model.check_layers([measure_layer])[0]
    layers = default_ablation_layers(sink) if layers is None else layers
    rows = []
    runs = [(component, layer) for component in components for layer in layers]
    ablation = rep.part(0.2, 1.0)
    for done, (component, layer) in enumerate(runs, start=1):
        ablation.check()
        norms = zeroed_norms(model, ids, (component, int(layer)), batch_size, attention=attention)
        rows.append(ablation_row(component, int(layer), norms, at))
        ablation.update(f"ablate {component} of layer {layer} ({done} of {len(runs)})", done, len(runs))
    rep.update("peak ablation done", 1, 1)
    settings = {"layers": list(layers), "components": list(components), "measure_layer": at,
                "n": int(ids.shape[0]), "T": int(ids.shape[1]), "attention": run}
    return PeakAblation(sink, rest, at, rows, result_metadata(model, settings))
