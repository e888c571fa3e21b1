"""Dataset schemas: named spans per example, derived from templates (spec: circuits.md, PEAP).

A schema is an ordered list of span names. An example stores the index of each span's first
token; a span runs to the next span's start. From a template such as
"When {IO} and {S} went to the {place}, {S} gave a {object} to" the spans are, in order:
"prefix" (text before the first placeholder), each placeholder (a repeated name gets an
occurrence number: S1, S2), the literal text after placeholder X as "after_X", and the last
token of the prompt as "end" (split off the final part; when the final part is a single token
its own span is empty). Empty literal chunks (two adjacent placeholders) make no span.

Examples are tokenized part by part (each part's ids concatenated), so span starts are exact.
A space that ends a literal chunk is moved to the front of the next placeholder's value, as
BPE tokenizers attach spaces to the following word.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from probes.errors import InputError

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Schema:
    """Ordered span names."""

    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        if name not in self.names:
            raise InputError(f"Span '{name}' is not in the schema {list(self.names)}.")
        return self.names.index(name)


def template_parts(template: str) -> list[tuple[str, str]]:
    """The template as (kind, text) parts: ("literal", text) or ("slot", placeholder name)."""
    parts: list[tuple[str, str]] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(template):
        if m.start() > pos:
            parts.append(("literal", template[pos : m.start()]))
        parts.append(("slot", m.group(1)))
        pos = m.end()
    if pos < len(template):
        parts.append(("literal", template[pos:]))
    if not any(kind == "slot" for kind, _ in parts):
        raise InputError(f"Template {template!r} has no {{placeholder}}; a schema needs at least one.")
    return parts


def _part_names(parts: list[tuple[str, str]]) -> list[str]:
    totals = Counter(text for kind, text in parts if kind == "slot")
    seen: Counter[str] = Counter()
    names, last_slot = [], None
    for kind, text in parts:
        if kind == "slot":
            seen[text] += 1
            last_slot = f"{text}{seen[text]}" if totals[text] > 1 else text
            names.append(last_slot)
        else:
            names.append("prefix" if last_slot is None else f"after_{last_slot}")
    return names


def schema_from_template(template: str) -> Schema:
    """The span names a template gives (see the module docstring)."""
    names = _part_names(template_parts(template))
    return Schema(tuple(names + ["end"]))


def build_example(
    template: str, values: dict[str, str], encode: Callable[[str], list[int]], bos: int | None = None
) -> tuple[list[int], list[int]]:
    """Token ids of one filled template and the first-token index of every schema span.

    The final part is split: its last token becomes span "end" (a one-token final part yields an
    empty span before "end", kept so that all examples share one schema).
    """
    parts = template_parts(template)
    ids: list[int] = [] if bos is None else [bos]
    starts: list[int] = []
    carry = ""
    for i, (kind, text) in enumerate(parts):
        if kind == "slot":
            if text not in values:
                raise InputError(f"Template {template!r} needs a value for {{{text}}}; got {sorted(values)}.")
            piece = carry + values[text]
        else:
            piece = carry + text
        carry = ""
        if kind == "literal" and i + 1 < len(parts) and piece.endswith(" "):
            piece, carry = piece[:-1], " "
        part_ids = encode(piece) if piece else []
        starts.append(0 if i == 0 else len(ids))
        ids += part_ids
    if not ids:
        raise InputError(f"Template {template!r} filled with {values} gives no tokens.")
    starts.append(len(ids) - 1)
    return ids, starts


def check_examples(schema: Schema, starts: Sequence[Sequence[int]], lengths: Sequence[int]) -> None:
    """Every example maps every span: one start per span, non-decreasing, inside the prompt."""
    for i, (row, n) in enumerate(zip(starts, lengths, strict=True)):
        if len(row) != len(schema):
            raise InputError(
                f"Example {i} maps {len(row)} spans but the schema has {len(schema)} ({list(schema.names)}). "
                "Every example must give the first-token index of every span."
            )
        if row[0] != 0 or any(b < a for a, b in zip(row, row[1:], strict=False)) or row[-1] >= n:
            raise InputError(
                f"Example {i}'s span starts {list(row)} are not non-decreasing within 0..{n - 1} starting at 0."
            )


def check_aligned(clean: Sequence[Sequence[int]], corrupted: Sequence[Sequence[int]],
                  clean_starts: Sequence[Sequence[int]], corrupted_starts: Sequence[Sequence[int]]) -> None:
    """Clean and corrupted prompts must have the same length and the same span starts."""
    for i, (a, b, sa, sb) in enumerate(zip(clean, corrupted, clean_starts, corrupted_starts, strict=True)):
        if len(a) != len(b) or list(sa) != list(sb):
            raise InputError(
                f"Example {i}: the clean prompt ({len(a)} tokens, spans at {list(sa)}) and the corrupted one "
                f"({len(b)} tokens, spans at {list(sb)}) do not align. Use counterfactual values with the same "
                "token count as the clean ones."
            )


def span_ids(starts: Sequence[int], length: int, pad_to: int) -> Int[Tensor, " pos"]:
    """The span index of every position (padding after `length` gets the last span)."""
    ids = torch.full((pad_to,), len(starts) - 1, dtype=torch.long)
    bounds = list(starts) + [length]
    for s in range(len(starts)):
        ids[bounds[s] : bounds[s + 1]] = s
    return ids
