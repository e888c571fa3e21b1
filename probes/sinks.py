"""Attention sinks: the Sink_k^eps metric of Gu et al. (2024) on any loaded model.

Spec: docs/methods/attention-sinks.md ("Sink metric"). For N sequences of exactly T tokens,
one forward pass each, A[l,h,i,k] the attention probability from query i to key k:

- alpha[l,h,k] = (1 / (T - k + 1)) * sum_{i=k..T} A[l,h,i,k]   (k 1-based: the mean of column k
  over the T - k + 1 queries that can see key k; 0-based in code: divide by T - k)
- Sink_k^eps = 100 * mean over (sample, layer, head) of 1[alpha[l,h,k] > eps], strict ">", the
  threshold applied per (sample, layer, head) before averaging.

Two ways to alpha (`attention=`), equal within 1e-5 in fp32 (tested on every family of the conformance suite):
- "fast" (the default): the statistics path (probes.attention_stats). The model runs its fast attention
  (SDPA) and alpha comes from each layer's q and k as the softmax reads them, accumulated per key without
  a T x T pattern: memory linear in T. Models that soft-cap attention logits (Gemma 2) take the pattern path.
- "patterns": patterns are reduced to alpha inside a hook on every layer's `blocks.{l}.attn.hook_pattern`
  (eager attention), so no more than one layer's pattern of one batch is alive at a time.
The mode that ran is in the result's metadata (settings.attention: "sdpa" or "eager").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from probes.errors import BudgetError, InputError
from probes.model.capture import default_budget_bytes
from probes.model.hooked_model import HookedModel, Tokens
from probes.model.kernels.attention_stats_reference import MAX_CHUNK_ELEMENTS, ROW_BLOCK
from probes.model.observed_attention import FAST
from probes.progress import NullReporter, Reporter, batches
from probes.results import result_metadata

if TYPE_CHECKING:
    from probes.model.model_like import ModelLike

REGIMES = ("natural", "random", "repeat")
DEFAULT_EPS = 0.3
ATTENTION_MODES = ("fast", "patterns")
ATTENTION_RUN = {"fast": FAST, "patterns": "eager"}  # the attention a mode runs, as results' metadata records it


def attention_mode(model: HookedModel, attention: str) -> str:
    """The path a run takes: "fast" (statistics from q and k under SDPA) or "patterns" (eager patterns);
    "fast" falls back to "patterns" on models that soft-cap attention logits, which SDPA cannot run."""
    if attention not in ATTENTION_MODES:
        raise InputError(f"Unknown attention mode '{attention}'. Choose one of: {', '.join(ATTENTION_MODES)}.")
    return "patterns" if attention == "fast" and model.facts.attn_softcap else attention


def check_eps(eps: float) -> float:
    """eps must lie strictly inside (0, 1): alpha is a probability, so 0 or 1 make the test trivial."""
    if not isinstance(eps, int | float) or not 0.0 < float(eps) < 1.0:
        raise InputError(f"eps must be a number strictly between 0 and 1 (got {eps!r}); the paper uses 0.3.")
    return float(eps)


def _drawable_ids(model: HookedModel) -> Tensor:
    """Every vocabulary id except the tokenizer's special tokens (BOS/EOS/PAD never appear mid-text)."""
    special = set(int(i) for i in getattr(model.tokenizer, "all_special_ids", []) or [])
    keep = torch.ones(model.facts.d_vocab, dtype=torch.bool)
    for i in special:
        if 0 <= i < model.facts.d_vocab:
            keep[i] = False
    return keep.nonzero()[:, 0]


def inputs_for_regime(
    model: HookedModel, regime: str, n: int, T: int, seed: int = 0, prepend_bos: bool | None = None
) -> Int[Tensor, "n T"]:
    """n input sequences of exactly T tokens for one input regime of the spec ("Sink metric").

    natural: prose windows from probes.corpus; random: T tokens drawn uniformly from the
    vocabulary without its special tokens (seeded); repeat: one such random token repeated.
    prepend_bos=None keeps the tokenizer's default; with a BOS it is the first of the T tokens.
    """
    if regime not in REGIMES:
        raise InputError(f"Unknown regime '{regime}'. Choose one of: {', '.join(REGIMES)}.")
    if n < 1 or T < 2:
        raise InputError(f"Need n >= 1 sequences of T >= 2 tokens (got n={n}, T={T}).")
    want_bos = model.facts.prepends_bos if prepend_bos is None else bool(prepend_bos)
    bos = model.facts.bos_token_id
    if want_bos and bos is None:
        raise InputError(f"{model.spec}'s tokenizer has no BOS token; call with prepend_bos=False.")
    prefix = [int(bos)] if want_bos and bos is not None else []
    body = T - len(prefix)
    if regime == "natural":
        from probes.corpus import sample

        return sample("prose", n, T, model.tokenizer, seed=seed, prefix_ids=prefix).ids
    gen = torch.Generator().manual_seed(int(seed))
    pool = _drawable_ids(model)
    if regime == "random":
        draws = pool[torch.randint(len(pool), (n, body), generator=gen)]
    else:
        draws = pool[torch.randint(len(pool), (n, 1), generator=gen)].expand(n, body)
    head = torch.tensor(prefix, dtype=torch.long).expand(n, len(prefix))
    return torch.cat([head, draws], dim=1).contiguous()


