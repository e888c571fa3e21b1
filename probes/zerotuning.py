"""ZeroTuning judged by accuracy: per-layer and per-head gamma sweeps, and head-specific tuning fitted on dev
and reported on test (docs/tasks.md; spec: docs/methods/attention-sinks.md, "First-token scaling").

Every cell is probes.accuracy.score_task with probes.hidden_sinks.scaling_edits on the chosen heads: the
attention on position `key` (0, the first token; another position is the paper's control) times gamma in
every row, renormalized. Cells run on the fused output edits where the model allows it (CPU, no sliding
window) and on eager patterns otherwise.
- layer_sweep: every head of one layer at a time, for each gamma; accuracy on the split.
- head_sweep: one head at a time at one gamma; the change in accuracy from the unedited model.
- tune_heads: the heads whose head_sweep change on dev is positive (at most `top`, largest first), scaled
  together, scored on test beside the unedited model, both with Wilson intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from probes.accuracy import AccuracyResult, score_task
from probes.errors import InputError
from probes.hidden_sinks import scaling_edits
from probes.progress import NullReporter, Reporter
from probes.results import result_metadata
from probes.tasks.format import TaskSet

if TYPE_CHECKING:
    from probes.model.hooked_model import HookedModel

DEFAULT_GAMMAS = (0.25, 0.5, 0.8, 1.25, 1.5, 2.0)


@dataclass
class LayerSweep:
    task: str
    split: str
    key: int
    gammas: list[float]
    layers: list[int]
    baseline: float
    accuracy: list[list[float]]  # [layer][gamma]
    n: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def best(self) -> tuple[int, float, float]:
        """(layer, gamma, accuracy) of the best cell (the first on a tie)."""
        best = (self.layers[0], self.gammas[0], self.accuracy[0][0])
        for layer, row in zip(self.layers, self.accuracy, strict=True):
            for gamma, acc in zip(self.gammas, row, strict=True):
                if acc > best[2]:
                    best = (layer, gamma, acc)
        return best

    def to_dict(self) -> dict[str, Any]:
        layer, gamma, acc = self.best()
        return {"kind": "zerotuning_layers", **self.metadata, "task": self.task, "split": self.split, "key": self.key,
                "gammas": self.gammas, "layers": self.layers, "baseline": self.baseline, "accuracy": self.accuracy,
                "n": self.n, "best": {"layer": layer, "gamma": gamma, "accuracy": acc}}


@dataclass
class HeadSweep:
    task: str
    split: str
    key: int
    gamma: float
    baseline: float
    change: list[list[float]]  # [layer][head]: accuracy with that head scaled minus the baseline
    n: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "zerotuning_heads", **self.metadata, "task": self.task, "split": self.split, "key": self.key,
                "gamma": self.gamma, "baseline": self.baseline, "change": self.change, "n": self.n}


@dataclass
class TunedHeads:
    task: str
    key: int
    gamma: float
    heads: list[tuple[int, int]]
    dev: HeadSweep
    before: AccuracyResult
    after: AccuracyResult
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def brief(r: AccuracyResult) -> dict[str, Any]:
            return {"accuracy": r.accuracy, "ci_low": r.ci_low, "ci_high": r.ci_high, "n": r.n, "correct": r.correct}

        return {"kind": "zerotuning_tuned", **self.metadata, "task": self.task, "key": self.key, "gamma": self.gamma,
                "heads": [list(h) for h in self.heads], "dev": self.dev.to_dict(), "test_before": brief(self.before),
                "test_after": brief(self.after), "change": self.after.accuracy - self.before.accuracy}


def _check_gamma(gamma: float) -> float:
    if not gamma > 0:
        raise InputError(f"gamma must be positive (got {gamma}); 1 leaves the model unchanged.")
    return float(gamma)


def layer_sweep(model: HookedModel, task: TaskSet, gammas: Sequence[float] = DEFAULT_GAMMAS,
                layers: Sequence[int] | None = None, split: str = "dev", key: int = 0, normalize: bool = False,
                reporter: Reporter | None = None) -> LayerSweep:
    """Accuracy with every head of one layer scaled, per layer and gamma (module docstring)."""
    gs = [_check_gamma(g) for g in gammas]
    if not gs:
        raise InputError("Give at least one gamma.")
    picked = model.check_layers(layers)
    examples = task.split(split)
    rep = reporter or NullReporter()
    base = score_task(model, task, normalize=normalize, examples=examples).accuracy
    heads = range(model.facts.n_heads)
    grid: list[list[float]] = []
    steps, done = len(picked) * len(gs), 0
    for layer in picked:
        row = []
        for g in gs:
            rep.check()
            edits = scaling_edits(model, [(layer, h) for h in heads], g, key)
            row.append(score_task(model, task, normalize=normalize, edits=edits, examples=examples).accuracy)
            done += 1
            rep.update(f"layer {layer}, gamma {g} ({done} of {steps})", done, steps)
        grid.append(row)
    settings = {"task": task.name, "split": split, "key": key, "gammas": gs, "layers": picked, "normalize": normalize}
    return LayerSweep(task.name, split, key, gs, picked, base, grid, len(examples), result_metadata(model, settings))


def head_sweep(model: HookedModel, task: TaskSet, gamma: float, split: str = "dev", key: int = 0,
               normalize: bool = False, reporter: Reporter | None = None,
               layers: Sequence[int] | None = None) -> HeadSweep:
    """The change in accuracy with one head scaled by gamma, for every head of `layers` (default all; the
    rows of the others are 0: not measured, listed in `layers`) (module docstring)."""
    g = _check_gamma(gamma)
    picked = model.check_layers(layers)
    examples = task.split(split)
    rep = reporter or NullReporter()
    base = score_task(model, task, normalize=normalize, examples=examples).accuracy
    f = model.facts
    change = [[0.0] * f.n_heads for _ in range(f.n_layers)]
    for done, layer in enumerate(picked, start=1):
        for head in range(f.n_heads):
            rep.check()
            edits = scaling_edits(model, [(layer, head)], g, key)
            change[layer][head] = score_task(model, task, normalize=normalize, edits=edits,
                                             examples=examples).accuracy - base
        rep.update(f"heads of layer {layer} ({done} of {len(picked)})", done, len(picked))
    settings = {"task": task.name, "split": split, "key": key, "gamma": g, "normalize": normalize, "layers": picked}
    return HeadSweep(task.name, split, key, g, base, change, len(examples), result_metadata(model, settings))


def tune_heads(model: HookedModel, task: TaskSet, gamma: float, top: int = 8, key: int = 0,
               normalize: bool = False, reporter: Reporter | None = None,
               layers: Sequence[int] | None = None) -> TunedHeads:
    """Head-specific tuning: heads of `layers` (default all) chosen on dev (positive change, at most `top`),
    reported on test."""
    if top < 1:
        raise InputError(f"top must be at least 1 (got {top}).")
    rep = reporter or NullReporter()
    dev = head_sweep(model, task, gamma, "dev", key, normalize, rep.part(0.0, 0.9), layers)
    ranked = sorted(((c, layer, head) for layer, row in enumerate(dev.change) for head, c in enumerate(row) if c > 0),
                    key=lambda t: (-t[0], t[1], t[2]))
    heads = [(layer, head) for _, layer, head in ranked[:top]]
    before = score_task(model, task, "test", normalize)
    after = score_task(model, task, "test", normalize, edits=scaling_edits(model, heads, gamma, key)) if heads else before
    rep.update("tuned heads scored on test", 1, 1)
    settings = {"task": task.name, "key": key, "gamma": dev.gamma, "top": top, "normalize": normalize}
    return TunedHeads(task.name, key, dev.gamma, heads, dev, before, after, result_metadata(model, settings))
