"""Active-dormant heads (Guo et al. 2024): dormancy per head and per domain, and ablation effects.

Spec: docs/methods/extreme-tokens.md ("Active-dormant heads in pretrained models").
- dormancy[l,h] on a domain = mean over the domain's sequences (T = 64) of the mean attention on the
  sink (position 0) over the non-sink queries i >= 1 (probes.extreme.sink_attention).
- ablation effect = mean next-token loss with the head ablated minus the clean loss, on that domain:
  zero_out_attn sets the head's whole pattern to 0 (its output z becomes 0); move_attn_to_bos puts
  every query's attention on position 0 (its output becomes v_0 at every position).
- The ranked table holds the `top` heads whose dormancy differs most between the two domains plus
  `controls` heads whose dormancy barely differs (the most dormant and the most active of them),
  so the ablation (2 modes x 2 domains per head) stays affordable.
- The entropy detector (the spec's alternative, from the authors' code): per head, the mean over queries
  of the normalized row entropy H(A[i, :]) / log(keys seen) and the maximum over keys of the normalized
  column entropy H(A[:, k] / sum) / log(queries that see k), both averaged over the sequences. Query 0
  (one key) and the last key (one query) have no defined normalized entropy and are left out. The spec
  gives no thresholds; ours: a sink head has mean row entropy < ROW_ENTROPY_MAX (0.3) and maximum column
  entropy > COLUMN_ENTROPY_MIN (0.9). For scale: a row with 0.9 on the sink and the rest spread evenly
  over 31 other keys has normalized entropy 0.19; a uniform row has 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from probes.corpus import DOMAINS, sample
from probes.errors import InputError
from probes.extreme import sink_attention
from probes.hidden_sinks import mean_loss
from probes.model.attention_edits import AttentionParts, HeadEdit, as_pattern_hooks
from probes.model.hooked_model import HookedModel
from probes.progress import NullReporter, Reporter, batches
from probes.quantities import mean_from_query
from probes.results import result_metadata
from probes.sinks import ATTENTION_RUN, attention_mode, check_ids

if TYPE_CHECKING:
    from probes.model.model_like import ModelLike

ABLATIONS = ("zero_out_attn", "move_attn_to_bos")
ROW_ENTROPY_MAX = 0.3
COLUMN_ENTROPY_MIN = 0.9


def _entropy(p: Tensor, dim: int) -> Tensor:
    return -(torch.where(p > 0, p * p.clamp_min(1e-30).log(), torch.zeros((), device=p.device))).sum(dim)


def row_entropy(pattern: Float[Tensor, "... T T"]) -> Float[Tensor, " ..."]:
    """Mean over queries i >= 1 of H(A[i, :i+1]) / log(i + 1) (0-based i: i + 1 keys are visible)."""
    a = pattern.float()
    T = a.shape[-1]
    keys_seen = torch.arange(2, T + 1, device=a.device, dtype=torch.float32)
    return (_entropy(a[..., 1:, :], dim=-1) / keys_seen.log()).mean(-1)


def column_entropy(pattern: Float[Tensor, "... T T"]) -> Float[Tensor, " ..."]:
    """Max over keys k <= T-2 of H(p_k) / log(T - k), p_k = A[k:, k] / sum (the T - k queries that see k).

    A column that receives no attention at all has entropy 0."""
    a = pattern.float()
    T = a.shape[-1]
    col = a / a.sum(dim=-2, keepdim=True).clamp_min(1e-30)
    queries_seen = torch.arange(T, 1, -1, device=a.device, dtype=torch.float32)  # T - k for k = 0..T-2
    return (_entropy(col[..., :, : T - 1], dim=-2) / queries_seen.log()).amax(-1)


def is_sink_head(row: Tensor, column: Tensor) -> Tensor:
    """The entropy detector: low mean row entropy and a high maximum column entropy (thresholds above)."""
    return (row < ROW_ENTROPY_MAX) & (column > COLUMN_ENTROPY_MIN)


def domain_inputs(model: HookedModel, domain: str, n: int, T: int = 64, seed: int = 0,
                  prepend_bos: bool | None = None) -> Int[Tensor, "n T"]:
    """n windows of exactly T tokens from a corpus domain (BOS first when asked or by the tokenizer's default)."""
    if domain not in DOMAINS:
        raise InputError(f"Unknown domain '{domain}'. Choose one of: {', '.join(DOMAINS)}.")
    want_bos = model.facts.prepends_bos if prepend_bos is None else bool(prepend_bos)
    prefix = [int(model.facts.bos_token_id)] if want_bos and model.facts.bos_token_id is not None else []
    return sample(domain, n, T, model.tokenizer, seed=seed, prefix_ids=prefix).ids


HEAD_STATISTICS = {"dormancy": sink_attention, "row_entropy": row_entropy, "column_entropy": column_entropy}


def statistics_from_summaries(s: dict[str, Float[Tensor, "... T"]]) -> dict[str, Float[Tensor, " ..."]]:
    """HEAD_STATISTICS from the statistics path's per-query and per-key sums (no pattern; docs/kernels.md):
    dormancy = mean over i >= 1 of A[i, 0]; row entropy = mean over i >= 1 of H(A[i, :]) / log(i + 1);
    column entropy = max over k <= T-2 of (log c_k - x_k / c_k) / log(T - k), c_k = sum_i A[i, k],
    x_k = sum_i A[i, k] log A[i, k] (0 where the column receives nothing), as the pattern forms above."""
    T = s["first"].shape[-1]
    keys_seen = torch.arange(2, T + 1, dtype=torch.float32)
    c, x = s["received"][..., : T - 1], s["received_xlogx"][..., : T - 1]
    column = torch.where(c > 0, c.clamp_min(1e-30).log() - x / c.clamp_min(1e-30), torch.zeros(()))
    queries_seen = torch.arange(T, 1, -1, dtype=torch.float32)
    return {"dormancy": mean_from_query(s["first"], 1),
            "row_entropy": (s["entropy"][..., 1:] / keys_seen.log()).mean(-1),
            "column_entropy": (column / queries_seen.log()).amax(-1)}


def statistics_for_batch(model: HookedModel, batch: Int[Tensor, "b T"], attention: str = "fast"
                         ) -> dict[str, Float[Tensor, "b layer head"]]:
    """HEAD_STATISTICS of every sequence of one batch: from the statistics path's summaries (no pattern) when
    attention resolves to "fast" (statistics_from_summaries), else each eager pattern reduced in its hook."""
    if attention_mode(model, attention) == "fast":
        from probes.attention_stats import summaries_for_batch

        return statistics_from_summaries(summaries_for_batch(model, batch, True)[0])
    per_layer: dict[str, list[Tensor]] = {name: [] for name in HEAD_STATISTICS}

    def on_pattern(p: Tensor, hook: Any) -> None:
        for name, fn in HEAD_STATISTICS.items():
            per_layer[name].append(fn(p.detach()).cpu())

    hooks = [(f"blocks.{layer}.attn.hook_pattern", on_pattern) for layer in range(model.facts.n_layers)]
    with torch.no_grad():
        model.run_with_hooks(batch, fwd_hooks=hooks)
    return {name: torch.stack(values, dim=1) for name, values in per_layer.items()}


def head_statistics(model: ModelLike, ids: Int[Tensor, "n T"], batch_size: int = 8,
                    reporter: Reporter | None = None, attention: str = "fast") -> dict[str, Float[Tensor, "layer head"]]:
    """Dormancy, mean row entropy and max column entropy of every head (of the model's measured_layers),
    averaged over the sequences: one forward pass per batch, measured where the model runs
    (ModelLike.head_statistics: statistics_for_batch here, reduced inside the trace remotely). reporter: per batch."""
    ids = check_ids(model, ids)  # type: ignore[arg-type]
    totals = {name: torch.zeros(len(model.measured_layers), model.facts.n_heads) for name in HEAD_STATISTICS}

    def run(batch: Tensor) -> None:
        for name, value in model.head_statistics(batch, attention).items():
            totals[name] += value.sum(0)

    batches(ids, batch_size, run, reporter, "head statistics")
    return {name: total / len(ids) for name, total in totals.items()}


def dormancy(model: HookedModel, ids: Int[Tensor, "n T"], batch_size: int = 8) -> Float[Tensor, "layer head"]:
    """Mean attention on the sink over non-sink queries, averaged over the sequences."""
    return head_statistics(model, ids, batch_size)["dormancy"]


def ablation_edit(model: HookedModel, layer: int, head: int, mode: str) -> HeadEdit:
    """One head ablated: zero_out_attn (an all-zero pattern: the head outputs 0) or move_attn_to_bos (one-hot on
    key 0: the head outputs v_0), as a pattern edit and as an output edit (probes.model.attention_edits)."""
    if mode not in ABLATIONS:
        raise InputError(f"Unknown ablation '{mode}'. Choose one of: {', '.join(ABLATIONS)}.")
    layer, head = model.check_layer(layer), model.check_head(head)

    def on_pattern(pattern: Tensor) -> Tensor:
        out = torch.zeros_like(pattern)
        if mode == "move_attn_to_bos":
            out[..., 0] = 1.0
        return out

    def on_output(parts: AttentionParts) -> Tensor:
        if mode == "zero_out_attn":
            return torch.zeros_like(parts.out)
        return parts.v[:, :, :1].expand_as(parts.out)

    return HeadEdit(layer, (head,), on_pattern, on_output)


def ablation_hooks(model: HookedModel, layer: int, head: int, mode: str) -> list[tuple[str, Any]]:
    """ablation_edit as a pattern hook (eager attention)."""
    return as_pattern_hooks([ablation_edit(model, layer, head, mode)])


@dataclass
class HeadRow:
    layer: int
    head: int
    role: str  # "top" (dormancy differs most), "control" or "chosen" (asked for)
    dormancy: dict[str, float]
    difference: float  # dormancy on the first domain minus on the second
    loss_delta: dict[str, dict[str, float]] = field(default_factory=dict)  # domain -> mode -> delta (nats)


@dataclass
class DormantResult:
    """Dormancy per head and domain, and the ranked table with ablation effects."""

    domains: tuple[str, str]
    dormancy: dict[str, Float[Tensor, "layer head"]]
    base_loss: dict[str, float]
    rows: list[HeadRow]
    metadata: dict[str, Any]
    row_entropy: dict[str, Float[Tensor, "layer head"]] = field(default_factory=dict)
    column_entropy: dict[str, Float[Tensor, "layer head"]] = field(default_factory=dict)

    def sink_heads(self, domain: str) -> Float[Tensor, "layer head"]:
        """The entropy detector's verdict per head on one domain (bool)."""
        return is_sink_head(self.row_entropy[domain], self.column_entropy[domain])

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "dormant", **self.metadata, "domains": list(self.domains), "dormancy": self.dormancy,
                "base_loss": self.base_loss, "rows": self.rows, "row_entropy": self.row_entropy,
                "column_entropy": self.column_entropy,
                "entropy_sink_heads": {d: self.sink_heads(d) for d in self.row_entropy},
                "entropy_thresholds": {"row_entropy_max": ROW_ENTROPY_MAX, "column_entropy_min": COLUMN_ENTROPY_MIN}}