def alpha_from_pattern(pattern: Float[Tensor, "... T T"], window: int = 0) -> Float[Tensor, "... T"]:
    """Column means of a causal pattern over the queries that can see each key (spec "Sink metric").

    alpha[..., k] = sum_{i>=k} A[..., i, k] / (T - k) with 0-based k (= the spec's 1/(T-k+1), 1-based).
    In a sliding-window layer (window > 0) only min(T - k, window) queries see key k.
    """
    T = pattern.shape[-1]
    lower = torch.tril(torch.ones(T, T, dtype=torch.bool, device=pattern.device))
    col = torch.where(lower, pattern.float(), torch.zeros((), device=pattern.device)).sum(dim=-2)
    seen_by = torch.arange(T, 0, -1, device=pattern.device, dtype=torch.float32)
    if window:
        seen_by = seen_by.clamp(max=float(window))
    return col / seen_by


def sink_rate(alpha: Float[Tensor, "n layer head T"], eps: float = DEFAULT_EPS) -> Float[Tensor, " T"]:
    """Sink_k^eps in percent for every k: threshold each (sample, layer, head) first, then average."""
    eps = check_eps(eps)
    return 100.0 * (alpha > eps).float().mean(dim=(0, 1, 2))


def sink_rates(alpha: Float[Tensor, "n layer head T"], eps: float) -> dict[str, Any]:
    """Every rate of the sink metric in percent: Sink_k^eps per k ("sink_rate") and its first entry ("sink1"),
    per head over the samples ("head_rate") and per sample over the heads ("sample_rate") of alpha_0 > eps."""
    above = alpha[..., 0] > eps
    rate = sink_rate(alpha, eps)
    return {"sink_rate": rate, "sink1": float(rate[0]), "head_rate": 100.0 * above.float().mean(dim=0),
            "sample_rate": 100.0 * above.float().mean(dim=(1, 2))}


def first_is_bos(ids: Int[Tensor, "n T"], bos_token_id: int | None, prepend_bos: bool) -> bool:
    """Whether every sequence starts with the BOS token; InputError when prepend_bos says it should and it does not."""
    found = bos_token_id is not None and bool((ids[:, 0] == bos_token_id).all())
    if prepend_bos and not found:
        raise InputError("prepend_bos=True but not every sequence starts with the BOS token; build the inputs "
                         "with inputs_for_regime(..., prepend_bos=True) or pass prepend_bos=False.")
    return found


