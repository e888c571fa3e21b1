"""Circuits page: fills in when `circuits` lands (see app/ui/pending.py for its issue)."""

from __future__ import annotations

import streamlit as st

from app.ui.pending import require

st.title("Circuits")
st.caption("Edge attribution patching (EAP, EAP-IG, position-aware EAP) and faithfulness.")
module = require("circuits")
if module is not None:
    st.success("`circuits` has landed; this page is wired to it in a follow-up (its API is not guessed here).",
               icon=":material/check_circle:")