def _check_head(model: ModelLike, head: int) -> int:
    if not 0 <= head < model.facts.n_heads:
        raise InputError(f"Head {head} is out of range: {model.spec} has heads 0..{model.facts.n_heads - 1}.")
    return head


def rank_by_gap(diff: Float[Tensor, "layer head"]) -> list[int]:
    """Flat head indices (layer * n_heads + head) by |dormancy difference between domains|, largest first."""
    return diff.abs().flatten().argsort(descending=True).tolist()


def pick_heads(diff: Float[Tensor, "layer head"], mean: Float[Tensor, "layer head"], top: int, controls: int
               ) -> list[tuple[int, int, str]]:
    """The `top` heads with the largest |difference|, then controls among the half with the smallest
    |difference|: alternately the most dormant and the most active of them."""
    n_heads = diff.shape[1]
    order = rank_by_gap(diff)
    chosen = [(i // n_heads, i % n_heads, "top") for i in order[:top]]
    calm = order[len(order) // 2 :]
    by_mean = sorted(calm, key=lambda i: -float(mean.flatten()[i]))
    picks: list[int] = []
    while len(picks) < min(controls, len(by_mean)):
        source = by_mean if len(picks) % 2 == 0 else by_mean[::-1]
        picks.append(next(i for i in source if i not in picks))
    return chosen + [(i // n_heads, i % n_heads, "control") for i in picks]


def dormant_heads(
    model: ModelLike, domains: Sequence[str] = DOMAINS, n: int = 16, T: int = 64, seed: int = 0, top: int = 5,
    controls: int = 2, prepend_bos: bool | None = None, batch_size: int = 8, ablate: bool = True,
    heads: Sequence[tuple[int, int]] = (), reporter: Reporter | None = None, attention: str = "fast",
) -> DormantResult:
    """Dormancy of every head on two domains, and ablation effects for the most domain-dependent heads
    (plus any (layer, head) in `heads`, with role "chosen").

    reporter (probes.progress): the statistics batches, the clean losses, then one step per head and domain
    of the ablation (a cancel is checked between them). attention: the head statistics' path (head_statistics);
    the ablations edit eager patterns whatever it is.
    On a model measured elsewhere (model.backend is not "local": a RemoteModel) the losses and the ablations,
    which run hooked forward passes here, are left out: base_loss is empty and no row has a loss_delta; with a
    subset of layers (measured_layers) the rows name the model's own layer numbers."""
    run_attention = model.attention_run(attention)
    if len(domains) != 2 or len(set(domains)) != 2:
        raise InputError(f"Give exactly two different domains (got {list(domains)}); known: {', '.join(DOMAINS)}.")
    heads = [(model.check_layers([layer])[0], _check_head(model, head)) for layer, head in heads]
    hooked = model.backend == "local"
    ablate = ablate and hooked
    rep = reporter or NullReporter()
    inputs = {d: domain_inputs(model, d, n, T, seed, prepend_bos) for d in domains}  # type: ignore[arg-type]
    split = 0.3 if ablate else 0.9
    stats = {d: head_statistics(model, inputs[d], batch_size, rep.part(i * split / 2, (i + 1) * split / 2),
                                attention) for i, d in enumerate(domains)}
    dorm = {d: stats[d]["dormancy"] for d in domains}
    first, second = domains
    diff = dorm[first] - dorm[second]
    measured = model.measured_layers
    picked = [(measured[i], head, role) for i, head, role in pick_heads(diff, (dorm[first] + dorm[second]) / 2, top,
                                                                         controls)]
    seen = {(layer, head) for layer, head, _ in picked}
    for layer, head in heads:
        if (layer, head) not in seen and layer in measured:
            picked.append((layer, head, "chosen"))
            seen.add((layer, head))
    at = {layer: i for i, layer in enumerate(measured)}
    rows = [HeadRow(layer, head, role, {d: float(dorm[d][at[layer], head]) for d in domains},
                    float(diff[at[layer], head])) for layer, head, role in picked]
    clean = rep.part(split, split + 0.1)
    base = {d: mean_loss(model, inputs[d], batch_size=batch_size, reporter=clean.part(i / 2, (i + 1) / 2),  # type: ignore[arg-type]
                         attention=attention)
            for i, d in enumerate(domains)} if hooked else {}
    if ablate:
        steps, done = len(rows) * len(domains), 0
        ablation = rep.part(split + 0.1, 1.0)
        for row in rows:
            for d in domains:
                ablation.check()
                row.loss_delta[d] = {mode: mean_loss(model, inputs[d], batch_size=batch_size,  # type: ignore[arg-type]
                                                     edits=[ablation_edit(model, row.layer, row.head, mode)],  # type: ignore[arg-type]
                                                     attention=attention) - base[d] for mode in ABLATIONS}
                done += 1
                ablation.update(f"ablate head {row.layer}.{row.head} on {d} ({done} of {steps})", done, steps)
    rep.update("dormant heads done", 1, 1)
    settings = {"domains": list(domains), "n": n, "T": T, "top": top, "controls": controls, "heads": list(heads),
                "prepend_bos": model.facts.prepends_bos if prepend_bos is None else prepend_bos,
                "attention": run_attention}
    if ablate:  # the ablations' own path: fused output edits, or eager patterns (e.g. a sliding-window layer)
        settings["ablation_attention"] = sorted({ATTENTION_RUN[model.attention_path(  # type: ignore[attr-defined]
            attention, [ablation_edit(model, r.layer, r.head, ABLATIONS[0])])] for r in rows})  # type: ignore[arg-type]
    return DormantResult((first, second), dorm, base, rows, result_metadata(model, settings, seed),
                         row_entropy={d: stats[d]["row_entropy"] for d in domains},
                         column_entropy={d: stats[d]["column_entropy"] for d in domains})