@dataclass
class SinkResult:
    """Sink_k^eps with per-(sample, layer, head) alpha (spec "Sink metric")."""

    alpha: Float[Tensor, "n layer head T"]
    sink_rate: Float[Tensor, " T"]
    sink1: float
    head_rate: Float[Tensor, "layer head"]
    sample_rate: Float[Tensor, " n"]  # per sample: percent of (layer, head) with alpha[..., 0] > eps
    str_tokens: list[list[str]]
    ids: Int[Tensor, "n T"]
    eps: float
    regime: str
    prepend_bos: bool
    first_is_bos: bool
    metadata: dict[str, Any]

    @property
    def T(self) -> int:
        return int(self.alpha.shape[-1])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (kind "sink_result"). alpha itself is kept for the first token only ([n, layer, head]),
        its mean over samples ([layer, head, T]) and, per sample and token, its mean over (layer, head) and the %
        of (layer, head) above eps ([n, T] each); the full tensor stays on the object."""
        return {
            "kind": "sink_result",
            **self.metadata,
            "regime": self.regime,
            "eps": self.eps,
            "prepend_bos": self.prepend_bos,
            "first_is_bos": self.first_is_bos,
            "n": int(self.alpha.shape[0]),
            "T": self.T,
            "sink1": self.sink1,
            "sink_rate": self.sink_rate,
            "head_rate": self.head_rate,
            "sample_rate": self.sample_rate,
            "alpha_first": self.alpha[..., 0],
            "alpha_mean": self.alpha.mean(dim=0),
            "token_alpha": self.alpha.mean(dim=(1, 2)),  # [n, T]: mean over layers and heads
            "token_share": 100.0 * (self.alpha > self.eps).float().mean(dim=(1, 2)),  # [n, T]: % of (layer, head)
            "str_tokens": self.str_tokens,
        }


def check_ids(model: HookedModel, ids: Any, T: int | None = None) -> Int[Tensor, "n T"]:
    """Turn ids (a tensor, a list of rows or a Tokens batch) into [n, T]; shorter rows are an error.

    Rows longer than T are cut to their first T tokens (T=None: every row must have the same length).
    """
    if isinstance(ids, Tokens):
        if not bool(ids.attention_mask.all()):
            shortest = min(ids.lengths)
            raise InputError(f"A sequence has only {shortest} real tokens (padded). Give sequences of exactly T tokens; "
                             "padding is not allowed.")
        ids = ids.ids
    if isinstance(ids, Tensor) and ids.ndim != 2:
        raise InputError(f"ids must be a 2-D [n, T] tensor of token ids (got shape {tuple(ids.shape)}).")
    rows = ids.tolist() if isinstance(ids, Tensor) else [list(map(int, r)) for r in ids]
    if not rows:
        raise InputError("No sequences given.")
    want = T if T is not None else max(len(r) for r in rows)
    short = [i for i, r in enumerate(rows) if len(r) < want]
    if short:
        raise InputError(f"Sequence {short[0]} has {len(rows[short[0]])} tokens but T = {want}. Sequences shorter "
                         "than T are an error (no padding): give longer sequences or a smaller T.")
    if want < 2:
        raise InputError("T must be at least 2.")
    out = torch.tensor([r[:want] for r in rows], dtype=torch.long)
    if int(out.min()) < 0 or int(out.max()) >= model.facts.d_vocab:
        raise InputError(f"Token ids must lie in 0..{model.facts.d_vocab - 1}.")
    return out


def pattern_hook_names(model: HookedModel) -> list[str]:
    return [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.facts.n_layers)]


def alpha_for_batch(model: HookedModel, ids: Int[Tensor, "b T"]) -> Float[Tensor, "b layer head T"]:
    """alpha for one batch, reduced layer by layer inside pattern hooks (nothing else is kept)."""
    per_layer: dict[int, Tensor] = {}

    def keep(pattern: Tensor, hook: Any) -> None:
        layer = int(hook.name.split(".")[1])
        per_layer[layer] = alpha_from_pattern(pattern.detach(), model.attention_window(layer)).cpu()

    hooks = [(name, keep) for name in pattern_hook_names(model)]
    with torch.no_grad():
        model.run_with_hooks(ids, fwd_hooks=hooks)
    return torch.stack([per_layer[layer] for layer in range(model.facts.n_layers)], dim=1)


def sink_memory_bytes(model: HookedModel, batch: int, T: int, attention: str) -> int:
    """Estimated peak memory (bytes, beyond the weights) of one batch of the sink report on a path
    (docs/kernels.md "Memory model"; benchmarks/sinks_overhead.py memory prints it beside the measured peak).
    Both paths hold about 8 d_model + 3 d_mlp activations per token in the model's dtype.
    "patterns" adds six fp32 [batch, head, T, T] tensors in flight (scores, mask, softmax, the hook's copy).
    "fast" adds the larger of its two routes' tensors: the chunked form's four fp32 tensors of one query
    block's scores (at most ROW_BLOCK queries and MAX_CHUNK_ELEMENTS scores) and q, k in fp32
    (2 [batch, head, T, d_head]); or the CPU's fused route's swapped query, key and output and its q, k in
    fp32 (5 [batch, head, T, d_head + 1]). SDPA itself is linear in T."""
    f = model.facts
    item = torch.empty((), dtype=model.dtype).element_size()
    per_token = batch * T * (8 * f.d_model + 3 * f.d_mlp) * item
    rows = batch * f.n_heads * T  # one query's scores for every (sequence, head)
    if attention == "patterns":
        return per_token + 6 * rows * T * 4
    block = min(ROW_BLOCK, max(1, MAX_CHUNK_ELEMENTS // rows), T)
    chunked = 4 * block * rows * 4 + 2 * rows * f.d_head * 4
    fused = 5 * rows * (f.d_head + 1) * 4
    return per_token + max(chunked, fused)


def check_sink_budget(model: HookedModel, batch: int, T: int, attention: str) -> None:
    """Refuse, before any forward pass, a sink report whose batch would not fit the memory budget."""
    need, budget = sink_memory_bytes(model, batch, T, attention), default_budget_bytes(model.device)
    if need <= budget:
        return
    gib = 2.0**30
    other = "" if attention == "fast" else " or attention='fast' (memory linear in T)"
    raise BudgetError(f"The sink report at T = {T}, {batch} sequences per batch, on the {attention} path needs about "
                      f"{need / gib:.2f} GiB but the budget is {budget / gib:.2f} GiB (half the free memory). "
                      f"Use a smaller batch size or T{other}.")


def alpha_from_statistics(model: HookedModel, ids: Int[Tensor, "b T"]) -> Float[Tensor, "b layer head T"]:
    """alpha for one batch through the statistics path: SDPA forward, no pattern (spec "Sink metric")."""
    from probes.attention_stats import alpha_from_received, received_for_batch

    received, windows = received_for_batch(model, ids)
    return alpha_from_received(received, torch.full((ids.shape[0],), ids.shape[1]), windows)


def alpha_by_batches(model: ModelLike, ids: Int[Tensor, "n T"], batch_size: int, reporter: Reporter | None,
                     label: str, attention: str) -> Float[Tensor, "n layer head T"]:
    """alpha of every sequence, a batch at a time, measured where the model runs (ModelLike.sink_alpha: here on
    the path `attention` names, attention_mode; remotely from the eager pattern inside the trace)."""
    return torch.cat(batches(ids, batch_size, lambda b: model.sink_alpha(b, attention), reporter, label))


def compute_sinks(
    model: ModelLike,
    ids: Int[Tensor, "n T"],
    eps: float = DEFAULT_EPS,
    prepend_bos: bool = False,
    regime: str = "natural",
    batch_size: int = 8,
    T: int | None = None,
    reporter: Reporter | None = None,
    attention: str = "fast",
) -> SinkResult:
    """Sink_k^eps, per-head and per-sample rates for sequences of exactly T tokens (spec "Sink metric").

    prepend_bos records whether the first of the T tokens is the BOS (as inputs_for_regime made
    them); it is checked against the ids. `reporter` (probes.progress) is updated after every batch and
    checked for a cancel before each (None: nothing shown; the CLI passes a terminal bar, the app its
    Streamlit bar). attention: "fast" (statistics under SDPA) or "patterns" (eager patterns); module docstring.
    The memory budget is checked before every batch (HookedModel.sink_alpha); a RemoteModel measures alpha
    inside its traces and checks its request budget instead.
    """
    eps = check_eps(eps)
    run = model.attention_run(attention)
    if regime not in REGIMES and regime != "custom":
        raise InputError(f"Unknown regime '{regime}'. Choose one of: {', '.join(REGIMES)} (or 'custom').")
    if batch_size < 1:
        raise InputError("batch_size must be at least 1.")
    ids = check_ids(model, ids, T)  # type: ignore[arg-type]
    starts_with_bos = first_is_bos(ids, model.facts.bos_token_id, prepend_bos)
    n = ids.shape[0]
    alpha = alpha_by_batches(model, ids, batch_size, reporter, f"sinks ({regime})", attention)
    settings = {"eps": eps, "regime": regime, "prepend_bos": prepend_bos, "n": n, "T": int(ids.shape[1]),
                "attention": run}
    return SinkResult(alpha=alpha, **sink_rates(alpha, eps), str_tokens=model.tokens_from_ids(ids).str_tokens,
                      ids=ids, eps=eps, regime=regime, prepend_bos=bool(prepend_bos), first_is_bos=starts_with_bos,
                      metadata=result_metadata(model, settings))


def sinks_by_regime(
    model: ModelLike, n: int = 100, T: int = 64, eps: float = DEFAULT_EPS, seed: int = 0,
    prepend_bos: bool | None = None, regimes: tuple[str, ...] = REGIMES, batch_size: int = 8,
    reporter: Reporter | None = None, attention: str = "fast",
) -> dict[str, SinkResult]:
    """compute_sinks for each input regime on freshly drawn inputs (the paper's three regimes).
    reporter (probes.progress): one equal share of the fraction per regime."""
    want_bos = model.facts.prepends_bos if prepend_bos is None else bool(prepend_bos)
    rep = reporter or NullReporter()
    out = {}
    for i, regime in enumerate(regimes):
        ids = inputs_for_regime(model, regime, n, T, seed=seed, prepend_bos=want_bos)  # type: ignore[arg-type]
        out[regime] = compute_sinks(model, ids, eps=eps, prepend_bos=want_bos, regime=regime, batch_size=batch_size,
                                    reporter=rep.part(i / len(regimes), (i + 1) / len(regimes)), attention=attention)
        out[regime].metadata["seed"] = seed
    return out

