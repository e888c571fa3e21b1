"""`capture(model, prompts, what=[...])`: activations and attention under a memory budget.

Spec: docs/architecture.md (the capture layer). Shapes (every tensor on the CPU, fp32):
- resid_pre / resid_mid / resid_post / attn_out / mlp_out: [batch, layer, pos, d_model]
- pattern / scores (pre-softmax logits): [batch, layer, head, query_pos, key_pos]
- q / k / v / z: [batch, layer, pos, head, d_head]. q and k are taken after rotary (what the
  score reads) where the bridge fires hook_rot_q/k, else from hook_q/k (GPT-NeoX: before its
  partial rotary); `CaptureResult.sources` says which. k and v are given per query head
  (grouped-query heads expanded).
- head_out: [batch, layer, pos, head, d_model] = z[..., h, :] @ W_O[h] (before Gemma's post-attention norm).
- logits: [batch, pos, d_vocab]
Prompts are right-padded; `CaptureResult.tokens.attention_mask` marks the real positions.
Values at padded positions are whatever the model computed there: mask them.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil
import torch
from jaxtyping import Int
from torch import Tensor

from probes.errors import BudgetError, InputError
from probes.model.hooked_model import HookedModel, Tokens
from probes.progress import Reporter, as_reporter

RESID_LIKE = {"resid_pre": "hook_resid_pre", "resid_mid": "hook_resid_mid", "resid_post": "hook_resid_post",
              "attn_out": "hook_attn_out", "mlp_out": "hook_mlp_out"}
HEAD_MAPS = {"pattern": "attn.hook_pattern", "scores": "attn.hook_attn_scores"}
HEAD_VECTORS = {"q": ("attn.hook_rot_q", "attn.hook_q"), "k": ("attn.hook_rot_k", "attn.hook_k"),
                "v": ("attn.hook_v",), "z": ("attn.hook_z",)}
KNOWN = [*RESID_LIKE, *HEAD_MAPS, *HEAD_VECTORS, "head_out", "logits"]
BYTES = 4  # captures are stored in fp32


@dataclass
class CaptureResult:
    """Captured tensors keyed by name, with the tokens, layers and heads they cover."""

    tokens: Tokens
    layers: list[int]
    heads: list[int]
    tensors: dict[str, Tensor] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # head-vector target -> the TL hook it came from

    def __getitem__(self, name: str) -> Tensor:
        if name not in self.tensors:
            raise InputError(f"'{name}' was not captured; captured: {sorted(self.tensors)}. Add it to what=[...].")
        return self.tensors[name]

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    @property
    def mask(self) -> Int[Tensor, "batch pos"]:
        return self.tokens.attention_mask


def as_tokens(model: HookedModel, prompts: Any, prepend_bos: bool | None) -> Tokens:
    """Prompts (a string, strings, a Tokens batch, a tensor or rows of ids) as one Tokens batch."""
    if isinstance(prompts, Tokens):
        return prompts
    if isinstance(prompts, Tensor):
        return model.tokens_from_ids(prompts, prepend_bos=bool(prepend_bos))
    if isinstance(prompts, str) or (isinstance(prompts, Sequence) and all(isinstance(p, str) for p in prompts)):
        return model.to_tokens(prompts, prepend_bos=prepend_bos)
    if isinstance(prompts, Sequence):
        return model.tokens_from_ids(prompts, prepend_bos=bool(prepend_bos))
    raise InputError("prompts must be a string, a list of strings, a Tokens batch or a tensor of token ids.")


def _check_what(what: Sequence[str]) -> list[str]:
    if not isinstance(what, str | Sequence):
        raise InputError(f"what= must be a target name or a list of them (got {what!r}). Choose from: {', '.join(KNOWN)}.")
    names = [what] if isinstance(what, str) else list(what)
    unknown = [w for w in names if not isinstance(w, str) or w not in KNOWN]
    if unknown or not names:
        raise InputError(f"Unknown capture target(s) {unknown or names}. Choose from: {', '.join(KNOWN)}.")
    return names


def _as_int(value: Any) -> int | None:
    """An int (numpy and torch integer scalars included), or None; bools are not indices."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _check_index(values: Sequence[int] | int | None, n: int, label: str) -> list[int]:
    if values is None:
        return list(range(n))
    if isinstance(values, Tensor):
        values = values.flatten().tolist()
    if _as_int(values) is not None:
        values = [values]  # type: ignore[list-item]
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise InputError(f"{label}s= must be an int or a list of ints (got {values!r}); e.g. {label}s=[0, 5], "
                         f"or leave it out for all {n}.")
    if not values:
        raise InputError(f"{label}s=[] selects nothing; give at least one {label} in 0..{n - 1}, or leave it out "
                         f"for all {n}.")
    wrong = [v for v in values if _as_int(v) is None]
    if wrong:
        raise InputError(f"{label}s= must hold ints; got {wrong!r}. Write {label}s=[0, 5], not strings or floats.")
    items = [int(v) for v in values]
    bad = [v for v in items if not -n <= v < n]
    if bad:
        raise InputError(f"{label} {bad} out of range: the model has {label}s 0..{n - 1}.")
    return [v % n for v in items]


