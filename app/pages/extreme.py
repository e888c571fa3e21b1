"""Extreme tokens page: fills in when `probes.extreme` lands (see app/ui/pending.py for its issue)."""

from __future__ import annotations

import streamlit as st

from app.ui.pending import require

st.title("Extreme tokens")
st.caption("Value-state drains and residual-state peaks: the tokens whose values and norms stand out.")
module = require("probes.extreme")
if module is not None:
    st.success("`probes.extreme` has landed; this page is wired to it in a follow-up (its API is not guessed here).",
               icon=":material/check_circle:")
