"""Extreme tokens page (spec: extreme-tokens.md): residual-state peaks and value-state drains
(probes.extreme, figures from app/figures/sinks.py). Says "lands with issue N" while it has not merged."""

from __future__ import annotations

import importlib
from typing import Any

import streamlit as st

from app.ui.downloads import json_download, plot
from app.ui.errors import shown_errors
from app.ui.model import current_model, get_model
from app.ui.pending import require
from app.ui.sidebar import current_settings

REGIMES = {"natural": "natural text (corpus)", "random": "random tokens", "repeat": "one token repeated"}


@st.cache_data(show_spinner=False, max_entries=8)
def extreme_result(spec: str, device: str, dtype: str, regime: str, n: int, T: int, seed: int) -> Any:
    """probes.extreme.extreme_tokens on inputs_for_regime, cached by its inputs."""
    extreme = importlib.import_module("probes.extreme")
    sinks = importlib.import_module("probes.sinks")
    model = get_model(spec, device, dtype)
    ids = sinks.inputs_for_regime(model, regime, n, T, seed=seed)
    return extreme.extreme_tokens(model, ids)


settings = current_settings()
st.title("Extreme tokens")
st.caption("Value-state drains and residual-state peaks: the first token's residual norm and its small value "
           "vectors, per layer and head.")
if require("probes.extreme") is None or require("probes.sinks") is None:
    st.stop()
figs = importlib.import_module("app.figures.sinks")
model = current_model(settings)
with st.form("extreme_inputs"):
    c = st.columns(4)
    regime = str(c[0].selectbox("Regime", list(REGIMES), format_func=REGIMES.__getitem__, key="ext_regime"))
    n = int(c[1].number_input("Sequences", min_value=1, max_value=256, value=8, key="ext_n"))
    T = int(c[2].number_input("Tokens (T)", min_value=2, max_value=model.facts.n_ctx, value=64, step=16, key="ext_T"))
    seed = int(c[3].number_input("Seed", min_value=0, value=0, key="ext_seed"))
    st.form_submit_button("Compute", type="primary")
with shown_errors(), st.spinner(f"Measuring norms on {n} x {T} tokens ..."):
    res = extreme_result(settings.spec, settings.device, settings.dtype, regime, n, T, seed)
tag = f"{model.facts.spec}_{regime}_n{n}_T{T}_seed{seed}"
json_download(res.to_dict(), f"extreme_{tag}", label="Extreme-token result JSON")
plot(figs.residual_norm_lines(res), f"extreme_resid_lines_{tag}")
sample = int(st.number_input("Sequence", min_value=0, max_value=n - 1, value=0, key="ext_seq"))
plot(figs.residual_norm_heatmap(res, sample), f"extreme_resid_heatmap_{tag}_s{sample}")
plot(figs.value_norm_figure(res), f"extreme_value_norms_{tag}")
