"""BB lab page: fills in when `probes.bb` lands (see app/ui/pending.py for its issue)."""

from __future__ import annotations

import streamlit as st

from app.ui.pending import require

st.title("BB lab")
st.caption("The Bigram-Backcopy task: a small transformer trained to show extreme-token phenomena.")
module = require("probes.bb")
if module is not None:
    st.success("`probes.bb` has landed; this page is wired to it in a follow-up (its API is not guessed here).",
               icon=":material/check_circle:")
