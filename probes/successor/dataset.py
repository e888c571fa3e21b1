"""Succession tasks for a given tokenizer (spec: successor-heads.md, "Succession dataset").

Each task is an ordered list of items written with a leading space (" Monday"). An item is kept
when the tokenizer encodes it as exactly one token that decodes back to the item and is not a
special token (a word-level tokenizer's unknown token is not the item). Dropped items are
reported per task. Successor pairs are consecutive items of the ordered list whose two items
both survived; cyclic tasks (days, day prefixes, months, month prefixes) add last -> first.

Numbers on digit-splitting tokenizers: SmolLM2's tokenizer turns " 12" into " ", "1", "2", so
no " N" survives. The numbers task then falls back to the bare digits "0".."9" (form "bare")
instead of being silently emptied; the in-context view (in_context.py) uses multi-token numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from probes.errors import InputError

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
NUMBER_WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
                "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"]

# name -> (items without the leading space, cyclic, index of the first item)
TASKS: dict[str, tuple[list[str], bool, int]] = {
    "numbers": ([str(i) for i in range(1, 201)], False, 1),
    "number_words": (NUMBER_WORDS, False, 1),
    "ordinals": (ORDINALS, False, 1),
    "days": (DAYS, True, 1),
    "day_prefixes": ([d[:3] for d in DAYS], True, 1),
    "months": (MONTHS, True, 1),
    "month_prefixes": ([m[:3] for m in MONTHS], True, 1),
    "letters": ([chr(c) for c in range(ord("A"), ord("Z") + 1)], False, 1),
}
BARE_DIGITS = [str(i) for i in range(10)]


@dataclass
class Task:
    """One ordered task as it exists in a tokenizer: kept items, their token ids, successor pairs."""

    name: str
    items: list[str]  # kept items, as encoded (leading space unless form == "bare")
    token_ids: list[int]
    indices: list[int]  # each kept item's index in the task (1 for the first item: Monday=1, " 1"=1, A=1)
    pairs: list[tuple[int, int]]  # (position in items of t, position of succ(t))
    cyclic: bool
    form: str  # "space" (" Monday") or "bare" ("7", the digit fallback)
    dropped: list[str] = field(default_factory=list)

    @property
    def chance(self) -> float:
        """Success rate of a uniform random choice among the task's tokens."""
        return 1.0 / len(self.items)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "items": self.items, "token_ids": self.token_ids, "indices": self.indices,
                "pairs": [list(p) for p in self.pairs], "cyclic": self.cyclic, "form": self.form,
                "n_kept": len(self.items), "dropped": self.dropped, "chance": self.chance}


@dataclass
class SuccessionDataset:
    """The tasks kept for one tokenizer, and the ones skipped (fewer than two single-token items)."""

    tasks: list[Task]
    skipped: dict[str, str]

    def task(self, name: str) -> Task:
        for t in self.tasks:
            if t.name == name:
                return t
        raise InputError(f"No task '{name}' in this dataset; tasks: {[t.name for t in self.tasks]}.")

    @property
    def n_pairs(self) -> int:
        return sum(len(t.pairs) for t in self.tasks)

    @property
    def chance(self) -> float:
        """Overall chance: the pair-weighted mean of the per-task chance levels."""
        return sum(t.chance * len(t.pairs) for t in self.tasks) / max(self.n_pairs, 1)

    def to_dict(self) -> dict[str, Any]:
        return {"tasks": [t.to_dict() for t in self.tasks], "skipped": self.skipped, "n_pairs": self.n_pairs,
                "chance": self.chance}


def _hf(tokenizer: Any) -> Any:
    return getattr(tokenizer, "tokenizer", tokenizer)


def single_token_id(tokenizer: Any, text: str) -> int | None:
    """The id of `text` if the tokenizer encodes it as one ordinary token that decodes back to it."""
    tok = _hf(tokenizer)
    ids = list(tok(text, add_special_tokens=False).input_ids)
    if len(ids) != 1:
        return None
    special = set(getattr(tok, "all_special_ids", []) or [])
    if ids[0] in special or tok.decode(ids).strip() != text.strip():
        return None
    return int(ids[0])


def build_task(name: str, items: Sequence[str], tokenizer: Any, cyclic: bool = False, first_index: int = 1,
               form: str = "space") -> Task:
    """Keep the items of one ordered list that are single tokens (a leading space is added for form "space").

    Raises InputError when fewer than two items survive (no successor pair can be scored).
    """
    if form not in ("space", "bare"):
        raise InputError(f"form must be 'space' or 'bare', not {form!r}.")
    kept: list[str] = []
    ids: list[int] = []
    indices: list[int] = []
    dropped: list[str] = []
    for i, raw in enumerate(items):
        text = " " + raw.strip() if form == "space" else raw.strip()
        tid = single_token_id(tokenizer, text)
        if tid is None:
            dropped.append(text)
        else:
            kept.append(text)
            ids.append(tid)
            indices.append(first_index + i)
    if len(kept) < 2:
        raise InputError(
            f"Task '{name}' has {len(kept)} single-token item(s) in this tokenizer (dropped: {dropped[:8]}...); "
            "a task needs at least two single-token items. Use other items, or a tokenizer that keeps them whole."
        )
    if len(set(ids)) != len(ids):
        raise InputError(f"Task '{name}' maps two items to the same token id; items must be distinct tokens.")
    pos = {idx: k for k, idx in enumerate(indices)}
    last = first_index + len(items) - 1
    pairs = [(pos[i], pos[i + 1]) for i in indices if i + 1 in pos]
    if cyclic and first_index in pos and last in pos:
        pairs.append((pos[last], pos[first_index]))
    if not pairs:
        raise InputError(f"Task '{name}' keeps no two consecutive items, so it has no successor pair to score.")
    return Task(name, kept, ids, indices, pairs, cyclic, form, dropped)


def build_dataset(tokenizer: Any, tasks: Sequence[str] | None = None) -> SuccessionDataset:
    """Build the standard tasks for a tokenizer (or a HookedModel).

    Default tasks that end up with fewer than two single-token items are skipped and reported in
    `skipped`; a task named explicitly in `tasks` raises InputError instead. The numbers task falls
    back to bare digits "0".."9" when no " N" is a single token.
    """
    names = list(TASKS) if tasks is None else list(tasks)
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise InputError(f"Unknown task(s) {unknown}. Known tasks: {', '.join(TASKS)}.")
    built: list[Task] = []
    skipped: dict[str, str] = {}
    for name in names:
        items, cyclic, first = TASKS[name]
        try:
            try:
                task = build_task(name, items, tokenizer, cyclic, first)
            except InputError as exc:
                if name != "numbers":
                    raise
                task = _bare_digits(tokenizer, exc)
        except InputError as exc:
            if tasks is not None:
                raise
            skipped[name] = str(exc)
            continue
        built.append(task)
    if not built:
        raise InputError("No task has two single-token items in this tokenizer; nothing can be scored.")
    return SuccessionDataset(built, skipped)


def _bare_digits(tokenizer: Any, first_error: InputError) -> Task:
    try:
        task = build_task("numbers", BARE_DIGITS, tokenizer, cyclic=False, first_index=0, form="bare")
    except InputError as exc:
        raise InputError(f"{first_error} Bare digits failed too: {exc}") from exc
    task.dropped = [f" {i}" for i in range(1, 201)] + task.dropped
    return task
