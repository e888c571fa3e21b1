"""Helpers shared by the task generators: encoding for a model and filling templates."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from circuits.schema import build_example, schema_from_template
from probes.errors import InputError


def encoder(model: Any) -> Callable[[str], list[int]]:
    """Text -> ids with the model's tokenizer, no special tokens."""
    return lambda text: list(model.tokenizer(text, add_special_tokens=False).input_ids)


def bos_of(model: Any) -> int | None:
    return int(model.facts.bos_token_id) if model.facts.prepends_bos else None


def fill_pair(model: Any, template: str, clean: dict[str, str], corrupted: dict[str, str]) -> tuple[
        list[int], list[int], list[int], list[int]]:
    """Clean and corrupted ids and span starts for one template filled two ways."""
    enc, bos = encoder(model), bos_of(model)
    a, sa = build_example(template, clean, enc, bos)
    b, sb = build_example(template, corrupted, enc, bos)
    return a, b, sa, sb


def check_templates(templates: Sequence[str]) -> None:
    schemas = {schema_from_template(t) for t in templates}
    if len(schemas) != 1:
        raise InputError(f"The templates give different schemas: {schemas}. One task needs one schema.")


def rng(seed: int) -> random.Random:
    return random.Random(seed)


def need(found: dict[str, int], count: int, what: str, spec: str) -> list[str]:
    if len(found) < count:
        raise InputError(f"{spec}'s tokenizer has only {len(found)} single-token {what}; the task needs {count}.")
    return sorted(found)