def estimate_capture_bytes(
    model: HookedModel, n_prompts: int, seq_len: int, what: Sequence[str], n_layers: int, n_heads: int,
    batch_size: int,
) -> dict[str, int]:
    """Bytes each capture target will hold, plus the transient bytes of one batch's forward pass."""
    f = model.facts
    sizes: dict[str, int] = {}
    for w in _check_what(what):
        if w in RESID_LIKE:
            n = n_prompts * n_layers * seq_len * f.d_model
        elif w in HEAD_MAPS:
            n = n_prompts * n_layers * n_heads * seq_len * seq_len
        elif w in HEAD_VECTORS:
            n = n_prompts * n_layers * seq_len * n_heads * f.d_head
        elif w == "head_out":
            n = n_prompts * n_layers * seq_len * n_heads * f.d_model
        else:  # logits
            n = n_prompts * seq_len * f.d_vocab
        sizes[w] = n * BYTES
    b = min(batch_size, n_prompts)
    # one forward: logits, eager scores + pattern of one layer, and the per-batch copy of the captures
    transient = b * seq_len * f.d_vocab * 4 + 3 * b * f.n_heads * seq_len * seq_len * 4
    transient += sum(sizes.values()) * b // max(n_prompts, 1)
    sizes["forward (per batch)"] = transient
    return sizes


def default_budget_bytes(device: torch.device) -> int:
    """Half the free RAM, or 80% of the free GPU memory for a CUDA model, whichever binds first."""
    budget = int(psutil.virtual_memory().available * 0.5)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = min(budget, int(free * 0.8))
    return budget


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def capture(
    model: HookedModel,
    prompts: str | Sequence[str] | Sequence[Sequence[int]] | Tokens | Tensor,
    what: Sequence[str] = ("resid_post",),
    layers: Sequence[int] | int | None = None,
    heads: Sequence[int] | int | None = None,
    prepend_bos: bool | None = None,
    batch_size: int = 8,
    budget_bytes: int | None = None,
    progress: bool = False,
    reporter: Reporter | None = None,
) -> CaptureResult:
    """Run the model over prompts and keep the asked-for activations (see the module docstring).

    reporter (probes.progress): updated after every batch, checked for a cancel before each; `progress`
    without one shows a terminal bar.

    Refuses, before running anything, a capture whose estimated size exceeds `budget_bytes`
    (default: half the free RAM; 80% of free GPU memory for CUDA models).
    """
    names = _check_what(what)
    tokens = as_tokens(model, prompts, prepend_bos)
    f = model.facts
    layer_ids = _check_index(layers, f.n_layers, "layer")
    head_ids = _check_index(heads, f.n_heads, "head")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an int >= 1 (got {batch_size!r}).")
    n, seq = tokens.ids.shape
    sizes = estimate_capture_bytes(model, n, seq, names, len(layer_ids), len(head_ids), batch_size)
    budget = default_budget_bytes(model.device) if budget_bytes is None else int(budget_bytes)
    total = sum(sizes.values())
    if total > budget:
        detail = ", ".join(f"{k} {_gib(v)}" for k, v in sizes.items())
        raise BudgetError(
            f"This capture needs about {_gib(total)} ({detail}) but the budget is {_gib(budget)}. "
            "Reduce it: fewer prompts or a smaller batch_size, fewer layers=/heads=, fewer targets in what=, "
            "shorter prompts (patterns grow with length squared); or pass budget_bytes= to raise the budget."
        )
    if "scores" in names and model.attn_scores_are_pattern:
        raise InputError(
            f"The TransformerLens bridge gives no attention logits for {model.facts.family} models (its "
            "hook_attn_scores holds the softmax output). Capture 'pattern' instead: log(pattern) equals the "
            "logits up to a per-query constant, which cancels in logit differences."
        )
    hook_names = _hook_plan(model, names, layer_ids)
    sources: dict[str, str] = {}
    out: dict[str, Tensor] = {}
    starts = range(0, n, batch_size)
    rep = as_reporter(reporter, progress, "capture")
    for done, start in enumerate(starts, start=1):
        rep.check()
        batch = Tokens(tokens.ids[start : start + batch_size], tokens.attention_mask[start : start + batch_size],
                       tokens.str_tokens[start : start + batch_size], tokens.prepend_bos)
        with torch.no_grad():
            logits, cache = model.run_with_cache(batch, names_filter=lambda name: name in hook_names)
        pieces = _collect(model, names, layer_ids, head_ids, cache, sources, logits)
        for key, value in pieces.items():
            if key not in out:
                out[key] = torch.empty((n, *value.shape[1:]), dtype=torch.float32)
            out[key][start : start + value.shape[0]] = value
        del cache, logits
        rep.update(f"capture: batch {done} of {len(starts)}", done, len(starts))
    return CaptureResult(tokens=tokens, layers=layer_ids, heads=head_ids, tensors=out, sources=sources)


