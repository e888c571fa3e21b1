"""`HookedModel`: one copy of a causal LM's weights, seen through TransformerLens and nnsight.

Spec: docs/methods/embedded-model.md and docs/architecture.md ("one model interface").
Analyses take a HookedModel and ask it for what they need: tokens, canonical facts, canonical
weights (TransformerLens conventions, see probes/model/architecture.py), sub-modules, and hooked runs
through the TransformerLens bridge (`run_with_cache`, `run_with_hooks`, TL hook names).

Concurrency contract (docs/concurrency.md). One HookedModel may serve many callers at once (app
sessions, threads, a notebook with background work). Hooks attach to the shared module tree for
the length of a run, so every run that executes the model's modules holds the model's re-entrant
lock from the first hook attached to the last one removed: `forward`, `run_with_hooks`,
`run_with_cache`, `loss_per_token`, the module helpers (`apply_mlp`, `unembed`, ...), the `tl`
view's runs and `model.nnsight` traces all take it themselves; a multi-step section that calls
modules directly (a hand-written graph forward, say) wraps itself in `with model.exclusive():`.
A concurrent caller therefore never sees another call's hooks and gets exactly its serial result.
TransformerLens removes a run's hooks in a `finally`, so they come off when a run raises or is
interrupted. Runs are serialized, not parallel: the second caller waits for the first run (one
forward pass, not a whole analysis) to finish. Setting GLASSHOUSE_CHECK_ISOLATION=1 (the tests do)
makes any module that runs outside the lock while another thread holds it raise an
`IsolationError` instead of computing a silently wrong result.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from probes.errors import InputError, IsolationError
from probes.model.architecture import ArchAdapter, adapter_for, norm_eps
from probes.model.facts import ModelFacts, Sizes, read_facts
from probes.model.observed_attention import Observer
from probes.model.tokens import Tokens, TokenView

if TYPE_CHECKING:
    from probes.model.attention_edits import HeadEdit
    from probes.successor.in_context import PromptSet

P = ParamSpec("P")
R = TypeVar("R")


class _StopForward(Exception):
    """Raised by an observer after the last layer it needs, to skip the rest of the forward pass."""


def holds_model_lock(fn: Callable[P, R]) -> Callable[P, R]:
    """Run `fn` inside `exclusive()` of the HookedModel it works on: its first argument, or that
    argument's `.model` (a graph forward, say). For code that calls the model's modules directly."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        owner = args[0]
        model = owner if isinstance(owner, HookedModel) else owner.model  # type: ignore[attr-defined]
        with model.exclusive():
            return fn(*args, **kwargs)

    return run


