"""Errors in the app: a GlasshouseError shows as `st.error` with its message, never a traceback.

Other exceptions are bugs and keep Streamlit's own report.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from probes.errors import GlasshouseError


@contextmanager
def shown_errors(stop: bool = True) -> Iterator[None]:
    """Run a block; on a GlasshouseError show its message with st.error and stop the page (or go on)."""
    try:
        yield
    except GlasshouseError as exc:
        st.error(str(exc), icon=":material/error:")
        if stop:
            st.stop()
