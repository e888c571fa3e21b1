"""Hidden sinks beyond the first token (ACT, Yu et al. 2024) and two pattern interventions.

Spec: docs/methods/attention-sinks.md ("Hidden sinks", "First-token scaling").

- Detection: per head, alpha_k = sum_i A[i,k] / (T - k). We read ACT's k as 0-based, so this is the
  same column mean over the queries that can see key k as Gu's alpha (probes.sinks.alpha_from_pattern).
  Token k is a sink of a head on a sequence when alpha_k > 0.1 (strict).
- Calibration (ACT): on a calibrated head, the columns of the non-first sinks are multiplied by
  beta = 0.4 in every row; the removed mass goes back to the non-sink keys of that row in proportion
  to their attention. Choices (the spec leaves them open): the first token is kept as it is (neither
  scaled nor given mass); sinks are detected online on each input from the head's own pattern (as
  ACT does at inference); a row whose keys are all sinks is left unchanged (nowhere to put the mass).
- First-token scaling (ZeroTuning): A'[i,0] = gamma A[i,0] / (1 + (gamma-1) A[i,0]),
  A'[i,j] = A[i,j] / (1 + (gamma-1) A[i,0]).
Each is a HeadEdit (probes.model.attention_edits) with two forms of the same change: on the pattern, a hook
on `blocks.{l}.attn.hook_pattern` (eager; the head's output z is pattern @ v downstream of it, tests check
it), and on the output, from the fused pass's q, k, v, output and log-sum-exp with no T x T pattern (the
default, attention="fast", where HookedModel.attention_path allows it; tests hold it to the pattern form).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from probes.errors import InputError
from probes.model.attention_edits import AttentionParts, HeadEdit, as_pattern_hooks
from probes.model.hooked_model import HookedModel
from probes.progress import NullReporter, Reporter, batches
from probes.results import result_metadata
from probes.sinks import ATTENTION_RUN, alpha_by_batches, alpha_from_pattern, check_ids

if TYPE_CHECKING:
    from probes.model.model_like import ModelLike

HIDDEN_THRESHOLD = 0.1
BETA = 0.4

Head = tuple[int, int]


@dataclass
class SinkToken:
    """One detected non-first sink, in context."""

    layer: int
    head: int
    sample: int
    position: int
    token: str
    alpha: float
    context: str  # a few tokens either side, the sink marked with [[...]]


@dataclass
class HiddenSinkResult:
    """Hidden-sink detection on a batch (spec "Hidden sinks")."""

    alpha: Float[Tensor, "n layer head T"]
    threshold: float
    hidden_rate: Float[Tensor, "layer head"]  # % of samples where the head has a sink at k >= 1
    position_rate: Float[Tensor, " T"]  # % of (sample, layer, head) where k is a sink
    token_counts: dict[str, int]  # token string -> number of (sample, layer, head) where it is a non-first sink
    examples: list[SinkToken]
    str_tokens: list[list[str]]
    metadata: dict[str, Any]

    @property
    def is_sink(self) -> Bool[Tensor, "n layer head T"]:
        return self.alpha > self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {**self.metadata, "threshold": self.threshold, "hidden_rate": self.hidden_rate,
                "position_rate": self.position_rate, "token_counts": self.token_counts,
                "examples": self.examples, "str_tokens": self.str_tokens}


def _context(tokens: list[str], k: int, width: int = 4) -> str:
    left = "".join(tokens[max(0, k - width) : k])
    right = "".join(tokens[k + 1 : k + 1 + width])
    return f"{left}[[{tokens[k]}]]{right}"


def check_hidden_settings(threshold: float, min_queries: int, T: int) -> None:
    """threshold strictly inside (0, 1); min_queries in 1..T-1."""
    if not 0.0 < threshold < 1.0:
        raise InputError(f"threshold must be strictly between 0 and 1 (got {threshold}); ACT uses 0.1.")
    if not 1 <= min_queries < T:
        raise InputError(f"min_queries must lie in 1..{T - 1} (got {min_queries}).")


def hidden_sinks_from_alpha(
    alpha: Float[Tensor, "n layer head T"], str_tokens: list[list[str]], threshold: float = HIDDEN_THRESHOLD,
    max_examples: int = 40, min_queries: int = 1, metadata: dict[str, Any] | None = None,
) -> HiddenSinkResult:
    """The hidden-sink reduction of given alpha (spec "Hidden sinks"): sinks alpha_k > threshold at k >= 1
    among the positions seen by at least min_queries queries, their rates, token counts and examples.
    Shared by detect_hidden_sinks and the remote version (probes.remote_analyses)."""
    T = alpha.shape[-1]
    check_hidden_settings(threshold, min_queries, T)
    sinks = alpha > threshold
    sinks[..., T - min_queries + 1 :] = False
    hidden = sinks[..., 1:]
    found = hidden.nonzero().tolist()
    counts: dict[str, int] = {}
    for s, _, _, k in found:
        tok = str_tokens[s][k + 1]
        counts[tok] = counts.get(tok, 0) + 1
    order = sorted(found, key=lambda f: -float(alpha[f[0], f[1], f[2], f[3] + 1]))
    examples = [SinkToken(layer, head, s, k + 1, str_tokens[s][k + 1], float(alpha[s, layer, head, k + 1]),
                          _context(str_tokens[s], k + 1)) for s, layer, head, k in order[:max_examples]]
    return HiddenSinkResult(
        alpha=alpha, threshold=threshold,
        hidden_rate=100.0 * hidden.any(dim=-1).float().mean(dim=0),
        position_rate=100.0 * sinks.float().mean(dim=(0, 1, 2)),
        token_counts=dict(sorted(counts.items(), key=lambda kv: -kv[1])),
        examples=examples, str_tokens=str_tokens, metadata=metadata or {},
    )


def detect_hidden_sinks(
    model: ModelLike, ids: Int[Tensor, "n T"], threshold: float = HIDDEN_THRESHOLD, batch_size: int = 8,
    max_examples: int = 40, min_queries: int = 1, reporter: Reporter | None = None, attention: str = "fast",
) -> HiddenSinkResult:
    """Per-head sinks alpha_k > threshold at positions k >= 1, with their tokens in context.

    min_queries: count only positions seen by at least this many queries (k <= T - min_queries). The
    default 1 is the spec's definition; near the end alpha_k is the mean of very few entries (the last
    position's alpha is A[T-1, T-1] alone), so the CLI shows examples with min_queries = 8.
    reporter (probes.progress): updated after every batch, checked for a cancel before each.
    attention: "fast" (the statistics path, no pattern) or "patterns" (probes.sinks.compute_sinks' modes).
    """
    run = model.attention_run(attention)
    ids = check_ids(model, ids)  # type: ignore[arg-type]
    check_hidden_settings(threshold, min_queries, ids.shape[1])
    alpha = alpha_by_batches(model, ids, batch_size, reporter, "hidden sinks", attention)
    settings = {"threshold": threshold, "n": int(ids.shape[0]), "T": int(ids.shape[1]), "min_queries": min_queries,
                "attention": run}
    return hidden_sinks_from_alpha(alpha, model.tokens_from_ids(ids).str_tokens, threshold, max_examples,
                                   min_queries, result_metadata(model, settings))


# --- interventions on a pattern ----------------------------------------------------------------------


def calibrate_pattern(
    pattern: Float[Tensor, "... T T"], beta: float = BETA, threshold: float = HIDDEN_THRESHOLD,
    sink_cols: Bool[Tensor, "... T"] | None = None,
) -> Float[Tensor, "... T T"]:
    """ACT calibration of a causal pattern (see the module docstring for the choices made).

    sink_cols: which key columns to scale; by default alpha_k > threshold for k >= 1 of this pattern.
    """
    if not 0.0 <= beta <= 1.0:
        raise InputError(f"beta must lie in [0, 1] (got {beta}); ACT uses 0.4.")
    A = pattern.float()
    T = A.shape[-1]
    if sink_cols is None:
        sink_cols = alpha_from_pattern(A) > threshold
    sink_cols = sink_cols.clone()
    sink_cols[..., 0] = False
    lower = torch.tril(torch.ones(T, T, dtype=torch.bool, device=A.device))
    S = sink_cols[..., None, :] & lower  # [..., T(query), T(key)]
    first = torch.zeros(T, dtype=torch.bool, device=A.device)
    first[0] = True
    receives = lower & ~S & ~first
    removed = (1.0 - beta) * (A * S).sum(-1, keepdim=True)
    base = (A * receives).sum(-1, keepdim=True)
    share = torch.where(receives & (base > 0), A / base.clamp_min(1e-30), torch.zeros((), device=A.device))
    out = torch.where(S, A * beta, A) + share * removed
    keep = (base <= 0).expand_as(A)
    return torch.where(keep, A, out).to(pattern.dtype)


def scale_first_token(pattern: Float[Tensor, "... T T"], gamma: float, key: int = 0) -> Float[Tensor, "... T T"]:
    """ZeroTuning: scale the attention on position `key` (0: the first token; another position is the paper's
    control) by gamma and renormalize every row."""
    if not gamma > 0:
        raise InputError(f"gamma must be positive (got {gamma}).")
    A = pattern.float()
    denom = 1.0 + (gamma - 1.0) * A[..., :, key : key + 1]
    out = A / denom
    out[..., :, key] = gamma * A[..., :, key] / denom[..., 0]
    return out.to(pattern.dtype)


def scale_first_output(parts: AttentionParts, gamma: float, key: int = 0) -> Float[Tensor, "batch head pos d"]:
    """scale_first_token's output form: (out + (gamma - 1) A[i,j] v_j) / (1 + (gamma - 1) A[i,j]), j = key
    (A[i,j] = 0 for queries before the key: those rows stay as they are)."""
    p = parts.probabilities(torch.full((1,), key, dtype=torch.long))  # [batch, head, pos, 1]
    return (parts.out + (gamma - 1.0) * p * parts.v[:, :, key : key + 1]) / (1.0 + (gamma - 1.0) * p)


def calibrate_output(parts: AttentionParts, beta: float = BETA, threshold: float = HIDDEN_THRESHOLD
                     ) -> Float[Tensor, "batch head pos d"]:
    """calibrate_pattern's output form: sinks from the swapped pass's alpha (no window), then
    A[i,0] v_0 + beta sum_S A v + (base_i + removed_i) * (the mean value over the receiving keys), where
    base_i and that mean come from one fused pass with the first token and the sinks masked out."""
    t = parts.q.shape[2]
    keys = torch.arange(t, device=parts.q.device)
    sink = parts.received() / (t - keys).float() > threshold  # [batch, head, key]
    sink[..., 0] = False
    cols = sink.flatten(0, 1).any(0).nonzero()[:, 0]
    if not len(cols):
        return parts.out
    p_sink = torch.where(sink[:, :, None, cols], parts.probabilities(cols), torch.zeros((), device=sink.device))
    p_first = parts.probabilities(keys[:1])
    dropped = sink.clone()
    dropped[..., 0] = True
    rest_mean, rest_lse = parts.without_keys(dropped)
    base = torch.exp(rest_lse - parts.lse)
    removed = (1.0 - beta) * p_sink.sum(-1)
    new = (p_first * parts.v[:, :, :1] + beta * p_sink @ parts.v[:, :, cols]
           + (base + removed)[..., None] * rest_mean)
    receivers = keys - torch.cumsum(sink.long(), dim=-1)  # keys 1..i that are not sinks
    return torch.where((receivers <= 0)[..., None], parts.out, new)


def _by_layer(model: HookedModel, heads: Sequence[Head]) -> dict[int, list[int]]:
    if not heads:
        raise InputError("No heads given: pass a list of (layer, head) pairs.")
    grouped: dict[int, list[int]] = {}
    for layer, head in heads:
        grouped.setdefault(model.check_layer(layer), []).append(model.check_head(head))
    return grouped


def head_edits(model: HookedModel, heads: Sequence[Head], on_pattern: Callable[[Tensor], Tensor],
               on_output: Callable[[AttentionParts], Tensor]) -> list[HeadEdit]:
    """One HeadEdit per layer of the given heads (probes.model.attention_edits)."""
    return [HeadEdit(layer, tuple(sorted(set(hs))), on_pattern, on_output)
            for layer, hs in _by_layer(model, heads).items()]


def calibration_edits(model: HookedModel, heads: Sequence[Head], beta: float = BETA,
                      threshold: float = HIDDEN_THRESHOLD) -> list[HeadEdit]:
    if not 0.0 <= beta <= 1.0:
        raise InputError(f"beta must lie in [0, 1] (got {beta}); ACT uses 0.4.")
    return head_edits(model, heads, lambda p: calibrate_pattern(p, beta=beta, threshold=threshold),
                      lambda parts: calibrate_output(parts, beta, threshold))


def scaling_edits(model: HookedModel, heads: Sequence[Head], gamma: float, key: int = 0) -> list[HeadEdit]:
    """ZeroTuning on the given heads: the attention on position `key` (default the first token) times gamma."""
    if not gamma > 0:
        raise InputError(f"gamma must be positive (got {gamma}).")
    if key < 0:
        raise InputError(f"The scaled position must be 0 or more (got {key}).")
    return head_edits(model, heads, lambda p: scale_first_token(p, gamma, key),
                      lambda parts: scale_first_output(parts, gamma, key))


def calibration_hooks(model: HookedModel, heads: Sequence[Head], beta: float = BETA,
                      threshold: float = HIDDEN_THRESHOLD) -> list[tuple[str, Callable[..., Tensor]]]:
    """calibration_edits as pattern hooks (eager attention)."""
    return as_pattern_hooks(calibration_edits(model, heads, beta, threshold))


def scaling_hooks(model: HookedModel, heads: Sequence[Head], gamma: float) -> list[tuple[str, Callable[..., Tensor]]]:
    """scaling_edits as pattern hooks (eager attention)."""
    return as_pattern_hooks(scaling_edits(model, heads, gamma))


def mean_loss(model: HookedModel, ids: Int[Tensor, "n T"], hooks: list[Any] | None = None,
              batch_size: int = 8, reporter: Reporter | None = None, edits: Sequence[HeadEdit] = (),
              attention: str = "fast") -> float:
    """Mean next-token cross-entropy (nats) over every position of every sequence, with optional hooks (eager)
    or head edits (fast where HookedModel.attention_path allows). reporter (probes.progress): per batch."""
    nll = batches(ids, batch_size, lambda b: model.loss_per_token(b, fwd_hooks=hooks or None, edits=edits,
                                                                  attention=attention), reporter, "loss")
    return sum(float(x.sum()) for x in nll) / sum(x.numel() for x in nll)


@dataclass
class InterventionResult:
    """Next-token loss before and after an intervention on chosen heads' patterns."""

    kind: str  # calibrate | scale_first
    heads: list[Head]
    params: dict[str, float]
    loss_before: float
    loss_after: float
    search: dict[str, float] = field(default_factory=dict)  # "L.H" -> loss change with that head alone
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def delta(self) -> float:
        return self.loss_after - self.loss_before

    def to_dict(self) -> dict[str, Any]:
        return {**self.metadata, "kind": self.kind, "heads": self.heads, "params": self.params,
                "loss_before": self.loss_before, "loss_after": self.loss_after, "delta": self.delta,
                "search": self.search}


def search_calibration_heads(
    model: HookedModel, calib_ids: Int[Tensor, "n T"], candidates: int = 8, beta: float = BETA,
    threshold: float = HIDDEN_THRESHOLD, batch_size: int = 8, reporter: Reporter | None = None,
    attention: str = "fast",
) -> tuple[list[Head], dict[str, float]]:
    """A simple head search: calibrate each candidate head alone on the calibration data and
    keep those that lower the loss. Candidates are the `candidates` heads with the highest hidden-sink rate.

    Returns the kept heads (best first) and the loss change of every candidate ("layer.head" -> delta).
    reporter (probes.progress): detection, the clean loss, then one step per candidate head.
    """
    rep = reporter or NullReporter()
    calib_ids = check_ids(model, calib_ids)
    found = detect_hidden_sinks(model, calib_ids, threshold=threshold, batch_size=batch_size, max_examples=0,
                                reporter=rep.part(0.0, 0.2))
    rate = found.hidden_rate.flatten()
    order = [int(i) for i in rate.argsort(descending=True)[:candidates] if rate[i] > 0]
    n_heads = model.facts.n_heads
    base = mean_loss(model, calib_ids, batch_size=batch_size, reporter=rep.part(0.2, 0.3), attention=attention)
    deltas: dict[str, float] = {}
    search = rep.part(0.3, 1.0)
    for done, flat in enumerate(order, start=1):
        search.check()
        head = (flat // n_heads, flat % n_heads)
        loss = mean_loss(model, calib_ids, batch_size=batch_size, attention=attention,
                         edits=calibration_edits(model, [head], beta, threshold))
        deltas[f"{head[0]}.{head[1]}"] = loss - base
        search.update(f"calibration search: head {head[0]}.{head[1]} ({done} of {len(order)})", done, len(order))
    search.update("calibration search done", 1, 1)
    kept = sorted((k for k, d in deltas.items() if d < 0), key=lambda k: deltas[k])
    return [(int(k.split(".")[0]), int(k.split(".")[1])) for k in kept], deltas


def evaluate_intervention(
    model: HookedModel, ids: Int[Tensor, "n T"], kind: str, heads: Sequence[Head], beta: float = BETA,
    gamma: float = 1.5, threshold: float = HIDDEN_THRESHOLD, batch_size: int = 8,
    search: dict[str, float] | None = None, attention: str = "fast",
) -> InterventionResult:
    """Loss before/after calibrating ("calibrate") or first-token scaling ("scale_first") the given heads.
    attention: "fast" edits the heads' outputs under the fused attention where the model allows it
    (HookedModel.attention_path), "patterns" edits eager patterns; the path taken is in the metadata."""
    ids = check_ids(model, ids)
    if kind == "calibrate":
        edits, params = calibration_edits(model, heads, beta, threshold), {"beta": beta, "threshold": threshold}
    elif kind == "scale_first":
        edits, params = scaling_edits(model, heads, gamma), {"gamma": gamma}
    else:
        raise InputError(f"Unknown intervention '{kind}'. Choose 'calibrate' or 'scale_first'.")
    before = mean_loss(model, ids, batch_size=batch_size, attention=attention)
    after = mean_loss(model, ids, batch_size=batch_size, edits=edits, attention=attention)
    path = model.attention_path(attention, edits)
    settings = {"kind": kind, **params, "n": int(ids.shape[0]), "T": int(ids.shape[1]),
                "attention": ATTENTION_RUN[path]}
    return InterventionResult(kind, [(int(a), int(b)) for a, b in heads], params, before, after,
                              search or {}, result_metadata(model, settings))
