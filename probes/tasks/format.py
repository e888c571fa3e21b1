"""One task format for accuracy, interventions and circuits (docs/tasks.md; spec: docs/methods/tasks.md).

An example is a `prompt` and its `answer` (the correct continuation, as text), with optional `choices` (a list
of continuations that contains the answer: multiple choice), `corrupted_prompt` (the same prompt with the
information the answer depends on changed, for patching) and `spans` (named character spans of the prompt,
{"name": [start, end]}, for position-aware circuits). A `TaskSet` is a named list of examples with
train/dev/test splits drawn from a seed.

Validation names the example (its number, from 1, and its file line where there is one) and what is wrong.
Checks that depend on the tokenizer (`require_single_token`, `require_equal_lengths`) run where a method needs
them: single-token answers for a next-token metric, clean and corrupted prompts of equal length in tokens for
position-by-position patching.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from probes.errors import InputError

SPLITS = ("train", "dev", "test")
FRACTIONS = (0.6, 0.2, 0.2)  # train, dev, test
FIELDS = ("prompt", "answer", "choices", "corrupted_prompt", "spans")


@dataclass(frozen=True)
class TaskExample:
    """One example (module docstring). `where` says where it came from, for messages."""

    prompt: str
    answer: str
    choices: tuple[str, ...] | None = None
    corrupted_prompt: str | None = None
    spans: dict[str, tuple[int, int]] | None = None
    where: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"prompt": self.prompt, "answer": self.answer}
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.corrupted_prompt is not None:
            out["corrupted_prompt"] = self.corrupted_prompt
        if self.spans is not None:
            out["spans"] = {name: list(span) for name, span in self.spans.items()}
        return out


def example_from(record: Any, where: str) -> TaskExample:
    """A TaskExample from one record (a dict read from JSON or CSV), or InputError saying what is wrong there."""
    if not isinstance(record, dict):
        raise InputError(f"{where}: an example is an object with 'prompt' and 'answer', got {type(record).__name__}.")
    unknown = sorted(set(record) - set(FIELDS))
    if unknown:
        raise InputError(f"{where}: unknown field(s) {unknown}; an example has {', '.join(FIELDS)}.")
    for name in ("prompt", "answer"):
        if name not in record or record[name] is None:
            raise InputError(f"{where}: the field '{name}' is missing (every example needs 'prompt' and 'answer').")
        if not isinstance(record[name], str) or not record[name].strip():
            raise InputError(f"{where}: '{name}' must be non-empty text, got {record[name]!r}.")
    choices = record.get("choices")
    if choices is not None:
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
            raise InputError(f"{where}: 'choices' must be a list of at least two non-empty texts, got {choices!r}.")
        if record["answer"] not in choices:
            raise InputError(f"{where}: the answer {record['answer']!r} is not among the choices {choices!r}.")
        if len(set(choices)) != len(choices):
            raise InputError(f"{where}: the choices {choices!r} repeat a text; each choice must be different.")
    corrupted = record.get("corrupted_prompt")
    if corrupted is not None and (not isinstance(corrupted, str) or not corrupted.strip()):
        raise InputError(f"{where}: 'corrupted_prompt' must be non-empty text when given, got {corrupted!r}.")
    return TaskExample(record["prompt"], record["answer"], tuple(choices) if choices is not None else None,
                       corrupted, _spans(record.get("spans"), record["prompt"], where), where)


def _spans(spans: Any, prompt: str, where: str) -> dict[str, tuple[int, int]] | None:
    if spans is None:
        return None
    if not isinstance(spans, dict) or not spans:
        raise InputError(f"{where}: 'spans' must map span names to [start, end] character offsets, got {spans!r}.")
    out = {}
    for name, span in spans.items():
        ok = (isinstance(span, list | tuple) and len(span) == 2 and all(isinstance(v, int) for v in span)
              and 0 <= span[0] < span[1] <= len(prompt))
        if not ok:
            raise InputError(f"{where}: span '{name}' = {span!r} must be [start, end] with 0 <= start < end <= "
                             f"{len(prompt)} (the prompt's length in characters).")
        out[str(name)] = (int(span[0]), int(span[1]))
    return out


@dataclass
class TaskSet:
    """A named list of examples with seeded train/dev/test splits (FRACTIONS of the examples, shuffled)."""

    name: str
    examples: list[TaskExample]
    seed: int = 0
    source: str = ""
    splits: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.examples:
            raise InputError(f"The task {self.name} has no examples.")
        kinds = {ex.choices is not None for ex in self.examples}
        if len(kinds) > 1:
            first = next(ex for ex in self.examples if (ex.choices is None) != (self.examples[0].choices is None))
            raise InputError(f"{first.where}: some examples have 'choices' and some do not; a task is either "
                             "multiple choice or next-token throughout.")
        if not self.splits:
            self.splits = split_indices(len(self.examples), self.seed)

    @property
    def multiple_choice(self) -> bool:
        return self.examples[0].choices is not None

    def split(self, name: str) -> list[TaskExample]:
        """The examples of one split ("train", "dev", "test", or "all")."""
        if name == "all":
            return list(self.examples)
        if name not in SPLITS:
            raise InputError(f"Unknown split '{name}'. Choose one of: {', '.join(SPLITS)}, all.")
        picked = [self.examples[i] for i in self.splits[name]]
        if not picked:
            raise InputError(f"The task {self.name} has no {name} examples ({len(self.examples)} in all): give more "
                             "examples or use split 'all'.")
        return picked

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "source": self.source, "n": len(self.examples),
                "multiple_choice": self.multiple_choice, "splits": self.splits}


def split_indices(n: int, seed: int) -> dict[str, list[int]]:
    """Shuffle 0..n-1 with `seed` and cut it FRACTIONS-wise (at least one dev and one test example from n = 3)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_test = max(1 if n >= 3 else 0, round(n * FRACTIONS[2]))
    n_dev = max(1 if n >= 3 else 0, round(n * FRACTIONS[1]))
    n_train = n - n_dev - n_test
    return {"train": sorted(order[:n_train]), "dev": sorted(order[n_train : n_train + n_dev]),
            "test": sorted(order[n_train + n_dev :])}


def require_single_token(task: TaskSet, encode: Any) -> None:
    """InputError naming the first example whose answer (or a choice) is not one token (`encode`: text -> ids,
    no special tokens), for metrics that read one next-token logit."""
    for ex in task.examples:
        for text in ex.choices or (ex.answer,):
            ids = encode(text)
            if len(ids) != 1:
                raise InputError(f"{ex.where}: {text!r} is {len(ids)} tokens {ids}; this method needs single-token "
                                 "answers. Start the answer with a space (' Paris') or pick a one-token word.")


def require_equal_lengths(task: TaskSet, encode: Any) -> None:
    """InputError naming the first example whose clean and corrupted prompts differ in length in tokens."""
    for ex in task.examples:
        if ex.corrupted_prompt is None:
            raise InputError(f"{ex.where}: this method patches from a corrupted prompt; the example has none.")
        a, b = encode(ex.prompt), encode(ex.corrupted_prompt)
        if len(a) != len(b):
            raise InputError(f"{ex.where}: the prompt is {len(a)} tokens and the corrupted prompt {len(b)}; "
                             "position-by-position patching needs equal lengths.")


def examples_from(records: Sequence[Any], source: str) -> list[TaskExample]:
    """Examples from records, each named '<source> example i' for messages."""
    return [example_from(r, f"{source} example {i}") for i, r in enumerate(records, start=1)]
