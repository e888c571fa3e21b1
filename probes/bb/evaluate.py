"""Evaluating a BB checkpoint with the lab's own module (works for softmax and ReLU attention).

Spec: docs/methods/extreme-tokens.md, "The Bigram-Backcopy (BB) task".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from probes.bb.checkpoint import load_checkpoint
from probes.bb.data import EVAL_STREAM, generate, split
from probes.bb.measure import BBMeasures, measure
from probes.bb.train import read_metrics
from probes.results import versions


@dataclass
class BBEvaluation:
    """The measures of one checkpoint on fresh sequences, and its run's training curve if it has one."""

    checkpoint: str
    step: int
    settings: dict[str, Any]
    measures: BBMeasures
    training_metrics: list[dict[str, Any]]
    eval_seed: int
    n_sequences: int
    triggers: list[str]

    def to_dict(self) -> dict[str, Any]:
        data = {"kind": "bb_evaluation", **asdict(self)}
        data["metadata"] = {"model": self.checkpoint, "settings": self.settings, "seed": self.eval_seed,
                            "versions": versions()}
        return data


def evaluate(checkpoint: str | Path, n_sequences: int = 128, seed: int = 12345) -> BBEvaluation:
    """Measure a checkpoint (step folder or run folder) on n fresh sequences (seed, EVAL_STREAM, step 1)."""
    model, task, meta = load_checkpoint(checkpoint)
    seq_len = int(meta["config"]["n_ctx"]) + 1
    x, y = split(generate(task, n_sequences, seed, 1, seq_len, EVAL_STREAM))
    run_dir = Path(meta["folder"]).parent
    return BBEvaluation(
        checkpoint=str(meta["folder"]),
        step=int(meta["step"]),
        settings=meta["settings"],
        measures=measure(model, task, x, y),
        training_metrics=read_metrics(run_dir, up_to=int(meta["step"])),
        eval_seed=seed,
        n_sequences=n_sequences,
        triggers=[task.vocab[t] for t in task.triggers],
    )