class HookedModel(TokenView):
    """A loaded causal LM with a TransformerLens bridge and an nnsight view over the same weights."""

    def __init__(self, spec: str, source: str, hf_model: nn.Module, tokenizer: Any, bridge: Any) -> None:
        self.spec = spec
        self.source = source
        self.hf_model = hf_model
        self.tokenizer = tokenizer
        self.bridge = bridge
        self._lock = threading.RLock()
        self._traces = 0  # nnsight traces running; their intervention threads call modules legitimately
        cfg = bridge.cfg
        self.adapter: ArchAdapter = adapter_for(hf_model, cfg.n_heads, cfg.n_key_value_heads or cfg.n_heads, cfg.d_head)
        self.facts = self._read_facts()
        if os.environ.get("GLASSHOUSE_CHECK_ISOLATION", "") not in ("", "0"):
            self._install_isolation_check()

    # --- isolation ----------------------------------------------------------------------------
    @contextmanager
    def exclusive(self) -> Iterator[HookedModel]:
        """Hold this model's lock for a section that runs its modules (see the module docstring).

        Re-entrant: HookedModel's own runs inside the section take the same lock again freely.
        """
        with self._lock:
            yield self

    def _install_isolation_check(self) -> None:
        """Make every module raise if it runs outside the lock while another thread holds it."""
        lock = self._lock

        def check(module: nn.Module, args: Any) -> None:
            if self._traces or lock._is_owned():  # type: ignore[attr-defined]
                return
            if not lock.acquire(blocking=False):
                raise IsolationError(
                    f"A {type(module).__name__} of {self.spec} ran outside HookedModel.exclusive() while another "
                    "thread held the model: its result could include that thread's hooks. Run it through a "
                    "HookedModel method or inside `with model.exclusive():`."
                )
            lock.release()

        for module in self.hf_model.modules():
            module.register_forward_pre_hook(check)

    # --- facts ---------------------------------------------------------------------------
    def _read_facts(self) -> ModelFacts:
        cfg = self.bridge.cfg
        sizes = Sizes(n_layers=int(cfg.n_layers), n_heads=int(cfg.n_heads),
                      n_kv_heads=int(cfg.n_key_value_heads or cfg.n_heads), d_model=int(cfg.d_model),
                      d_head=int(cfg.d_head), d_mlp=int(cfg.d_mlp), n_ctx=int(cfg.n_ctx))
        return read_facts(self.spec, self.source, self.hf_model, self.tokenizer, self.adapter, sizes)

    @property
    def cfg(self) -> ModelFacts:
        return self.facts

    @property
    def device(self) -> torch.device:
        return next(self.hf_model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf_model.parameters()).dtype

    # --- views -----------------------------------------------------------------------------
    @cached_property
    def tl(self) -> Any:
        """The TransformerLens 4 `TransformerBridge` (TL hook names, run_with_cache, run_with_hooks).

        A view that holds this model's lock for each run (calls, `run_with_cache`, `run_with_hooks`,
        `generate`, and the whole `with model.tl.hooks(...):` block); everything else passes through.
        Hooks added permanently with `add_hook` stay on the shared model for every caller.
        """
        return LockedBridge(self.bridge, self._lock)

    @cached_property
    def nnsight(self) -> Any:
        """An nnsight `LanguageModel` wrapping the same module (no second copy of the weights).

        Each trace runs under this model's lock (its backend, where the model actually executes).
        """
        from probes.model.nnsight_view import isolated_language_model

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return isolated_language_model(self)

    @contextmanager
    def _trace_section(self) -> Iterator[None]:
        """The lock for an nnsight trace; its intervention threads may call modules meanwhile."""
        with self._lock:
            self._traces += 1
            try:
                yield
            finally:
                self._traces -= 1

    # --- runs --------------------------------------------------------------------------------
    def forward(self, tokens: Tokens | Int[Tensor, "batch pos"], attention: str = "fast",
                edits: Sequence[HeadEdit] = ()) -> Float[Tensor, "batch pos d_vocab"]:
        """Logits (equal to the HF model's). attention="fast" (default) runs the model's fast attention (SDPA,
        no pattern); "patterns" the bridge's eager attention. `edits` (probes.model.attention_edits) change
        chosen heads. Spec: docs/kernels.md ("Runs without patterns", "Interventions without the pattern")."""
        ids, mask = self._ids_and_mask(tokens)
        return self._logits(ids, mask, attention, edits)

    def _logits(self, ids: Tensor, mask: Tensor, attention: str, edits: Sequence[HeadEdit] = (),
                fwd_hooks: Sequence[Any] = ()) -> Tensor:
        """One forward pass under the model lock: fused/SDPA attention (with `edits` applied to their heads'
        outputs) when `attention` is "fast", no `fwd_hooks` are given and the model allows it; else eager, with
        `fwd_hooks` and the edits as pattern hooks."""
        from probes.model.attention_edits import as_pattern_hooks
        from probes.model.observed_attention import UnsupportedAttention, observing

        with self._lock, torch.no_grad():
            if not fwd_hooks and self.attention_path(attention, edits, mask) == "fast":
                try:
                    with observing(self.hf_model, None, edits=edits):
                        return self.bridge(ids, attention_mask=mask)
                except UnsupportedAttention:  # a family whose attention call the fast path cannot take
                    pass
            hooks = list(fwd_hooks) + as_pattern_hooks(edits)
            if hooks:
                return self.bridge.run_with_hooks(ids, attention_mask=mask, fwd_hooks=hooks)
            return self.bridge(ids, attention_mask=mask)

    def attention_path(self, attention: str = "fast", edits: Sequence[HeadEdit] = (),
                       mask: Tensor | None = None) -> str:
        """Which attention a hook-free run takes: "fast" (SDPA, or the CPU's fused op with its lse on edited
        layers) or "patterns" (eager). Edits run fast only on the CPU, on layers without a sliding window and
        without padding; soft-capped attention always runs eager, and so does any run while hooks are attached
        to the bridge (`add_hook`, a `with model.tl.hooks(...)` block): they may sit inside attention."""
        from probes.sinks import attention_mode

        if attention_mode(self, attention) == "patterns" or self._hooks_attached():
            return "patterns"
        if edits and (self.device.type != "cpu" or (mask is not None and not bool(mask.all()))
                      or any(self.attention_window(e.layer) for e in edits)):
            return "patterns"
        return "fast"

    def run_with_cache(self, tokens: Tokens | Int[Tensor, "batch pos"], **kwargs: Any) -> Any:
        """TransformerLens `run_with_cache` through the bridge (names_filter etc. pass through)."""
        ids, mask = self._ids_and_mask(tokens)
        with self._lock:
            return self.bridge.run_with_cache(ids, attention_mask=mask, **kwargs)

    def run_with_hooks(self, tokens: Tokens | Int[Tensor, "batch pos"], fwd_hooks: list[Any], **kwargs: Any) -> Any:
        """TransformerLens `run_with_hooks` through the bridge, with TL hook names."""
        ids, mask = self._ids_and_mask(tokens)
        with self._lock:
            return self.bridge.run_with_hooks(ids, attention_mask=mask, fwd_hooks=fwd_hooks, **kwargs)

    def run_observing_attention(
        self, tokens: Tokens | Int[Tensor, "batch pos"], observe: Observer, last_layer: int | None = None,
        lse: bool = False, residual: Callable[[int, Tensor], None] | None = None,
    ) -> str:
        """One forward pass of the HF model with its fast attention (SDPA: no T x T pattern is built in Python).

        observe(layer, q, k, v, scaling, lse) sees each layer's q [batch, head, pos, d_head] and k, v
        [batch, kv_head, pos, d_head] as the softmax reads them (after q/k norms and rotary, key-value heads
        not repeated); with `lse=True`, each query's log-sum-exp [batch, head, pos] where the fused CPU flash
        op computed the layer (else None; probes/model/observed_attention.py); the pass stops after `last_layer`.
        residual(layer, x) sees every layer's output x [batch, pos, d_model] (hook_resid_post's value; the
        last layer's is the final norm's input) on a whole pass (last_layer None). Returns the attention mode that ran ("sdpa"), for
        results' metadata. Holds the model lock. Spec: docs/kernels.md ("The statistics path").
        """
        from probes.model.observed_attention import FAST, UnsupportedAttention, observing

        ids, mask = self._ids_and_mask(tokens)

        def observe_then_stop(layer: int, q: Tensor, k: Tensor, v: Tensor, scaling: float | None,
                              lse_of_layer: Tensor | None) -> None:
            observe(layer, q, k, v, scaling, lse_of_layer)
            if layer == last_layer:
                raise _StopForward

        if residual is not None and last_layer is not None:
            raise ValueError("residual= needs the whole pass: leave last_layer None")
        last_input: list[Tensor] = []
        with self._lock, torch.no_grad(), observing(self.hf_model, observe_then_stop, lse):
            handle = (self.adapter.final_norm().register_forward_pre_hook(lambda m, args: last_input.append(args[0]))
                      if residual is not None else None)
            try:
                out = self.hf_model(input_ids=ids, attention_mask=mask, use_cache=False,
                                    output_hidden_states=residual is not None)
                if residual is not None:
                    for layer in range(self.facts.n_layers - 1):
                        residual(layer, out.hidden_states[layer + 1])
                    residual(self.facts.n_layers - 1, last_input[-1])
            except _StopForward:
                pass
            except UnsupportedAttention as exc:
                raise InputError(f"{self.spec} (family {self.facts.family}) cannot be observed through its fast "
                                 f"attention: {exc}. Use the pattern path (attention='patterns').") from exc
            finally:
                if handle is not None:
                    handle.remove()
        return FAST

    def _hooks_attached(self) -> bool:
        return any(hp.fwd_hooks for hp in self.bridge.hook_dict.values())  # TransformerLens hooks (add_hook)

    def loss_per_token(
        self, tokens: Tokens | Int[Tensor, "batch pos"], fwd_hooks: list[Any] | None = None,
        edits: Sequence[HeadEdit] = (), attention: str = "fast",
    ) -> Float[Tensor, "batch pos_minus_1"]:
        """Next-token cross-entropy at every position (NaN where the target is padding). `fwd_hooks` run on the
        bridge's eager attention; without them the run takes `attention` (forward), with `edits`
        (probes.model.attention_edits) applied to their heads."""
        ids, mask = self._ids_and_mask(tokens)
        logits = self._logits(ids, mask, attention, edits, fwd_hooks or ())
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        nll = -logp.gather(-1, ids[:, 1:, None].to(logp.device))[..., 0]
        valid = mask[:, 1:].to(nll.device).bool()
        return torch.where(valid, nll, torch.full_like(nll, float("nan")))

    def _ids_and_mask(self, tokens: Tokens | Tensor) -> tuple[Tensor, Tensor]:
        if isinstance(tokens, Tokens):
            ids, mask = tokens.ids, tokens.attention_mask
        else:
            ids = tokens if tokens.ndim == 2 else tokens[None]
            mask = torch.ones_like(ids)
        if ids.shape[-1] > self.facts.n_ctx:
            raise InputError(
                f"The input has {ids.shape[-1]} positions but {self.spec} takes at most {self.facts.n_ctx}."
            )
        return ids.to(self.device), mask.to(self.device)

    # --- sub-modules ---------------------------------------------------------------------------
    def check_layer(self, layer: int) -> int:
        if not -self.facts.n_layers <= layer < self.facts.n_layers:
            raise InputError(f"Layer {layer} is out of range: {self.spec} has layers 0..{self.facts.n_layers - 1}.")
        return layer % self.facts.n_layers

    def check_layers(self, layers: Sequence[int] | None) -> list[int]:
        """The asked-for layers, sorted and checked (None: every layer)."""
        if layers is None:
            return list(range(self.facts.n_layers))
        if not layers:
            raise InputError(f"Layers must be a non-empty list within 0..{self.facts.n_layers - 1}.")
        return sorted({self.check_layer(int(la)) for la in layers})

    # --- statistics-only measurements (ModelLike, probes/model/model_like.py) --------------------
    backend = "local"  # where the measurements run (RemoteModel: the nnsight backend)

    @property
    def measured_layers(self) -> list[int]:
        """The layers the measurements return, in order: every layer."""
        return list(range(self.facts.n_layers))

    def attention_run(self, attention: str = "fast") -> str:
        """The attention a measurement asked for `attention` runs, as results record it ("sdpa" or "eager")."""
        from probes.sinks import ATTENTION_RUN, attention_mode

        return ATTENTION_RUN[attention_mode(self, attention)]

    def residual_norms(self, ids: Int[Tensor, "batch pos"], dtype: torch.dtype | None = None,
                       zero: tuple[str, int] | None = None, attention: str = "fast") -> Float[Tensor, "batch layer pos"]:
        """||resid_post|| after every layer at every position (probes.quantities.residual_norm), with one
        layer's MLP or attention output set to zero when `zero` = ("mlp" | "attn", layer) names it. Runs the
        model's fast attention (the zeroing a forward hook on that module, under the model lock), or the
        bridge's hooks on eager attention where attention="patterns" or the model needs it."""
        from probes.extreme import COMPONENTS, resid_norms, zero_hooks
        from probes.quantities import residual_norm
        from probes.sinks import attention_mode

        if zero is not None and zero[0] not in COMPONENTS:
            raise InputError(f"Unknown component '{zero[0]}'. Choose 'mlp' or 'attn'.")
        if attention_mode(self, attention) == "patterns" or self._hooks_attached():
            hooks = zero_hooks(self, zero[0], [zero[1]]) if zero is not None else None
            return resid_norms(self, ids, hooks, batch_size=len(ids), dtype=dtype)
        got: dict[int, Tensor] = {}

        def zero_output(module: nn.Module, args: Any, output: Any) -> Any:
            if isinstance(output, tuple):
                return (torch.zeros_like(output[0]), *output[1:])
            return torch.zeros_like(output)

        with self._lock:
            handle = None
            if zero is not None:
                layer = self.check_layer(zero[1])
                module = self.adapter.mlp(layer) if zero[0] == "mlp" else self.adapter.attn(layer)
                handle = module.register_forward_hook(zero_output)
            try:
                self.run_observing_attention(ids, lambda *seen: None,
                                             residual=lambda layer, x: got.__setitem__(layer, residual_norm(x, dtype).cpu()))
            finally:
                if handle is not None:
                    handle.remove()
        return torch.stack([got[layer] for layer in range(self.facts.n_layers)], dim=1)

    def attention_on_first(self, ids: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch layer head pos"]:
        """Attention on key 0 of every query, from the statistics path (no T x T pattern; docs/kernels.md)."""
        from probes.attention_stats import attention_statistics

        return attention_statistics(self, ids, n_sink=1, batch_size=len(ids), outputs=False).sink[..., 0]

    def sink_alpha(self, ids: Int[Tensor, "batch pos"], attention: str = "fast"
                   ) -> Float[Tensor, "batch layer head pos"]:
        """alpha_k of the sink metric (probes.sinks): from the statistics path ("fast", unless the model needs
        patterns: probes.sinks.attention_mode) or eager patterns ("patterns"); the memory budget is checked first."""
        from probes.sinks import alpha_for_batch, alpha_from_statistics, attention_mode, check_sink_budget

        mode = attention_mode(self, attention)
        check_sink_budget(self, int(ids.shape[0]), int(ids.shape[1]), mode)
        return (alpha_from_statistics if mode == "fast" else alpha_for_batch)(self, ids)

    def head_statistics(self, ids: Int[Tensor, "batch pos"], attention: str = "fast"
                        ) -> dict[str, Float[Tensor, "batch layer head"]]:
        """Dormancy, row and column entropy of every sequence and head (probes.dormant.statistics_for_batch)."""
        from probes.dormant import statistics_for_batch

        return statistics_for_batch(self, ids, attention)

    def extreme_statistics(self, ids: Int[Tensor, "batch pos"], attention: str = "fast") -> dict[str, Tensor]:
        """Sink attention, value norms, residual norms and logit gaps of one batch: probes.extreme's
        measure_batch_fast (attention "fast", no pattern) or measure_batch (eager patterns in hooks)."""
        from probes.extreme import measure_batch, measure_batch_fast
        from probes.sinks import attention_mode

        if attention_mode(self, attention) == "fast":
            return measure_batch_fast(self, ids)
        return measure_batch(self, ids)

    def head_dla(self, prompts: PromptSet, batch_size: int = 16) -> dict[str, Tensor]:
        """Per-head DLA at each prompt's last token (probes.successor.in_context.head_dla)."""
        from probes.successor.in_context import head_dla

        return head_dla(self, prompts, batch_size)

    def check_head(self, head: int) -> int:
        if not 0 <= head < self.facts.n_heads:
            raise InputError(f"Head {head} is out of range: {self.spec} has heads 0..{self.facts.n_heads - 1}.")
        return head

    def kv_group(self, head: int) -> int:
        """The key/value group a query head reads (HF repeat_kv order)."""
        return self.check_head(head) // (self.facts.n_heads // self.facts.n_kv_heads)

    def apply_mlp(
        self, layer: int, x: Float[Tensor, "... d_model"], with_input_norm: bool = True
    ) -> Float[Tensor, "... d_model"]:
        """The layer's MLP (optionally behind its own input norm, and the post-MLP norm Gemma has)."""
        layer = self.check_layer(layer)
        with self._lock:
            h = self.adapter.mlp_in_norm(layer)(x) if with_input_norm else x
            out = self.adapter.mlp_forward(layer, h)
            post = self.adapter.mlp_out_norm(layer)
            return post(out) if post is not None else out

    def apply_final_norm(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        with self._lock:
            return self.adapter.final_norm()(x)

    def unembed(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
        with self._lock:
            return self.adapter.unembed()(x)

    def embed_tokens(self, ids: Int[Tensor, "..."]) -> Float[Tensor, "... d_model"]:
        """Token embeddings as the residual stream receives them (Gemma's sqrt(d_model) scale included)."""
        with self._lock:
            return self.adapter.embed()(ids.to(self.device)) * self.adapter.embed_scale()

    # --- canonical weights ---------------------------------------------------------------------
    def _stack(self, items: Sequence[Tensor | None]) -> Tensor | None:
        if any(t is None for t in items):
            return None
        return torch.stack([t for t in items if t is not None])

    @cached_property
    def _attn_weights(self) -> dict[str, Tensor | None]:
        a = self.adapter
        qs: list[Tensor | None] = []
        ks: list[Tensor | None] = []
        vs: list[Tensor | None] = []
        os_: list[Tensor | None] = []
        bqs: list[Tensor | None] = []
        bks: list[Tensor | None] = []
        bvs: list[Tensor | None] = []
        bos: list[Tensor | None] = []
        for layer in range(self.facts.n_layers):
            wq, wk, wv, bq, bk, bv = a.qkv(layer)
            wo, bo = a.o(layer)
            qs.append(wq)
            ks.append(a.expand_kv(wk))
            vs.append(a.expand_kv(wv))
            bqs.append(bq)
            bks.append(None if bk is None else a.expand_kv(bk))
            bvs.append(None if bv is None else a.expand_kv(bv))
            os_.append(wo)
            bos.append(bo)
        return {
            "W_Q": self._stack(qs),
            "W_K": self._stack(ks),
            "W_V": self._stack(vs),
            "b_Q": self._stack(bqs),
            "b_K": self._stack(bks),
            "b_V": self._stack(bvs),
            "W_O": self._stack(os_),
            "b_O": self._stack(bos),
        }

    @property
    def W_Q(self) -> Float[Tensor, "layer head d_model d_head"]:
        return self._attn_weights["W_Q"]  # type: ignore[return-value]

    @property
    def W_K(self) -> Float[Tensor, "layer head d_model d_head"]:
        """Key weights per query head (grouped-query heads expanded)."""
        return self._attn_weights["W_K"]  # type: ignore[return-value]

    @property
    def W_V(self) -> Float[Tensor, "layer head d_model d_head"]:
        """Value weights per query head (grouped-query heads expanded)."""
        return self._attn_weights["W_V"]  # type: ignore[return-value]

    @property
    def W_O(self) -> Float[Tensor, "layer head d_head d_model"]:
        return self._attn_weights["W_O"]  # type: ignore[return-value]

    @property
    def b_Q(self) -> Tensor | None:
        return self._attn_weights["b_Q"]

    @property
    def b_K(self) -> Tensor | None:
        return self._attn_weights["b_K"]

    @property
    def b_V(self) -> Tensor | None:
        return self._attn_weights["b_V"]

    @property
    def b_O(self) -> Tensor | None:
        return self._attn_weights["b_O"]

    @cached_property
    def _mlp_weights(self) -> dict[str, Tensor | None]:
        per_layer = [self.adapter.mlp_weights(layer) for layer in range(self.facts.n_layers)]
        return {key: self._stack([w[key] for w in per_layer]) for key in per_layer[0]}

    @property
    def W_in(self) -> Float[Tensor, "layer d_model d_mlp"]:
        return self._mlp_weights["W_in"]  # type: ignore[return-value]

    @property
    def W_gate(self) -> Tensor | None:
        return self._mlp_weights["W_gate"]

    @property
    def W_out(self) -> Float[Tensor, "layer d_mlp d_model"]:
        return self._mlp_weights["W_out"]  # type: ignore[return-value]

    @property
    def b_in(self) -> Tensor | None:
        return self._mlp_weights["b_in"]

    @property
    def b_out(self) -> Tensor | None:
        return self._mlp_weights["b_out"]

    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        return self.adapter.embed().weight.detach()

    @property
    def W_pos(self) -> Float[Tensor, "n_ctx d_model"] | None:
        return self.adapter.pos_weight()

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab"]:
        return self.adapter.unembed().weight.detach().T

    @property
    def b_U(self) -> Tensor | None:
        bias = getattr(self.adapter.unembed(), "bias", None)
        return None if bias is None else bias.detach()

    def norm_scales(self) -> dict[str, Tensor]:
        """Effective norm scales: ln1 (attention input), ln2 (MLP input) [layer, d_model], ln_final [d_model]."""
        a = self.adapter
        layers = range(self.facts.n_layers)
        return {
            "ln1": torch.stack([a.norm_scale(a.attn_in_norm(i)) for i in layers]),
            "ln2": torch.stack([a.norm_scale(a.mlp_in_norm(i)) for i in layers]),
            "ln_final": a.norm_scale(a.final_norm()),
        }

    def W_OV(self, layer: int, head: int) -> Float[Tensor, "d_model d_model"]:
        """The head's OV matrix W_V[h] @ W_O[h] (key/value group mapped for grouped-query heads)."""
        layer, head = self.check_layer(layer), self.check_head(head)
        return self.W_V[layer, head] @ self.W_O[layer, head]

    def __repr__(self) -> str:
        f = self.facts
        return (
            f"HookedModel({f.spec!r}: {f.architecture}, {f.n_layers} layers, {f.n_heads} heads "
            f"({f.n_kv_heads} kv), d_model {f.d_model}, {f.dtype} on {f.device})"
        )

    # --- architecture facts (windows, norms, residual layout; read through the adapter) --------------
    def attention_window(self, layer: int) -> int:
        """The layer's sliding window (0 = none): key j is visible from query i when 0 <= i - j < window."""
        return self.facts.sliding_windows[self.check_layer(layer)]

    def key_visible(self, layer: int, n_pos: int) -> Tensor:
        """[query, key] bool: causal, and inside the layer's sliding window when it has one."""
        i = torch.arange(n_pos)
        diff = i[:, None] - i[None, :]
        window = self.attention_window(layer)
        return (diff >= 0) & (diff < window) if window else diff >= 0

    @property
    def has_mid_residual(self) -> bool:
        """Whether blocks.{l}.hook_resid_mid exists (sequential blocks) or not (parallel attention and MLP)."""
        return not self.facts.parallel_residual

    def norm_eps(self, which: str = "final", layer: int = 0) -> float:
        """The epsilon of a norm, read from the module: which in final | attn_in | mlp_in | attn_out | mlp_out."""
        a = self.adapter
        modules = {"final": a.final_norm, "attn_in": a.attn_in_norm, "mlp_in": a.mlp_in_norm,
                   "attn_out": a.attn_out_norm, "mlp_out": a.mlp_out_norm}
        if which not in modules:
            raise InputError(f"Unknown norm '{which}'. Use one of {', '.join(modules)}.")
        module = modules[which]() if which == "final" else modules[which](self.check_layer(layer))  # type: ignore[operator]
        if module is None:
            raise InputError(f"{self.spec} ({self.facts.family}) has no {which} norm.")
        return norm_eps(module)

    def attn_in_norm(self, layer: int) -> Any:
        """The attention-input norm module of a layer (callable on [..., d_model])."""
        return self.adapter.attn_in_norm(self.check_layer(layer))

    def attn_out_norm(self, layer: int) -> Any:
        """Gemma's post-attention norm of a layer (on the sum of the heads), or None."""
        return self.adapter.attn_out_norm(self.check_layer(layer))

    def attn_out_norm_scale(self, layer: int) -> Tensor | None:
        """The effective scale of the post-attention norm (Gemma's 1 + w), or None without one."""
        norm = self.attn_out_norm(layer)
        return None if norm is None else self.adapter.norm_scale(norm)

    def qk_norms(self, layer: int) -> tuple[Any, Any]:
        """The norms applied to each query head and each key head after projection (or None, None)."""
        layer = self.check_layer(layer)
        return self.adapter.q_norm(layer), self.adapter.k_norm(layer)

    def apply_qk_norm(self, layer: int, x: Float[Tensor, "... head d_head"], which: str) -> Tensor:
        """The model's norm on each query ("q") or key ("k") head after projection; x unchanged without one
        (and for "v"). x holds every query head: grouped per-head norms (StableLM) are mapped to them."""
        if which not in ("q", "k", "v"):
            raise InputError(f"Unknown projection '{which}'. Use q, k or v.")
        if which == "v":
            return x
        with self._lock:
            return self.adapter.apply_head_norm(self.check_layer(layer), x, which)

    @property
    def attn_scores_are_pattern(self) -> bool:
        """Whether the bridge's `attn.hook_attn_scores` carries the softmax output instead of the logits
        (OPT; found by comparing softmax(scores) with hook_pattern)."""
        return bool(self.adapter.scores_hook_is_pattern)

    def hook_names(self) -> frozenset[str]:
        """Every TransformerLens hook name this model's bridge offers (blocks.{l}.attn.hook_pattern, ...)."""
        return frozenset(self.bridge.hook_dict)

    def attn_scale(self, layer: int) -> float:
        """The factor on q.k before the softmax."""
        return self.adapter.attn_scale(self.check_layer(layer))

    def rotary_cos_sin(self, n_pos: int, like: Tensor) -> tuple[Tensor, Tensor] | None:
        """cos, sin [n_pos, rotary_dim] of the model's rotary embedding (rotary_dim < d_head for partial
        rotary: the first rotary_dim features of each head rotate), or None for learned positions."""
        rot = self.adapter.rotary()
        if rot is None:
            return None
        ids = torch.arange(n_pos, device=like.device)[None]
        with self._lock:
            cos, sin = rot(like, ids)
        return cos[0], sin[0]

    def position_embeddings(self, n_pos: int) -> Tensor | None:
        """The learned position vectors added at positions 0..n_pos-1 [n_pos, d_model], or None."""
        w = self.W_pos
        return None if w is None else w[:n_pos].to(self.device)

    def reference_logits(self, ids: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_vocab"]:
        """The HF model's own forward on unpadded ids, no hooks (what re-implementations check themselves against)."""
        with self._lock, torch.no_grad():
            return self.hf_model(ids.to(self.device)).logits


class LockedBridge:
    """A TransformerBridge whose runs hold a lock (see HookedModel.tl); all else passes through."""

    _RUNS = frozenset({"forward", "run_with_cache", "run_with_hooks", "generate", "loss"})

    def __init__(self, bridge: Any, lock: Any) -> None:
        object.__setattr__(self, "_bridge", bridge)
        object.__setattr__(self, "_lock", lock)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._bridge(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._bridge, name)
        if name in self._RUNS and callable(attr):
            return self._locked(attr)
        if name == "hooks":
            return self._locked_context(attr)
        return attr

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._bridge, name, value)

    def __dir__(self) -> list[str]:
        return dir(self._bridge)

    def __repr__(self) -> str:
        return f"LockedBridge({self._bridge!r})"

    def _locked(self, fn: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return fn(*args, **kwargs)

        return run

    def _locked_context(self, hooks: Any) -> Any:
        @contextmanager
        def locked_hooks(*args: Any, **kwargs: Any) -> Iterator[Any]:
            with self._lock, hooks(*args, **kwargs) as bridge:
                yield bridge

        return locked_hooks