def _hook_plan(model: HookedModel, names: list[str], layers: list[int]) -> set[str]:
    """TL hook names to keep (for head vectors every candidate; the first that fires is used)."""
    available = set(model.hook_names())
    wanted: set[str] = set()
    for w in names:
        for layer in layers:
            if w in RESID_LIKE:
                wanted.add(f"blocks.{layer}.{RESID_LIKE[w]}")
            elif w in HEAD_MAPS:
                wanted.add(f"blocks.{layer}.{HEAD_MAPS[w]}")
            elif w in HEAD_VECTORS or w == "head_out":
                options = HEAD_VECTORS["z" if w == "head_out" else w]
                wanted.update(f"blocks.{layer}.{s}" for s in options if f"blocks.{layer}.{s}" in available)
    missing = sorted(h for h in wanted if h not in available)
    if missing:
        raise InputError(f"The bridge for {model.spec} offers no hook {missing[0]}; this target cannot be captured.")
    return wanted


def _fired(cache: Any, layer: int, options: Sequence[str], model: HookedModel) -> str:
    for suffix in options:
        if f"blocks.{layer}.{suffix}" in cache.cache_dict:
            return suffix
    raise InputError(f"None of the hooks {list(options)} fired in layer {layer} of {model.spec}; cannot capture them.")


def _collect(
    model: HookedModel, names: list[str], layers: list[int], heads: list[int], cache: Any, sources: dict[str, str],
    logits: Tensor,
) -> dict[str, Tensor]:
    """Stack the kept hooks per target; `sources` records which hook each head-vector target came from."""
    f = model.facts
    rep = f.n_heads // f.n_kv_heads
    head_idx = torch.tensor(heads)
    pieces: dict[str, Tensor] = {}
    for w in names:
        if w == "logits":
            pieces[w] = logits.detach().float().cpu()
            continue
        per_layer = []
        for layer in layers:
            if w in RESID_LIKE:
                t = cache[f"blocks.{layer}.{RESID_LIKE[w]}"]
            elif w in HEAD_MAPS:
                t = cache[f"blocks.{layer}.{HEAD_MAPS[w]}"][:, head_idx.to(logits.device)]
            else:
                suffix = _fired(cache, layer, HEAD_VECTORS["z" if w == "head_out" else w], model)
                sources[w] = suffix
                t = cache[f"blocks.{layer}.{suffix}"]  # [batch, pos, heads or kv_heads, d_head]
                if t.shape[2] != f.n_heads:
                    t = t.repeat_interleave(rep, dim=2)
                t = t[:, :, head_idx.to(t.device)]
                if w == "head_out":
                    w_o = model.W_O[layer][head_idx].to(t.device, t.dtype)  # [head, d_head, d_model]
                    t = torch.einsum("bphd,hdm->bphm", t, w_o)
            per_layer.append(t.detach().float().cpu())
        pieces[w] = torch.stack(per_layer, dim=1)
    return pieces
