"""SAE features page: fills in when `saes` lands (see app/ui/pending.py for its issue)."""

from __future__ import annotations

import streamlit as st

from app.ui.pending import require

st.title("SAE features")
st.caption("Sparse autoencoders on the residual stream: training, metrics and feature views.")
module = require("saes.registry")
if module is not None:
    st.success("`saes` has landed; this page is wired to it in a follow-up (its API is not guessed here).",
               icon=":material/check_circle:")
