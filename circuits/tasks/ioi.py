"""Indirect object identification (spec: circuits.md, "Tasks").

Clean: "When Mary and John went to the store, John gave a drink to" -> " Mary" (IO).
Corrupted (ABC): the second S is replaced by a third name C of the same token count; the
metric is logit(IO) - logit(S) at the last position. Names are single tokens for the loaded
tokenizer; places and objects may span several tokens (variable-length examples).
"""

from __future__ import annotations

from typing import Any

from circuits.schema import check_aligned, schema_from_template
from circuits.tasks.base import TaskData, single_token_words
from circuits.tasks.common import check_templates, encoder, fill_pair, need, rng

TEMPLATES = [
    "When {IO} and {S} went to the {place}, {S} gave a {object} to",
    "While {IO} and {S} were working at the {place}, {S} gave a {object} to",
    "After {IO} and {S} arrived at the {place}, {S} handed a {object} to",
]
NAMES = ["Mary", "John", "Tom", "James", "Alice", "Bob", "Sarah", "Michael", "David", "Anna", "Paul", "Lisa",
         "Mark", "Emma", "Peter", "Laura", "Daniel", "Kate", "George", "Rachel", "Jack", "Susan", "Steven", "Linda"]
PLACES = ["store", "garden", "restaurant", "school", "hospital", "office", "station", "library", "market", "park"]
OBJECTS = ["drink", "book", "ring", "kiss", "basketball", "computer", "necklace", "snack", "bone", "letter"]


def make_ioi(model: Any, n: int = 32, seed: int = 0) -> TaskData:
    """Generate n IOI examples for the model's tokenizer (spec: circuits.md, "Tasks")."""
    check_templates(TEMPLATES)
    r = rng(seed)
    tokens = single_token_words(encoder(model), NAMES)
    names = need(tokens, 3, "names", model.spec)
    clean, corr, starts, ans, signs, ct, xt, which = [], [], [], [], [], [], [], []
    for _ in range(n):
        t = r.choice(TEMPLATES)
        which.append(TEMPLATES.index(t))
        io, s, c = r.sample(names, 3)
        vals = {"IO": " " + io, "S": " " + s, "place": " " + r.choice(PLACES), "object": " " + r.choice(OBJECTS)}
        a, b, sa, _ = fill_pair(model, t, _strip(vals), _strip(vals))
        # ABC corruption: the second S becomes C (same template, same token counts).
        b, sb = _abc(model, t, _strip(vals), c)
        check_aligned([a], [b], [sa], [sb])
        clean.append(a)
        corr.append(b)
        starts.append(sa)
        ans.append([tokens[io], tokens[s]])
        signs.append([1.0, -1.0])
        ct.append(t.format(**_plain(vals)))
        xt.append(_abc_text(t, _plain(vals), c))
    return TaskData("ioi", schema_from_template(TEMPLATES[0]), "logit_diff", clean, corr, starts, ans, signs, ct, xt,
                    notes="ABC corruption: the second S is replaced by a third single-token name.", templates=which)


def _strip(vals: dict[str, str]) -> dict[str, str]:
    return {k: v.lstrip(" ") for k, v in vals.items()}


def _plain(vals: dict[str, str]) -> dict[str, str]:
    return {k: v.strip() for k, v in vals.items()}


def _abc_template(template: str) -> str:
    first = template.index("{S}")
    second = template.index("{S}", first + 1)
    return template[:second] + "{C}" + template[second + 3 :]


def _abc(model: Any, template: str, vals: dict[str, str], c: str) -> tuple[list[int], list[int]]:
    from circuits.schema import build_example
    from circuits.tasks.common import bos_of

    return build_example(_abc_template(template), {**vals, "C": c}, encoder(model), bos_of(model))


def _abc_text(template: str, vals: dict[str, str], c: str) -> str:
    return _abc_template(template).format(**vals, C=c)
