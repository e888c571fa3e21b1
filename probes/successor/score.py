"""Successor score per head and per task (spec: successor-heads.md, "Successor score of a head").

For each pair (t, succ(t)) of a task, a head succeeds when succ(t) has the highest effective-OV
logit among that task's tokens. A head's score is the success rate over all pairs of all tasks;
per-task scores are reported beside each task's chance level (1 / number of task tokens). Heads
scoring at least `threshold` (0.4, as in one public reimplementation) are listed as successor heads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from probes.errors import InputError
from probes.model.hooked_model import HookedModel
from probes.progress import NullReporter, Reporter
from probes.results import result_metadata
from probes.successor.dataset import SuccessionDataset, Task, build_dataset
from probes.successor.ov import DEFAULT_SETTINGS, OVSettings, ov_logits


def task_hits(logits: Float[Tensor, "... n n"], task: Task) -> tuple[Tensor, Tensor]:
    """Per pair: whether succ(t) wins among the task's tokens, and the index predicted instead."""
    src = torch.tensor([p[0] for p in task.pairs])
    dst = torch.tensor([p[1] for p in task.pairs])
    pred = logits[..., src, :].argmax(dim=-1)  # [..., n_pairs]
    return pred == dst, pred


@dataclass
class SuccessorScores:
    """Scores of every head: overall [layer, head], per task [task, layer, head], and the top head's detail."""

    metadata: dict[str, Any]
    dataset: SuccessionDataset
    scores: Tensor
    per_task: Tensor
    task_names: list[str]
    chance: float
    task_chance: list[float]
    threshold: float
    top_confusion: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def ranking(self, k: int = 10) -> list[dict[str, Any]]:
        """The k best heads, best first, with their per-task scores."""
        flat = self.scores.flatten()
        n_heads = self.scores.shape[1]
        order = torch.argsort(flat, descending=True)[:k]
        return [{"layer": int(i) // n_heads, "head": int(i) % n_heads, "score": float(flat[i]),
                 "per_task": {t: float(self.per_task[j].flatten()[i]) for j, t in enumerate(self.task_names)}}
                for i in order]

    @property
    def top_head(self) -> tuple[int, int]:
        best = self.ranking(1)[0]
        return best["layer"], best["head"]

    def successor_heads(self) -> list[dict[str, Any]]:
        return [r for r in self.ranking(self.scores.numel()) if r["score"] >= self.threshold]

    def to_dict(self) -> dict[str, Any]:
        layer, head = self.top_head
        return {
            "kind": "successor_scores",
            "metadata": self.metadata,
            "dataset": self.dataset.to_dict(),
            "scores": self.scores.tolist(),
            "per_task": {t: self.per_task[i].tolist() for i, t in enumerate(self.task_names)},
            "chance": self.chance,
            "task_chance": dict(zip(self.task_names, self.task_chance, strict=True)),
            "threshold": self.threshold,
            "ranking": self.ranking(10),
            "successor_heads": self.successor_heads(),
            "top_head": {"layer": layer, "head": head,
                         "per_task": {t: float(self.per_task[i, layer, head]) for i, t in enumerate(self.task_names)}},
            "top_confusion": self.top_confusion,
        }


def score_heads(
    model: HookedModel, dataset: SuccessionDataset | None = None, settings: OVSettings = DEFAULT_SETTINGS,
    threshold: float = 0.4, reporter: Reporter | None = None,
) -> SuccessorScores:
    """Successor score of every head of the model on every task (all heads at once, per task).
    reporter (probes.progress): one step per task, a cancel checked before each."""
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold must lie in [0, 1], got {threshold}.")
    ds = dataset if dataset is not None else build_dataset(model.tokenizer)
    s = settings.resolved(model)
    hits_per_task, preds = [], []
    rep = reporter or NullReporter()
    for done, task in enumerate(ds.tasks, start=1):
        rep.check()
        logits = ov_logits(model, task.token_ids, task.token_ids, s)
        hits, pred = task_hits(logits, task)
        hits_per_task.append(hits)
        preds.append(pred)
        rep.update(f"successor score: task {task.name} ({done} of {len(ds.tasks)})", done, len(ds.tasks))
    per_task = torch.stack([h.float().mean(dim=-1) for h in hits_per_task])
    scores = torch.cat(hits_per_task, dim=-1).float().mean(dim=-1)
    settings_dict = {**s.to_dict(), "threshold": threshold}
    result = SuccessorScores(result_metadata(model, settings_dict), ds, scores, per_task,
                             [t.name for t in ds.tasks], ds.chance, [t.chance for t in ds.tasks], threshold)
    layer, head = result.top_head
    result.top_confusion = confusion(ds, [p[layer, head] for p in preds])
    return result


def confusion(dataset: SuccessionDataset, predictions: list[Tensor]) -> dict[str, list[dict[str, Any]]]:
    """For one head: each pair's source, expected successor, and the token it predicted."""
    out: dict[str, list[dict[str, Any]]] = {}
    for task, pred in zip(dataset.tasks, predictions, strict=True):
        out[task.name] = [{"source": task.items[a], "expected": task.items[b], "predicted": task.items[int(p)],
                           "correct": int(p) == b} for (a, b), p in zip(task.pairs, pred.tolist(), strict=True)]
    return out


def check_head_index(model: HookedModel, layer: int, head: int) -> tuple[int, int]:
    """A (layer, head) index checked against the model (InputError with the valid range otherwise)."""
    return model.check_layer(layer), model.check_head(head)
