"""Errors in the app: a GlasshouseError shows as `st.error` with its message, never a traceback.

Messages written for the library's callers (Python users) are reworded for the app's user by
`human_message`: no internal indices ("Prompt 0 is empty") and no Python list reprs. Other
exceptions are bugs and keep Streamlit's own report.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from probes.errors import GlasshouseError

_REWRITES = [
    (re.compile(r"^Prompt \d+ is empty\..*$", re.S), "The prompt is empty: type some text in the sidebar's Prompt box."),
    (re.compile(r"^A prompt has no tokens\..*$", re.S), "The prompt has no tokens: type some text in the sidebar's "
                                                        "Prompt box."),
    (re.compile(r"^A prompt has (\d+) tokens but (\S+) takes at most (\d+) \(n_ctx\)\..*$", re.S),
     r"The prompt has \1 tokens but \2 takes at most \3 (its context). Shorten the prompt."),
]
_LIST = re.compile(r"\[(?:'[^'\[\]]*'|\"[^\"\[\]]*\"|-?\d+)(?:, (?:'[^'\[\]]*'|\"[^\"\[\]]*\"|-?\d+))*\]")


def _join(match: re.Match[str]) -> str:
    try:
        items = ast.literal_eval(match.group(0))
    except (ValueError, SyntaxError):
        return match.group(0)
    return " + ".join(f"'{i}'" if isinstance(i, str) else str(i) for i in items)


def human_message(message: str) -> str:
    """A library message as the app shows it: known index-laden texts reworded, list reprs written out."""
    for pattern, replacement in _REWRITES:
        if pattern.match(message):
            message = pattern.sub(replacement, message)
            break
    return _LIST.sub(_join, message)


@contextmanager
def shown_errors(stop: bool = True) -> Iterator[None]:
    """Run a block; on a GlasshouseError show its message with st.error and stop the page (or go on)."""
    try:
        yield
    except GlasshouseError as exc:
        st.error(human_message(str(exc)), icon=":material/error:")
        if stop:
            st.stop()
