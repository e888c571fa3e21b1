"""The remote model (nnsight / NDIF): the statistics measurements run inside traces; only statistics come back.

Spec: docs/remote.md; docs/methods/attention-sinks.md (sink metric, hidden sinks), extreme-tokens.md (per-token
measurements, active-dormant heads, the peak ablation), successor-heads.md (in-context DLA).
Each `trace_*` function runs one nnsight trace over one chunk of sequences and `.save()`s only its
statistic(s), reduced inside the trace by the same functions the local analyses use
(probes.sinks.alpha_from_pattern, probes.dormant.HEAD_STATISTICS, probes.extreme.value_norms,
sink_attention). nnsight ships those functions' source by value, so the server needs nothing of
Glasshouse. `RemoteModel` offers them as the ModelLike measurements (one request each, checked against the
request budget, probes.remote_budget), so the analyses themselves (probes.sinks.compute_sinks,
probes.dormant.dormant_heads, probes.extreme.extreme_tokens and peak_ablation, probes.successor.in_context)
run unchanged on it: there is no second, remote copy of an analysis.

`model` is a `RemoteModel`: an nnsight LanguageModel (`probes.model.backends.ndif_model(repo)` for NDIF, or
a HookedModel's `.nnsight` for the `ndif-local` simulation) with the facts the input builders need.
`remote`: False (run here), "local" (nnsight's serverless simulation) or True (NDIF).

Module paths (the decoder layers, their attention, the final norm, the unembedding) come from the
architecture table (probes.model.architecture.module_paths), read outside the traces. Attention patterns
are the attention modules' second output, which HF returns under eager attention only. Value norms and
the DLA read the attention's `v_proj` / `o_proj` of Llama-style models (Llama, Mistral, Qwen2, Qwen3,
SmolLM2: the table's `llama_style`); other layouts are refused with a clear error. The tensor math
after the trace (hidden sinks, the peak ablation's layer choice) and inside it (the frozen-norm DLA,
probes.quantities) is the local analyses' own.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from probes.dormant import HEAD_STATISTICS
from probes.errors import InputError
from probes.extreme import COMPONENTS, logit_gap, sink_attention, value_norms
from probes.model.facts import ModelFacts
from probes.model.nnsight_view import config_facts, nnsight_facts
from probes.model.tokens import TokenView
from probes.quantities import (
    apply_frozen_norm,
    attention_on_first,
    dla_directions,
    frozen_norm_scale,
    head_write,
    residual_norm,
)
from probes.remote import remote_paths
from probes.remote_budget import RequestBudget, RequestPlan, check_budget
from probes.sinks import ATTENTION_MODES, alpha_from_pattern
from probes.successor.in_context import PromptSet

# The modules whose functions run inside the traces. nnsight ships by value only modules that are not
# installed (pull_env); Glasshouse is installed, so without this the server (and the ndif-local
# simulation, which hides our modules) would fail to import them.
# probes.model.nnsight_view: a HookedModel's `.nnsight` class travels with the tracer (ndif-local, intercepted requests).
SHIPPED_MODULES = ("probes.remote_analyses", "probes.sinks", "probes.dormant", "probes.extreme", "probes.quantities",
                   "probes.errors", "probes.model.nnsight_view")  # probes.quantities: also the DLA math


def ship_by_value() -> None:
    """Register SHIPPED_MODULES with nnsight for serialization by value (idempotent)."""
    import nnsight

    for name in SHIPPED_MODULES:
        nnsight.register(name)


class RemoteModel(TokenView):
    """An nnsight LanguageModel with the facts and token helpers of a HookedModel (docs/remote.md).

    It satisfies ModelLike (probes/model/model_like.py): its measurements run nnsight traces where `remote`
    says (False: here; "local": nnsight's serverless simulation; True: NDIF) and bring back statistics only.
    Each measurement is one request; its size is checked against `budget` (probes.remote_budget) before it is
    sent. `layers`: the layers the attention measurements (alpha, head statistics, extreme tokens, DLA) read
    (default all; fewer layers, smaller responses); residual norms always cover every layer.
    """

    def __init__(self, lm: Any, spec: str | None = None, remote: bool | str = False,
                 layers: Sequence[int] | None = None, budget: RequestBudget | None = None) -> None:
        self.lm = lm
        self.remote = remote
        self.budget = budget
        self.tokenizer = lm.tokenizer
        c = config_facts(lm)
        self.spec = spec or c["name"]
        self.norm_eps = c["norm_eps"]  # the final norm's epsilon (the DLA's frozen norm)
        self.facts: ModelFacts = nnsight_facts(lm, self.spec)  # the HookedModel's record, read from the modules
        self.paths = remote_paths(lm)
        self.path, self.attn = self.paths.layers, self.paths.attn
        self.layers = self.check_layers(layers)

    @property
    def backend(self) -> str:
        """Where the measurements run: "nnsight (here)", "ndif-local" or "ndif"."""
        return {False: "nnsight (here)", "local": "ndif-local", True: "ndif"}.get(self.remote, str(self.remote))

    @property
    def measured_layers(self) -> list[int]:
        return list(self.layers)

    def check_layers(self, layers: Sequence[int] | None) -> list[int]:
        n = self.facts.n_layers
        if layers is None:
            return list(range(n))
        bad = [la for la in layers if not -n <= la < n]
        if bad or not layers:
            raise InputError(f"Layers must be a non-empty list within 0..{n - 1} (got {list(layers)}).")
        return sorted(set(int(la) % n for la in layers))

    def attention_run(self, attention: str = "fast") -> str:
        """Remote measurements read the eager pattern inside the trace, whatever `attention` asks for."""
        check_attention(attention)
        return "eager"

    # --- statistics-only measurements (ModelLike): one request each, checked against the budget -------
    def residual_norms(self, ids: Int[Tensor, "batch pos"], dtype: torch.dtype | None = None,
                       zero: tuple[str, int] | None = None, attention: str = "fast") -> Float[Tensor, "batch layer pos"]:
        """||resid_post|| after every layer at every position, computed inside the trace, with one layer's MLP or
        attention output zeroed there when `zero` = ("mlp" | "attn", layer) names it (`attention` is checked;
        the trace runs whatever attention the served model has)."""
        check_attention(attention)
        if zero is not None:
            if zero[0] not in COMPONENTS:
                raise InputError(f"Unknown component '{zero[0]}'. Choose 'mlp' or 'attn'.")
            self.check_layers([zero[1]])
        b, L = len(ids), self.facts.n_layers
        check_budget(RequestPlan("residual norms", 1, b, ids.shape[1], L, {"norms": (b, L, ids.shape[1])},
                                 {"norms"}), self.budget)
        return trace_residual_norms(self, ids, dtype or torch.float32, zero, self.remote)

    def attention_on_first(self, ids: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch layer head pos"]:
        """Attention on key 0 of every query, read off the eager pattern inside the trace (every layer)."""
        return trace_attention_on_first(self, ids, self.remote)

    def sink_alpha(self, ids: Int[Tensor, "batch pos"], attention: str = "fast"
                   ) -> Float[Tensor, "batch layer head pos"]:
        """alpha_k of the sink metric, from the eager pattern inside the trace (trace_alpha)."""
        check_attention(attention)
        check_budget(sink_plan(self, len(ids), ids.shape[1], len(self.layers), len(ids)), self.budget)
        return trace_alpha(self, ids, self.layers, self.remote)

    def head_statistics(self, ids: Int[Tensor, "batch pos"], attention: str = "fast"
                        ) -> dict[str, Float[Tensor, "batch layer head"]]:
        """Dormancy, row and column entropy of every sequence and head, reduced inside the trace."""
        check_attention(attention)
        check_budget(head_stats_plan(self, len(ids), ids.shape[1], len(self.layers), len(ids)), self.budget)
        stats = trace_head_statistics(self, ids, self.layers, self.remote)
        return {name: stats[k] for k, name in enumerate(HEAD_STATISTICS)}

    def extreme_statistics(self, ids: Int[Tensor, "batch pos"], attention: str = "fast") -> dict[str, Tensor]:
        """The extreme-token measurements, reduced inside the trace (trace_extreme; eager patterns whatever
        `attention` says). The logit gap is computed from log A (the log-normalizer cancels): the local gap of
        the logits up to float rounding."""
        check_attention(attention)
        self.require_llama_style("extreme-token statistics")
        check_budget(extreme_plan(self, len(ids), ids.shape[1], len(self.layers), len(ids)), self.budget)
        return trace_extreme(self, ids, self.layers, self.remote)

    def head_dla(self, prompts: PromptSet, batch_size: int = 16) -> dict[str, Tensor]:
        """probes.successor.in_context.head_dla in one nnsight trace over the prompt set (batch_size unused):
        correct [p, L, H], per_t [p, L, H, |T|], col [p], logit_diff [p], top1 [p], logits_on_targets [p, |T|]."""
        self.require_llama_style("direct logit attribution")
        tokens = self.tokens_from_ids(prompts.rows)
        last = torch.tensor(tokens.lengths) - 1
        t_set = torch.tensor(prompts.target_set)
        p, T = len(prompts.rows), tokens.ids.shape[1]
        check_budget(RequestPlan("successor DLA", 1, p, T, len(self.layers),
                                 {"dla": (p, len(self.layers), self.facts.n_heads, len(t_set)),
                                  "logits": (p, len(t_set) + 1)}, {"dla", "logits"}, extra_payload_bytes=p * T * 8),
                     self.budget)
        got = trace_dla(self, tokens.ids, tokens.attention_mask, last, t_set, self.layers, self.remote)
        col = torch.tensor([prompts.target_set.index(t) for t in prompts.targets])
        per_t, logits_t = got["dla"], got["logits"][:, :-1]
        return {"correct": per_t[torch.arange(p), :, :, col], "per_t": per_t, "col": col,
                "logit_diff": logits_t[torch.arange(p), col] - logits_t.mean(dim=1),
                "top1": got["logits"][:, -1].long(), "logits_on_targets": logits_t}

    def require_llama_style(self, what: str) -> None:
        if not self.paths.llama_style:
            raise InputError(f"The remote {what} reads self_attn.v_proj/o_proj of Llama-style models (Llama, Mistral, "
                             f"Qwen2, Qwen3, SmolLM2); {self.spec} is {self.paths.architecture} (family "
                             f"'{self.paths.family}'). Run it with --backend local.")


def check_attention(attention: str) -> None:
    if attention not in ATTENTION_MODES:
        raise InputError(f"Unknown attention mode '{attention}'. Choose one of: {', '.join(ATTENTION_MODES)}.")


class _HeadWeights:
    """What probes.extreme.value_norms reads of a model: facts.n_heads and W_O[layer] [head, d_head, d_model]."""

    def __init__(self, n_heads: int, layer: int, w_o: Tensor) -> None:
        self.facts = SimpleNamespace(n_heads=n_heads)
        self.W_O = {layer: w_o}


def _blocks(lm: Any, path: str) -> Any:
    for part in path.split("."):
        lm = getattr(lm, part)
    return lm


# --- traces: one chunk each, only statistics saved ----------------------------------------------------


def trace_alpha(model: RemoteModel, ids: Int[Tensor, "b T"], layers: list[int], remote: bool | str = False
                ) -> Float[Tensor, "b layer head T"]:
    """alpha[b, layer, head, k] (spec "Sink metric") of the given layers, reduced inside the trace."""
    ship_by_value()
    lm, path, attn = model.lm, model.path, model.attn
    with lm.trace(ids, remote=remote):
        blocks = _blocks(lm, path)
        rows = []
        for i in layers:
            rows.append(alpha_from_pattern(getattr(blocks[i], attn).output[1].detach()))
        alpha = torch.stack(rows, dim=1).cpu().save()  # type: ignore[attr-defined]
    return alpha


def trace_attention_on_first(model: RemoteModel, ids: Int[Tensor, "b T"], remote: bool | str = False
                             ) -> Float[Tensor, "b layer head T"]:
    """A[b, layer, head, q, 0] of every layer (probes.quantities.attention_on_first inside the trace)."""
    ship_by_value()
    lm, path, attn, n_layers = model.lm, model.path, model.attn, model.facts.n_layers
    with lm.trace(ids, remote=remote):
        blocks = _blocks(lm, path)
        rows = [attention_on_first(getattr(blocks[i], attn).output[1].detach()).float() for i in range(n_layers)]
        on_first = torch.stack(rows, dim=1).cpu().save()  # type: ignore[attr-defined]
    return on_first


def trace_head_statistics(model: RemoteModel, ids: Int[Tensor, "b T"], layers: list[int],
                          remote: bool | str = False) -> Float[Tensor, "stat b layer head"]:
    """probes.dormant.HEAD_STATISTICS (dormancy, row/column entropy) of every sequence, reduced in the trace."""
    ship_by_value()
    lm, path, attn = model.lm, model.path, model.attn
    stat_fns = list(HEAD_STATISTICS.values())
    with lm.trace(ids, remote=remote):
        blocks = _blocks(lm, path)
        rows = []
        for i in layers:
            p = getattr(blocks[i], attn).output[1].detach()
            rows.append(torch.stack([fn(p) for fn in stat_fns]))  # [stat, b, head]
        stats = torch.stack(rows, dim=2).cpu().save()  # type: ignore[attr-defined]
    return stats


def trace_extreme(model: RemoteModel, ids: Int[Tensor, "b T"], layers: list[int], remote: bool | str = False
                  ) -> dict[str, Tensor]:
    """Per-token extreme-token statistics (probes/extreme.py): sink attention [b, L, H], value norms
    [b, L, H, T], residual norms [b, L, T] and the logit gap from log A [b, L, H, T]."""
    f = model.facts
    ship_by_value()
    lm, path, attn = model.lm, model.path, model.attn
    n_heads, n_kv, d_head, d_model = f.n_heads, f.n_kv_heads, f.d_head, f.d_model
    with lm.trace(ids, remote=remote):
        blocks = _blocks(lm, path)
        sinks, values, resids, gaps = [], [], [], []
        for i in layers:
            a = getattr(blocks[i], attn)
            v = a.v_proj.output.detach()
            v = v.reshape(v.shape[0], v.shape[1], n_kv, d_head)
            w_o = a.o_proj.weight.detach().T.reshape(n_heads, d_head, d_model)
            values.append(value_norms(_HeadWeights(n_heads, i, w_o), i, v))  # type: ignore[arg-type]
            p = a.output[1].detach()
            sinks.append(sink_attention(p))
            gaps.append(logit_gap(p.float().clamp_min(1e-38).log()))
            out = blocks[i].output
            hidden = out[0] if isinstance(out, tuple) else out
            resids.append(residual_norm(hidden))
        sink = torch.stack(sinks, dim=1).cpu().save()  # type: ignore[attr-defined]
        value = torch.stack(values, dim=1).cpu().save()  # type: ignore[attr-defined]
        resid = torch.stack(resids, dim=1).cpu().save()  # type: ignore[attr-defined]
        gap = torch.stack(gaps, dim=1).cpu().save()  # type: ignore[attr-defined]
    return {"sink": sink, "value": value, "resid": resid, "gap": gap}


def trace_residual_norms(model: RemoteModel, ids: Int[Tensor, "b T"], dtype: torch.dtype,
                         zero: tuple[str, int] | None = None, remote: bool | str = False) -> Float[Tensor, "b layer T"]:
    """||resid_post[l, k]|| [b, layer, T] of every layer (probes.quantities.residual_norm inside the trace),
    optionally with one layer's MLP ("mlp") or attention ("attn") output set to zero there (probes.extreme's
    zero_hooks as an nnsight intervention)."""
    ship_by_value()
    lm, path, attn = model.lm, model.path, model.attn
    n_layers = model.facts.n_layers
    component, at = zero if zero is not None else ("", -1)
    with lm.trace(ids, remote=remote):
        blocks = _blocks(lm, path)
        rows = []
        for i in range(n_layers):
            if i == at and component == "mlp":
                blocks[i].mlp.output[:] = 0
            if i == at and component == "attn":
                getattr(blocks[i], attn).output[0][:] = 0
            out = blocks[i].output
            hidden = out[0] if isinstance(out, tuple) else out
            rows.append(residual_norm(hidden, dtype))
        norms = torch.stack(rows, dim=1).cpu().save()  # type: ignore[attr-defined]
    return norms


def trace_dla(model: RemoteModel, ids: Int[Tensor, "p T"], mask: Int[Tensor, "p T"], last: Int[Tensor, " p"],
              target_set: Int[Tensor, " t"], layers: list[int], remote: bool | str = False) -> dict[str, Tensor]:
    """Per-head DLA at each prompt's last token to every target of the task's set [p, L, H, |T|], and the
    logits there on the target set plus the top-1 token over the vocabulary [p, |T| + 1].

    The definition of probes/successor/in_context.py for RMSNorm models without a post-attention norm:
    head_out = z_h W_O[h]; the final norm frozen at the clean final residual x (w_f c / sqrt(mean(x^2) + eps));
    DLA = final(head_out) . (W_U[:, t] - mean_T W_U).
    """
    f = model.facts
    ship_by_value()
    lm, path, attn = model.lm, model.path, model.attn
    norm_path, unembed_path = model.paths.final_norm, model.paths.unembed
    n_heads, d_head, d_model, eps = f.n_heads, f.d_head, f.d_model, model.norm_eps
    ar = torch.arange(ids.shape[0])
    with lm.trace(ids, attention_mask=mask, remote=remote):
        blocks = _blocks(lm, path)
        writes = []
        for i in layers:
            a = getattr(blocks[i], attn)
            z = a.o_proj.input.detach()[ar, last].float().reshape(len(ar), n_heads, d_head)
            w_o = a.o_proj.weight.detach().float().T.reshape(n_heads, d_head, d_model)
            writes.append(head_write(z, w_o))
        final_norm = _blocks(lm, norm_path)
        scale = frozen_norm_scale(final_norm.input.detach()[ar, last], eps, False)
        normed = apply_frozen_norm(torch.stack(writes, dim=1), scale, final_norm.weight.detach().float(), False)
        w_u = _blocks(lm, unembed_path).weight.detach().float()[target_set]  # [|T|, d_model]
        dla = (normed @ dla_directions(w_u).T).cpu().save()  # type: ignore[attr-defined]
        logits = lm.output.logits.detach()[ar, last].float()
        picked = torch.cat([logits[:, target_set], logits.argmax(dim=-1, keepdim=True).float()], dim=-1)
        logit_stats = picked.cpu().save()  # type: ignore[attr-defined]
    return {"dla": dla, "logits": logit_stats}


# --- budgets ---------------------------------------------------------------------------------------


def sink_plan(model: RemoteModel, n: int, T: int, layers: int, batch: int) -> RequestPlan:
    b = min(batch, n)
    return RequestPlan("sink alpha", -(-n // batch), b, T, layers,
                       {"alpha": (b, layers, model.facts.n_heads, T)}, {"alpha"})


def extreme_plan(model: RemoteModel, n: int, T: int, layers: int, batch: int) -> RequestPlan:
    b, H = min(batch, n), model.facts.n_heads
    saved = {"sink": (b, layers, H), "value": (b, layers, H, T), "resid": (b, layers, T), "gap": (b, layers, H, T)}
    return RequestPlan("extreme tokens", -(-n // batch), b, T, layers, saved, set(saved))


def head_stats_plan(model: RemoteModel, n: int, T: int, layers: int, batch: int) -> RequestPlan:
    b = min(batch, n)
    return RequestPlan("head statistics", -(-n // batch), b, T, layers,
                       {"stats": (len(HEAD_STATISTICS), b, layers, model.facts.n_heads)})
