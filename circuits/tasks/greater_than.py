"""Greater-than over years, designed for tokenizers that split numbers into single digits
(spec: circuits.md, "Tasks").

SmolLM2's tokenizer writes " 1732" as " ", "1", "7", "3", "2", so no two-digit year is one
token. The prompt therefore ends inside the end year, before its last digit:
    "The war lasted from the year 1732 to the year 173" -> next token: the ones digit.
The answer tokens are the ten digits "0".."9"; years above the start year are those whose
ones digit is larger than the start year's (same century and decade), so the metric is
    sum_{d > Y} p(d) - sum_{d <= Y} p(d)
over the probabilities of the whole vocabulary at the last position. The decade digit X runs
over 1..8 and the start ones digit Y over 2..8. Corrupted (as the paper's "01"): the start year's
ones digit becomes 0, i.e. "from the year 1730 to the year 173", the smallest possible start.
"""

from __future__ import annotations

from typing import Any

from circuits.schema import schema_from_template
from circuits.tasks.base import TaskData
from circuits.tasks.common import encoder, fill_pair, rng
from probes.errors import InputError

TEMPLATE = "The {noun} lasted from the year 17{tens}{ones} to the year 17{end_tens}"
NOUNS = ["war", "expedition", "project", "empire", "dynasty", "drought", "reign", "conflict", "pilgrimage", "strike"]


def digit_ids(model: Any) -> list[int]:
    """The token id of each digit 0..9 as it appears inside a number."""
    enc = encoder(model)
    out = []
    for d in range(10):
        ids = enc(f"17{d}")
        tail = enc("17")
        if ids[: len(tail)] != tail or len(ids) != len(tail) + 1:
            raise InputError(
                f"{model.spec}'s tokenizer does not split '17{d}' into digits; this greater-than design needs "
                "single-digit number tokens."
            )
        out.append(ids[-1])
    return out


def make_greater_than(model: Any, n: int = 32, seed: int = 0) -> TaskData:
    """Generate n greater-than examples (see the module docstring for the design)."""
    r = rng(seed)
    digits = digit_ids(model)
    clean, corr, starts, ans, signs, ct, xt = [], [], [], [], [], [], []
    for _ in range(n):
        x, y, noun = r.randint(1, 8), r.randint(2, 8), r.choice(NOUNS)
        vals = {"noun": noun, "tens": str(x), "ones": str(y), "end_tens": str(x)}
        a, b, sa, _ = fill_pair(model, TEMPLATE, vals, {**vals, "ones": "0"})
        clean.append(a)
        corr.append(b)
        starts.append(sa)
        ans.append(digits)
        signs.append([1.0 if d > y else -1.0 for d in range(10)])
        ct.append(TEMPLATE.format(**vals))
        xt.append(TEMPLATE.format(**{**vals, "ones": "0"}))
    return TaskData("greater_than", schema_from_template(TEMPLATE), "prob_diff", clean, corr, starts, ans, signs, ct,
                    xt, notes="Answer = the end year's ones digit (single-digit tokens); corrupted start year 17X0.")
