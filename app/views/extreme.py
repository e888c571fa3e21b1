"""Extreme tokens page (spec: extreme-tokens.md): residual-state peaks and value-state drains
(probes.extreme, figures from app/figures/sinks.py).

Input: the sidebar's prompt or corpus sample (the default), or sequences drawn for one of the
spec's regimes, which the page then says; n x T is capped and checked against the memory budget."""

from __future__ import annotations

from typing import Any

import streamlit as st

from app.figures import sinks as figs
from app.ui.downloads import json_download, plot
from app.ui.errors import shown_errors
from app.ui.inputs import MAX_TOTAL_TOKENS, check_budget, check_total_tokens, describe_input, sidebar_rows
from app.ui.model import current_model, get_model
from app.ui.progress import StreamlitReporter
from app.ui.sidebar import current_settings
from probes import extreme, sinks

REGIMES = {"input": "the sidebar input", "natural": "natural text (corpus)", "random": "random tokens", "repeat": "one token repeated"}


@st.cache_data(show_spinner=False, max_entries=8)
def extreme_result(spec: str, device: str, dtype: str, regime: str, n: int, T: int, seed: int,
                   rows: tuple[tuple[int, ...], ...] = ()) -> Any:
    """probes.extreme.extreme_tokens on inputs_for_regime (or on `rows`, the sidebar input, for regime
    "input"), cached by its inputs."""
    import torch

    model = get_model(spec, device, dtype)
    ids = (torch.tensor(rows, dtype=torch.long) if regime == "input"
           else sinks.inputs_for_regime(model, regime, n, T, seed=seed))
    reporter = StreamlitReporter("Extreme-token measurements ...")
    result = extreme.extreme_tokens(model, ids, reporter=reporter)
    reporter.close()
    return result


settings = current_settings()
st.title("Extreme tokens")
st.caption("Value-state drains and residual-state peaks: the first token's residual norm and its small value "
           "vectors, per layer and head.")
model = current_model(settings)
with st.form("extreme_inputs"):
    c = st.columns(4)
    regime = str(c[0].selectbox("Input", list(REGIMES), format_func=REGIMES.__getitem__, key="ext_regime",
                                help="The sidebar input, or sequences drawn here for one of the spec's regimes "
                                     "(Sequences, Tokens and Seed apply to those only)."))
    n = int(c[1].number_input("Sequences", min_value=1, max_value=256, value=8, key="ext_n"))
    T = int(c[2].number_input("Tokens (T)", min_value=2, max_value=min(model.facts.n_ctx, 1024), value=64, step=16,
                              key="ext_T", help=f"At most {MAX_TOTAL_TOKENS:,} tokens in all (n x T)."))
    seed = int(c[3].number_input("Seed", min_value=0, value=0, key="ext_seed"))
    st.form_submit_button("Compute", type="primary")
rows: tuple[tuple[int, ...], ...] = ()
if regime == "input":
    given = sidebar_rows(model, settings)
    n, T = len(given.rows), min(len(r) for r in given.rows)
    rows = tuple(r[:T] for r in given.rows)
    st.caption(f"Input: {describe_input(settings, given)}; change it in the sidebar, or pick a regime above.")
    if T < 2:
        st.error("The measurements need at least 2 tokens; the sidebar prompt has 1. Type a longer prompt.",
                 icon=":material/error:")
        st.stop()
else:
    st.caption(f"Input: {n} sequences of {T} tokens drawn here ({REGIMES[regime]}, seed {seed}), not the sidebar "
               "input: pick **the sidebar input** above to measure your own text.")
f = model.facts
with shown_errors():
    check_total_tokens(n, T)
    check_budget(model, n, T, 4 * n * T * f.n_layers * (2 * f.n_heads + 1), what="measurement")
with shown_errors(), st.spinner(f"Measuring attention, value and residual norms on {n} x {T} tokens ..."):
    res = extreme_result(settings.spec, settings.device, settings.dtype, regime, n, T, seed, rows)
tag = f"{model.facts.spec}_{regime}_n{n}_T{T}" + ("" if regime == "input" else f"_seed{seed}")
data = res.to_dict()
json_download(data, f"extreme_{tag}", label="Extreme-token result JSON")
plot(figs.residual_norm_lines(data), f"extreme_resid_lines_{tag}")
sample = int(st.number_input("Sequence", min_value=0, max_value=n - 1, value=0, key="ext_seq"))
plot(figs.residual_norm_heatmap(data, sample), f"extreme_resid_heatmap_{tag}_s{sample}")
plot(figs.value_norm_figure(data), f"extreme_value_norms_{tag}")
