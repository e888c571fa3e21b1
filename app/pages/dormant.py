"""Active/dormant heads page: fills in when `probes.dormant` lands (see app/ui/pending.py for its issue)."""

from __future__ import annotations

import streamlit as st

from app.ui.pending import require

st.title("Active/dormant heads")
st.caption("Heads that switch between attending to a sink (dormant) and doing work (active), per input.")
module = require("probes.dormant")
if module is not None:
    st.success("`probes.dormant` has landed; this page is wired to it in a follow-up (its API is not guessed here).",
               icon=":material/check_circle:")
