"""Setting values that are lists written as text (`regimes="natural,random"`, `heads="L26H7,L3H0"`,
`layers="0,1,7"`): their parsers, and the `check`s (probes.analysis.setting) that say what is wrong with one.

Torch-free: the command line checks these while it reads its options, before a model loads.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from probes.errors import InputError


def names(text: str) -> tuple[str, ...]:
    """'natural, random' -> ("natural", "random") (blanks dropped)."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


def names_check(choices: Sequence[str], what: str) -> Callable[[Any], str | None]:
    """A check: a non-empty comma-separated list of names, each one of `choices`."""

    def problem(value: Any) -> str | None:
        items = names(str(value))
        unknown = [n for n in items if n not in choices]
        if not items:
            return f"give at least one {what} from: {', '.join(choices)}"
        if unknown:
            return f"unknown {what} {', '.join(map(repr, unknown))}; choose from: {', '.join(choices)}"
        return None

    return problem


def integers(text: str) -> list[int]:
    """'0, 1,7' -> [0, 1, 7]; '' -> [] (InputError naming the item that is not a whole number >= 0)."""
    out = []
    for item in names(text):
        if not item.isdigit():
            raise InputError(f"'{item}' is not a whole number >= 0; write a comma-separated list such as 0,1,7.")
        out.append(int(item))
    return out


def heads(text: str) -> list[tuple[int, int]]:
    """'L26H7,L3H0' -> [(26, 7), (3, 0)] (InputError naming the item that is not L<layer>H<head>)."""
    out = []
    for item in names(text):
        match = re.fullmatch(r"[Ll](\d+)[Hh](\d+)", item)
        if match is None:
            raise InputError(f"Cannot read head '{item}': write heads as L<layer>H<head>, e.g. L26H7,L23H4.")
        out.append((int(match[1]), int(match[2])))
    return out


def list_check(parse: Callable[[str], Sequence[Any]]) -> Callable[[Any], str | None]:
    """A check for an optional list written as text: '' (not given), or text `parse` reads without an InputError.
    Text that lists nothing (',' or blanks) is a slip, not 'leave it out'."""

    def problem(value: Any) -> str | None:
        text = str(value)
        if text and not names(text):
            return "lists nothing; give at least one item, or leave it out"
        try:
            parse(text)
        except InputError as exc:
            return str(exc)
        return None

    return problem


integers_check = list_check(integers)  # '' or whole numbers >= 0, e.g. 0,1,7
heads_check = list_check(heads)  # '' or heads written L<layer>H<head>, e.g. L26H7,L3H0


def text_check(value: Any) -> str | None:
    """A check for optional text: '' (not given) or something other than blanks."""
    return "is empty (only blanks); give some text, or leave it out" if str(value) and not str(value).strip() else None
