"""Succession: continue an ordinal sequence (days, months, number words), the behaviour of
successor heads (spec: circuits.md, "Tasks").

Clean: "Sequence: Monday, Tuesday, Wednesday," -> " Thursday".
Corrupted: the same sequence shifted two steps ("Wednesday, Thursday, Friday,"), whose answer
is " Saturday". Metric: logit(clean successor) - logit(corrupted successor). Items that are not
a single token (with a leading space) for the loaded tokenizer are left out.
"""

from __future__ import annotations

from typing import Any

from circuits.schema import schema_from_template
from circuits.tasks.base import TaskData, single_token_words
from circuits.tasks.common import encoder, fill_pair, rng
from probes.errors import InputError

TEMPLATE = "Sequence: {a}, {b}, {c},"
SHIFT = 2
SEQUENCES = {
    "days": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "months": ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
               "November", "December"],
    "numbers": ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"],
}


def _usable(model: Any) -> list[tuple[list[str], dict[str, int]]]:
    out = []
    for items in SEQUENCES.values():
        tokens = single_token_words(encoder(model), items)
        if len(tokens) == len(items):
            out.append((items, tokens))
    if not out:
        raise InputError(f"{model.spec}'s tokenizer splits every sequence's items; succession needs single tokens.")
    return out


def make_succession(model: Any, n: int = 32, seed: int = 0) -> TaskData:
    """Generate n succession examples (see the module docstring)."""
    r = rng(seed)
    seqs = _usable(model)
    clean, corr, starts, ans, signs, ct, xt = [], [], [], [], [], [], []
    for _ in range(n):
        items, tokens = r.choice(seqs)
        i = r.randint(0, len(items) - 4 - SHIFT)
        vals = {"a": items[i], "b": items[i + 1], "c": items[i + 2]}
        cvals = {"a": items[i + SHIFT], "b": items[i + 1 + SHIFT], "c": items[i + 2 + SHIFT]}
        a, b, sa, _ = fill_pair(model, TEMPLATE, vals, cvals)
        clean.append(a)
        corr.append(b)
        starts.append(sa)
        ans.append([tokens[items[i + 3]], tokens[items[i + 3 + SHIFT]]])
        signs.append([1.0, -1.0])
        ct.append(TEMPLATE.format(**vals))
        xt.append(TEMPLATE.format(**cvals))
    return TaskData("succession", schema_from_template(TEMPLATE), "logit_diff", clean, corr, starts, ans, signs, ct,
                    xt, notes=f"Corrupted: the sequence shifted {SHIFT} steps; metric logit(next) - logit(next shifted).")
