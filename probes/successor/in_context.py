"""The in-context view: each head's direct logit attribution (DLA) to the correct successor.

Spec: docs/methods/successor-heads.md and docs/successor.md. The first-order circuit W_U . W_OV . MLP0(W_E[t])
can miss heads in deep, narrow models whose early layers have not finished building a token's
representation, so this view reads what each head actually writes on succession prompts.

Prompts: for each task, items shown in order separated by ", " ("Monday, Tuesday, Wednesday,
Thursday, Friday"); the prompt is every token but the last, the target is the last token. For
single-token items the target is the whole next item; on digit-splitting tokenizers (SmolLM2,
Gemma 3) a number's last digit ("1, 2, ..., 1" -> "3" in "13"). Cyclic tasks wrap.

Direct logit attribution of head (l, h) at the last position:
    head_out = z_h . W_O[h]                                  (the head's write, no b_O)
    Gemma: head_out <- w_post_l * head_out * s_l,  s_l = 1/sqrt(mean(a_l^2) + eps), where a_l is
           the layer's whole attention output (all heads + b_O) from the clean run (frozen scale)
    final norm, frozen from the clean run's final residual x:
           RMSNorm:   c -> w_f * c / sqrt(mean(x^2) + eps)
           LayerNorm: c -> w_f * (c - mean(c)) / sqrt(var(x) + eps)   (its bias is not a head's)
    DLA = final(head_out) . (W_U[:, correct] - mean_{t in T} W_U[:, t])
where T is the task's target token set (every target any prompt of the task can have). With the
scales frozen the map is linear, so the DLAs of all components (embedding, heads, b_O, MLPs, the
final norm's and unembedding's biases) sum exactly to logit[correct] - mean_{t in T} logit[t].
Rank accuracy of a head: how often correct has the highest DLA among T (chance 1/|T|).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from torch import Tensor

from probes.errors import InputError
from probes.model.hooked_model import HookedModel, Tokens
from probes.progress import NullReporter, Reporter
from probes.quantities import apply_frozen_norm, dla_directions, frozen_norm_scale, head_write
from probes.results import result_metadata
from probes.successor.dataset import TASKS

if TYPE_CHECKING:
    from probes.model.model_like import ModelLike

DEFAULT_TASKS = ("numbers", "days", "months", "letters", "number_words", "ordinals", "month_prefixes",
                 "day_prefixes")


@dataclass
class PromptSet:
    """Succession prompts of one task: token rows (without the target), targets, and the target set T."""

    task: str
    texts: list[str]
    rows: list[list[int]]
    targets: list[int]
    target_set: list[int]
    target_strings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "texts": self.texts, "targets": self.target_strings,
                "target_set_size": len(self.target_set)}


def _sequences(items: list[str], cyclic: bool, shown: int) -> list[list[str]]:
    n = len(items)
    starts = range(n) if cyclic else range(n - shown)
    return [[items[(s + k) % n] for k in range(shown + 1)] for s in starts]


def build_prompts(model: HookedModel, task: str, shown: int = 4, max_prompts: int = 20) -> PromptSet:
    """Prompts for one task: `shown` items then the target item (evenly spaced starts, at most max_prompts)."""
    if task not in TASKS:
        raise InputError(f"Unknown task '{task}'. Known tasks: {', '.join(TASKS)}.")
    if shown < 1 or max_prompts < 1:
        raise InputError(f"shown and max_prompts must be at least 1 (got {shown}, {max_prompts}).")
    items, cyclic, _ = TASKS[task]
    seqs = _sequences(items, cyclic, shown)
    if not seqs:
        raise InputError(f"Task '{task}' has {len(items)} items, too few for {shown} shown items and a target.")
    tok = model.tokenizer
    bos = [int(tok.bos_token_id)] if model.facts.prepends_bos else []
    encoded = [bos + list(tok(", ".join(s), add_special_tokens=False).input_ids) for s in seqs]
    target_set = sorted({e[-1] for e in encoded})
    step = max(1, len(seqs) // max_prompts)
    chosen = list(range(0, len(seqs), step))[:max_prompts]
    return PromptSet(task, [", ".join(seqs[i]) for i in chosen], [encoded[i][:-1] for i in chosen],
                     [encoded[i][-1] for i in chosen], target_set,
                     [model.to_str_tokens([encoded[i][-1]])[0] for i in chosen])


def final_norm_linear(model: HookedModel, x_final: Float[Tensor, "b d_model"]) -> Any:
    """The final norm with its scale frozen at x_final: a function c [b, ..., d] -> normalized c (no bias)."""
    centered = model.facts.normalization == "layernorm"
    w = model.norm_scales()["ln_final"].float().cpu()
    s = frozen_norm_scale(x_final, model.norm_eps("final"), centered)

    def apply(c: Tensor) -> Tensor:
        return apply_frozen_norm(c, s, w, centered)

    return apply


def run_last_position(model: HookedModel, rows: list[list[int]], batch_size: int = 16) -> dict[str, Tensor]:
    """z of every head [b, layer, head, d_head] and the final residual [b, d_model] at each row's last token,
    plus the model's logits there [b, d_vocab] and resid_pre/mid/post per layer [b, layer, d_model]
    (resid_mid only for sequential blocks: parallel attention and MLP have no mid residual)."""
    f = model.facts
    tokens = model.tokens_from_ids(rows)
    last = torch.tensor(tokens.lengths) - 1
    resids = ("resid_pre", "resid_mid", "resid_post") if model.has_mid_residual else ("resid_pre", "resid_post")
    hooks = {f"blocks.{la}.{n}" for la in range(f.n_layers) for n in ("attn.hook_z", *(f"hook_{r}" for r in resids))}
    out: dict[str, list[Tensor]] = {"z": [], "logits": [], **{r: [] for r in resids}}
    for start in range(0, len(rows), batch_size):
        batch = Tokens(tokens.ids[start : start + batch_size], tokens.attention_mask[start : start + batch_size],
                       tokens.str_tokens[start : start + batch_size], tokens.prepend_bos)
        idx = last[start : start + batch_size]
        ar = torch.arange(len(idx))
        with torch.no_grad():
            logits, cache = model.run_with_cache(batch, names_filter=lambda name: name in hooks)
        zs = []
        for la in range(f.n_layers):
            z = cache[f"blocks.{la}.attn.hook_z"][ar, idx].float().cpu()
            if z.ndim == 2:
                z = z.reshape(len(idx), f.n_heads, f.d_head)
            zs.append(z)
        out["z"].append(torch.stack(zs, dim=1))
        for name in resids:
            out[name].append(torch.stack([cache[f"blocks.{la}.hook_{name}"][ar, idx].float().cpu()
                                          for la in range(f.n_layers)], dim=1))
        out["logits"].append(logits[ar, idx].float().cpu())
        del cache, logits
    return {k: torch.cat(v) for k, v in out.items()}


def head_writes(
    model: HookedModel, z: Float[Tensor, "b layer head d_head"], layers: list[int] | None = None
) -> Float[Tensor, "b layer head d_model"]:
    """Each head's write to the residual (Gemma: through its post-attention norm with the layer's frozen scale).

    `layers` names the layers z covers (default: all, in order)."""
    layer_ids = list(range(model.facts.n_layers)) if layers is None else layers
    w_o = model.W_O[layer_ids].float().cpu()
    out = torch.stack([head_write(z[:, i], w_o[i]) for i in range(len(layer_ids))], dim=1)
    b_o = model.b_O
    if model.attn_out_norm(layer_ids[0]) is None:
        return out
    eps = torch.tensor([model.norm_eps("attn_out", la) for la in layer_ids])[None]  # [1, layer]
    total = out.sum(dim=2) + (0 if b_o is None else b_o[layer_ids].float().cpu()[None])
    s = torch.rsqrt(total.pow(2).mean(dim=-1) + eps)  # [b, layer]
    w_post = torch.stack([model.attn_out_norm_scale(la).float().cpu() for la in layer_ids])  # type: ignore[union-attr]
    return out * s[:, :, None, None] * w_post[None, :, None, :]


@dataclass
class InContextScores:
    """Per-head DLA to the correct successor on succession prompts, per task, with the model's own accuracy."""

    metadata: dict[str, Any]
    prompts: list[PromptSet]
    dla: Tensor  # [task, layer, head] mean DLA (logits)
    rank_accuracy: Tensor  # [task, layer, head]
    model_accuracy: list[float]  # top-1 over the whole vocabulary
    model_task_accuracy: list[float]  # correct is the top logit among the task's target set
    per_prompt_dla: list[Tensor]  # per task [prompt, layer, head]
    logit_diff: list[Tensor]  # per task [prompt]: logit[correct] - mean over T (the exact total)

    @property
    def task_names(self) -> list[str]:
        return [p.task for p in self.prompts]

    @property
    def chance(self) -> list[float]:
        return [1.0 / len(p.target_set) for p in self.prompts]

    @property
    def overall(self) -> Tensor:
        """Mean DLA over tasks (each task weighted equally) [layer, head]."""
        return self.dla.mean(dim=0)

    def ranking(self, k: int = 10) -> list[dict[str, Any]]:
        flat = self.overall.flatten()
        n_heads = self.overall.shape[1]
        order = torch.argsort(flat, descending=True)[:k]
        layers = self.metadata.get("settings", {}).get("layers") or list(range(self.overall.shape[0]))
        return [{"layer": int(layers[int(i) // n_heads]), "head": int(i) % n_heads, "mean_dla": float(flat[i]),
                 "per_task_dla": {t: float(self.dla[j].flatten()[i]) for j, t in enumerate(self.task_names)},
                 "per_task_rank_accuracy": {t: float(self.rank_accuracy[j].flatten()[i])
                                            for j, t in enumerate(self.task_names)}}
                for i in order]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "successor_in_context",
            "metadata": self.metadata,
            "tasks": [p.to_dict() for p in self.prompts],
            "dla": {t: self.dla[i].tolist() for i, t in enumerate(self.task_names)},
            "rank_accuracy": {t: self.rank_accuracy[i].tolist() for i, t in enumerate(self.task_names)},
            "chance": dict(zip(self.task_names, self.chance, strict=True)),
            "model_accuracy": dict(zip(self.task_names, self.model_accuracy, strict=True)),
            "model_task_accuracy": dict(zip(self.task_names, self.model_task_accuracy, strict=True)),
            "mean_logit_diff": {t: float(d.mean()) for t, d in zip(self.task_names, self.logit_diff, strict=True)},
            "ranking": self.ranking(10),
        }


def head_dla(model: HookedModel, ps: PromptSet, batch_size: int = 16) -> dict[str, Tensor]:
    """DLA of every head on one prompt set: to the correct target [p, L, H], to every t in T [p, L, H, |T|],
    the exact total logit difference [p], and the run's tensors."""
    run = run_last_position(model, ps.rows, batch_size)
    final = final_norm_linear(model, run["resid_post"][:, -1])
    writes = final(head_writes(model, run["z"]))  # [p, L, H, d]
    w_u = model.W_U.float().cpu()
    t_set = torch.tensor(ps.target_set)
    per_t = writes @ dla_directions(w_u[:, t_set].T).T  # [p, L, H, |T|]
    col = torch.tensor([ps.target_set.index(t) for t in ps.targets])
    correct = per_t[torch.arange(len(col)), :, :, col]  # [p, L, H]
    logits = run["logits"]
    diff = logits[torch.arange(len(col)), torch.tensor(ps.targets)] - logits[:, t_set].mean(dim=1)
    return {"correct": correct, "per_t": per_t, "col": col, "logit_diff": diff, "top1": logits.argmax(dim=-1),
            "logits_on_targets": logits[:, t_set], **run}


def in_context_scores(
    model: ModelLike, tasks: Sequence[str] = DEFAULT_TASKS, shown: int = 4, max_prompts: int = 20,
    batch_size: int = 16, reporter: Reporter | None = None,
) -> InContextScores:
    """The in-context view for every head and task (see the module docstring for the definitions).
    reporter (probes.progress): one step per task, a cancel checked before each. The DLA is measured where the
    model runs (ModelLike.head_dla: hooks here; inside one nnsight trace per task remotely)."""
    rep = reporter or NullReporter()
    prompt_sets = [build_prompts(model, t, shown, max_prompts) for t in tasks]  # type: ignore[arg-type]
    dla, rank_acc, per_prompt, diffs, acc, task_acc = [], [], [], [], [], []
    for done, ps in enumerate(prompt_sets, start=1):
        rep.check()
        r = model.head_dla(ps, batch_size)
        per_prompt.append(r["correct"])
        dla.append(r["correct"].mean(dim=0))
        rank_acc.append((r["per_t"].argmax(dim=-1) == r["col"][:, None, None]).float().mean(dim=0))
        diffs.append(r["logit_diff"])
        acc.append(float((r["top1"] == torch.tensor(ps.targets)).float().mean()))
        task_acc.append(float((r["logits_on_targets"].argmax(dim=-1) == r["col"]).float().mean()))
        rep.update(f"in-context DLA: task {ps.task} ({done} of {len(prompt_sets)})", done, len(prompt_sets))
    settings = {"tasks": list(tasks), "shown": shown, "max_prompts": max_prompts,
                "baseline": "mean W_U over the task's target set"}
    return InContextScores(result_metadata(model, settings), prompt_sets, torch.stack(dla), torch.stack(rank_acc),
                           acc, task_acc, per_prompt, diffs)
