"""Successor heads page: fills in when `probes.successor` lands (see app/ui/pending.py for its issue)."""

from __future__ import annotations

import streamlit as st

from app.ui.pending import require

st.title("Successor heads")
st.caption("Heads whose OV circuit maps a token to its successor (Monday -> Tuesday, 1 -> 2).")
module = require("probes.successor")
if module is not None:
    st.success("`probes.successor` has landed; this page is wired to it in a follow-up (its API is not guessed here).",
               icon=":material/check_circle:")
