"""Accuracy of a model on a task, with or without an attention intervention (docs/tasks.md; spec:
docs/methods/tasks.md, "Accuracy").

- Multiple choice (examples with `choices`): each choice is scored by the sum of the log-probabilities of its
  tokens after the prompt (`normalize=True`: their mean per token), the prompt and the choice tokenized apart
  and joined (as lm-evaluation-harness does, so a choice's tokens never merge with the prompt's); the highest
  score is the prediction (the first on a tie); correct when it is the answer.
- Next token (no choices): correct when every token of the answer is the most likely token at its position,
  given the prompt and the answer's earlier tokens (greedy decoding would produce the answer).
- accuracy = correct / n with a 95% Wilson score interval.
Sequences of equal length run together (no padding), so head edits (probes.model.attention_edits) take the
fused path where the model allows it; the path taken is in the metadata (`settings.attention`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from torch import Tensor

from probes.errors import InputError
from probes.progress import NullReporter, Reporter
from probes.results import result_metadata
from probes.sinks import ATTENTION_RUN
from probes.tasks.format import TaskExample, TaskSet

if TYPE_CHECKING:
    from probes.model.attention_edits import HeadEdit
    from probes.model.hooked_model import HookedModel

Z_95 = 1.959963984540054


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion correct / n (95% by default)."""
    if n <= 0:
        raise InputError("An interval needs at least one example.")
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class AccuracyResult:
    """What score_task measured; `examples` holds each example's prediction and scores."""

    task: str
    split: str
    scoring: str
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    examples: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "accuracy", **self.metadata, "task": self.task, "split": self.split, "scoring": self.scoring,
                "n": self.n, "correct": self.correct, "accuracy": self.accuracy, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "examples": self.examples}


def prompt_ids(model: HookedModel, text: str) -> list[int]:
    """The prompt's token ids, with the model's BOS convention (HookedModel.to_tokens)."""
    return [int(i) for i in model.to_tokens(text).ids[0]]


def continuation_ids(model: HookedModel, text: str) -> list[int]:
    """A continuation's token ids on their own (no special tokens)."""
    ids = model.tokenizer(text, add_special_tokens=False).input_ids
    if not ids:
        raise InputError(f"The continuation {text!r} has no tokens.")
    return [int(i) for i in ids]


def continuation_logprobs(model: HookedModel, pairs: Sequence[tuple[list[int], list[int]]],
                          edits: Sequence[HeadEdit] = (), attention: str = "fast", batch_size: int = 16,
                          reporter: Reporter | None = None) -> list[tuple[Float[Tensor, " k"], Tensor]]:
    """For each (prompt ids, continuation ids): the log-probability of each continuation token and the most
    likely token at its position, from one forward of prompt + continuation; equal lengths batched together."""
    rep = reporter or NullReporter()
    by_length: dict[int, list[int]] = {}
    for i, (p, c) in enumerate(pairs):
        by_length.setdefault(len(p) + len(c), []).append(i)
    chunks = [idx[j : j + batch_size] for _, idx in sorted(by_length.items()) for j in range(0, len(idx), batch_size)]
    out: list[Any] = [None] * len(pairs)
    for done, chunk in enumerate(chunks, start=1):
        rep.check()
        ids = torch.tensor([pairs[i][0] + pairs[i][1] for i in chunk])
        logp = torch.log_softmax(model.forward(ids, attention=attention, edits=edits).float(), dim=-1).cpu()
        for row, i in enumerate(chunk):
            p, c = pairs[i]
            at = torch.arange(len(p) - 1, len(p) + len(c) - 1)  # the logits that predict each continuation token
            out[i] = (logp[row, at, torch.tensor(c)], logp[row, at].argmax(-1))
        rep.update(f"scoring: batch {done} of {len(chunks)}", done, len(chunks))
    return out


def score_task(model: HookedModel, task: TaskSet, split: str = "test", normalize: bool = False,
               edits: Sequence[HeadEdit] = (), attention: str = "fast", batch_size: int = 16,
               reporter: Reporter | None = None, examples: Sequence[TaskExample] | None = None) -> AccuracyResult:
    """Accuracy on one split of `task` (module docstring), under `edits` when given. `examples` overrides the
    split (a sweep scores the same list many times)."""
    chosen = list(examples) if examples is not None else task.split(split)
    pairs: list[tuple[list[int], list[int]]] = []
    owners: list[tuple[int, str]] = []
    for i, ex in enumerate(chosen):
        p = prompt_ids(model, ex.prompt)
        for text in ex.choices or (ex.answer,):
            pairs.append((p, continuation_ids(model, text)))
            owners.append((i, text))
    scored = continuation_logprobs(model, pairs, edits, attention, batch_size, reporter)
    rows: list[dict[str, Any]] = [{"prompt": ex.prompt, "answer": ex.answer, "scores": {}} for ex in chosen]
    for (i, text), (_, wanted), (logp, best) in zip(owners, pairs, scored, strict=True):
        if chosen[i].choices is not None:
            rows[i]["scores"][text] = float(logp.mean() if normalize else logp.sum())
        else:
            rows[i].update(predicted=model.tokenizer.decode(best.tolist()), scores={text: float(logp.sum())},
                           correct=best.tolist() == wanted)
    for i, ex in enumerate(chosen):
        if ex.choices is not None:
            scores = rows[i]["scores"]
            predicted = max(ex.choices, key=lambda c: (scores[c], -ex.choices.index(c)))  # type: ignore[union-attr]
            rows[i].update(predicted=predicted, correct=predicted == ex.answer)
    correct = sum(int(r["correct"]) for r in rows)
    low, high = wilson_interval(correct, len(rows))
    scoring = ("choices: mean log-probability per token" if normalize else "choices: sum of log-probabilities") \
        if task.multiple_choice else "next tokens: every answer token the most likely"
    split_name = split if examples is None else "given"
    settings = {"task": task.name, "source": task.source, "split": split_name,
                "seed": task.seed, "normalize": normalize, "edits": len(edits),
                "attention": ATTENTION_RUN[model.attention_path(attention, edits)]}
    return AccuracyResult(task.name, split_name, scoring, len(rows), correct, correct / len(rows), low, high,
                          rows, result_metadata(model, settings))
