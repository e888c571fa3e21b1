"""Task data: clean and corrupted prompts, span starts, and a signed-answer metric (spec: circuits.md).

Every metric here is a signed sum over answer tokens at the last position, either of logits
("logit_diff": IOI logit(IO) - logit(S), succession) or of probabilities ("prob_diff":
greater-than). Each example carries its answer token ids and their signs (+1 / -1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuits.schema import Schema, check_aligned, check_examples, span_ids
from probes.errors import InputError

METRICS = ("logit_diff", "prob_diff")


@dataclass
class Batch:
    """Right-padded tensors for a group of examples."""

    clean: Int[Tensor, "batch pos"]
    corrupted: Int[Tensor, "batch pos"]
    span_ids: Int[Tensor, "batch pos"]
    valid: Tensor  # [batch, pos] bool, False on padding
    last: Int[Tensor, " batch"]
    answer_ids: Int[Tensor, "batch k"]
    answer_signs: Float[Tensor, "batch k"]
    metric: str


@dataclass
class TaskData:
    """A generated task: per example clean/corrupted ids, span starts and signed answers."""

    name: str
    schema: Schema
    metric: str
    clean: list[list[int]]
    corrupted: list[list[int]]
    starts: list[list[int]]
    answer_ids: list[list[int]]
    answer_signs: list[list[float]]
    clean_text: list[str] = field(default_factory=list)
    corrupted_text: list[str] = field(default_factory=list)
    notes: str = ""
    templates: list[int] = field(default_factory=list)  # template index of each example (empty: all one)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Schema check (every example maps every span) and clean/corrupted alignment."""
        if self.metric not in METRICS:
            raise InputError(f"Unknown metric '{self.metric}'. Use one of {METRICS}.")
        if not self.clean:
            raise InputError(f"Task {self.name} has no examples.")
        check_examples(self.schema, self.starts, [len(c) for c in self.clean])
        check_aligned(self.clean, self.corrupted, self.starts, self.starts)
        if any(len(a) != len(s) or not a for a, s in zip(self.answer_ids, self.answer_signs, strict=True)):
            raise InputError("Each example needs answer token ids with one sign each.")
        if self.templates and len(self.templates) != len(self.clean):
            raise InputError(f"Task {self.name} gives {len(self.templates)} template indices for {len(self.clean)} "
                             "examples; give one per example (or none: all examples share one template).")

    def template_of(self, i: int) -> int:
        """The template index of example i (0 when the task records none)."""
        return self.templates[i] if self.templates else 0

    def __len__(self) -> int:
        return len(self.clean)

    def subset(self, indices: Sequence[int]) -> TaskData:
        pick = list(indices)
        return TaskData(
            self.name, self.schema, self.metric, [self.clean[i] for i in pick], [self.corrupted[i] for i in pick],
            [self.starts[i] for i in pick], [self.answer_ids[i] for i in pick], [self.answer_signs[i] for i in pick],
            [self.clean_text[i] for i in pick] if self.clean_text else [],
            [self.corrupted_text[i] for i in pick] if self.corrupted_text else [], self.notes,
            [self.templates[i] for i in pick] if self.templates else [],
        )

    def batch(self, indices: Sequence[int] | None = None, pad_id: int = 0) -> Batch:
        """Right-padded tensors for the given examples (all by default)."""
        pick = list(range(len(self))) if indices is None else list(indices)
        length = max(len(self.clean[i]) for i in pick)
        k = max(len(self.answer_ids[i]) for i in pick)

        def pad(rows: list[list[int]]) -> Tensor:
            out = torch.full((len(pick), length), pad_id, dtype=torch.long)
            for j, i in enumerate(pick):
                out[j, : len(rows[i])] = torch.tensor(rows[i])
            return out

        ans = torch.zeros(len(pick), k, dtype=torch.long)
        signs = torch.zeros(len(pick), k)
        for j, i in enumerate(pick):
            ans[j, : len(self.answer_ids[i])] = torch.tensor(self.answer_ids[i])
            signs[j, : len(self.answer_signs[i])] = torch.tensor(self.answer_signs[i])
        lengths = torch.tensor([len(self.clean[i]) for i in pick])
        return Batch(
            clean=pad(self.clean), corrupted=pad(self.corrupted),
            span_ids=torch.stack([span_ids(self.starts[i], len(self.clean[i]), length) for i in pick]),
            valid=torch.arange(length)[None] < lengths[:, None], last=lengths - 1,
            answer_ids=ans, answer_signs=signs, metric=self.metric,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "schema": list(self.schema.names), "metric": self.metric,
                "n_examples": len(self), "clean_text": self.clean_text[:5], "corrupted_text": self.corrupted_text[:5],
                "starts": self.starts[:5], "n_templates": len(set(self.templates)) or 1, "notes": self.notes}


def metric_values(logits: Float[Tensor, "batch d_vocab"], batch: Batch) -> Float[Tensor, " batch"]:
    """The task metric of each example from the logits at its last position."""
    values = logits.float()
    if batch.metric == "prob_diff":
        values = values.softmax(-1)
    picked = values.gather(-1, batch.answer_ids.to(values.device))
    return (picked * batch.answer_signs.to(values.device)).sum(-1)


def single_token_words(encode: Any, words: Sequence[str], prefix: str = " ") -> dict[str, int]:
    """The words that are one token with the given prefix (word -> token id)."""
    found = {}
    for w in words:
        ids = encode(prefix + w)
        if len(ids) == 1:
            found[w] = ids[0]
    return found
