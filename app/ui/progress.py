"""The Streamlit implementation of probes.progress.Reporter: st.progress with the step text.

Updates are drawn at most every `every` seconds (and always at the end), so a loop of thousands of
steps does not flood the browser; `on_partial` draws a live view of the run's partial results.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import streamlit as st

from probes.progress import Reporter


class StreamlitReporter(Reporter):
    """st.progress(fraction, text); cancel is read at every check() (e.g. a Stop button's session flag)."""

    def __init__(self, text: str = "", cancel: Callable[[], bool] | None = None, every: float = 0.2,
                 on_partial: Callable[[Any], None] | None = None) -> None:
        super().__init__(cancel)
        self.bar = st.progress(0.0, text=text or None)
        self.every = every
        self.on_partial = on_partial
        self._drawn = 0.0
        self._partial_new = False

    def update(self, text: str, done: float, total: float, partial: Any = None) -> None:
        self._partial_new = self._partial_new or partial is not None
        super().update(text, done, total, partial)

    def show(self) -> None:
        now = time.monotonic()
        if self.fraction < 1.0 and now - self._drawn < self.every:
            return
        self._drawn = now
        self.bar.progress(self.fraction, text=self.text or None)
        if self.on_partial is not None and self._partial_new:
            self._partial_new = False
            self.on_partial(self.partial)

    def close(self) -> None:
        self.bar.empty()
