"""Bounds on what the app runs and draws (docs/concurrency.md): the sidebar input is checked before any run,
results are checked against the capture memory budget, and figures draw a bounded window.

- The sidebar prompt may hold at most `prompt_token_limit(model)` tokens: the model's context or
  MAX_PROMPT_TOKENS, whichever is smaller (a 1,024-token prompt already makes 9 x 1M-cell patterns
  per layer). Longer text is refused with st.error before anything runs.
- Pages that generate their own sequences cap n x T at MAX_TOTAL_TOKENS and check the bytes they
  keep (plus one batch's forward pass) against `probes.model.capture.default_budget_bytes`, the budget
  `capture` itself uses.
- T x T heatmaps draw at most PATTERN_MAX_TOKENS positions (a window the user picks); the full data
  is offered as a download, which Streamlit serves over HTTP, outside the websocket message.
"""

from __future__ import annotations

import streamlit as st

from app.ui.errors import shown_errors
from app.ui.model import InputRows, input_rows
from app.ui.sidebar import Settings
from probes.errors import BudgetError, InputError
from probes.model.capture import default_budget_bytes, estimate_capture_bytes
from probes.model.hooked_model import HookedModel

MAX_PROMPT_TOKENS = 1024
MAX_PROMPT_CHARS = 16 * MAX_PROMPT_TOKENS  # refused without tokenizing: no tokenizer packs 16 characters a token
MAX_TOTAL_TOKENS = 65_536  # n x T on the pages that draw their own sequences
PATTERN_MAX_TOKENS = 256  # positions a T x T heatmap draws (65,536 cells, a few MB of JSON)
TOKEN_FIGURE_MAX = 128  # positions a per-token x per-feature heatmap draws


def prompt_token_limit(model: HookedModel) -> int:
    return min(int(model.facts.n_ctx), MAX_PROMPT_TOKENS)


def check_prompt_text(text: str) -> None:
    """Checks that need no tokenizer: the prompt is not empty and not absurdly long."""
    if not text.strip():
        raise InputError("The prompt is empty: type some text in the sidebar's Prompt box.")
    if len(text) > MAX_PROMPT_CHARS:
        raise InputError(f"The prompt is {len(text):,} characters; the app takes at most {MAX_PROMPT_CHARS:,} "
                         f"(and {MAX_PROMPT_TOKENS:,} tokens). Shorten it, or run long texts from Python or the "
                         "`glasshouse` command, which read corpora in windows.")


def check_sidebar_input(model: HookedModel, settings: Settings) -> None:
    """Refuse a sidebar prompt that is empty or longer than the model's context or the app's token cap."""
    if settings.source != "prompt":
        return
    check_prompt_text(settings.prompt)
    n = len(model.tokenizer(settings.prompt, add_special_tokens=False).input_ids) + int(model.facts.prepends_bos)
    limit = prompt_token_limit(model)
    if n > limit:
        why = (f"{model.spec}'s context is {model.facts.n_ctx:,} tokens" if limit == model.facts.n_ctx
               else f"the app's cap; {model.spec}'s context is {model.facts.n_ctx:,}")
        raise InputError(f"The prompt is {n:,} tokens; the app takes at most {limit:,} ({why}). Shorten it, or "
                         "use a corpus sample (up to 1,024 tokens a sequence).")


def sidebar_rows(model: HookedModel, settings: Settings) -> InputRows:
    """The sidebar's input as token rows, checked first; bad input shows st.error and stops the page."""
    with shown_errors():
        check_sidebar_input(model, settings)
    return input_rows(model, settings)


def describe_input(settings: Settings, rows: InputRows) -> str:
    """'the sidebar prompt (1 sequence, 12 tokens)' or 'the sidebar corpus sample (prose, 4 x 64 tokens, seed 0)'."""
    longest = max(len(r) for r in rows.rows)
    if settings.source == "prompt":
        return f"the sidebar prompt (1 sequence, {longest} tokens)"
    return (f"the sidebar corpus sample ({settings.domain}, {len(rows.rows)} x {longest} tokens, "
            f"seed {settings.seed})")


def check_total_tokens(n: int, T: int) -> None:
    if n * T > MAX_TOTAL_TOKENS:
        raise InputError(f"{n} sequences x {T} tokens = {n * T:,} tokens; this page runs at most "
                         f"{MAX_TOTAL_TOKENS:,} at once. Use fewer sequences or fewer tokens (or the `glasshouse` "
                         "command, which writes its results to disk).")


def check_budget(model: HookedModel, n: int, T: int, kept_bytes: int, batch_size: int = 8, what: str = "run") -> None:
    """Refuse, before running, a run whose kept bytes (twice: st.cache_data holds a pickled copy) plus one
    batch's forward pass exceed the capture memory budget (half the free RAM; 80% of free GPU memory)."""
    forward = estimate_capture_bytes(model, n, T, ["resid_post"], 0, 0, batch_size)["forward (per batch)"]
    total = 2 * int(kept_bytes) + int(forward)
    budget = default_budget_bytes(model.device)
    if total > budget:
        raise BudgetError(f"This {what} needs about {total / 2**30:.2f} GiB ({n} x {T} tokens) but the memory budget "
                          f"is {budget / 2**30:.2f} GiB (half the free memory). Use fewer sequences or tokens.")


def token_window(n_tokens: int, limit: int, key: str, what: str = "The figure") -> tuple[int, int]:
    """(start, stop) of the positions a figure draws: all of them up to `limit`, else a window of `limit`
    whose first position the user picks; says so on the page."""
    if n_tokens <= limit:
        return 0, n_tokens
    start = int(st.number_input(f"First position drawn (of {n_tokens})", min_value=0, max_value=n_tokens - limit,
                                value=0, step=max(1, limit // 2), key=key))
    st.caption(f"{what} draws positions {start}..{start + limit - 1} of {n_tokens}: a browser cannot show more "
               f"than {limit} x {limit} cells usefully. The download buttons hold the full data.")
    return start, start + limit
