"""Active/dormant heads page (spec: extreme-tokens.md): dormancy of every head on two domains
(probes.dormant, figure from app/figures/sinks.py).

Input: dormancy is a comparison of two corpus domains (prose vs code), so the ranking reads corpus
windows drawn here, as the page says; the table adds each listed head's dormancy on the sidebar
input (probes.dormant.dormancy), so the sidebar prompt changes what the page shows."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app.figures import sinks as figs
from app.ui.downloads import json_download, plot, table
from app.ui.errors import shown_errors
from app.ui.inputs import MAX_TOTAL_TOKENS, check_total_tokens, describe_input, sidebar_rows
from app.ui.model import current_model, get_model
from app.ui.progress import StreamlitReporter
from app.ui.sidebar import current_settings
from probes import dormant


@st.cache_data(show_spinner=False, max_entries=8)
def dormant_result(spec: str, device: str, dtype: str, n: int, T: int, seed: int, top: int, ablate: bool) -> Any:
    """probes.dormant.dormant_heads on the prose and code domains, cached by its inputs."""
    reporter = StreamlitReporter("Dormancy on prose and code ...")
    result = dormant.dormant_heads(get_model(spec, device, dtype), n=n, T=T, seed=seed, top=top, ablate=ablate,
                                   reporter=reporter)
    reporter.close()
    return result


@st.cache_data(show_spinner=False, max_entries=16)
def input_dormancy(spec: str, device: str, dtype: str, rows: tuple[tuple[int, ...], ...]) -> Any:
    """probes.dormant.dormancy of every head on the sidebar input ([layer, head] as numpy)."""
    import torch

    return dormant.dormancy(get_model(spec, device, dtype), torch.tensor(rows, dtype=torch.long)).numpy()


settings = current_settings()
st.title("Active/dormant heads")
st.caption("A head is dormant on an input when it parks its attention on the first token; heads whose dormancy "
           "differs most between prose and code, with the loss cost of ablating them.")
model = current_model(settings)
with st.form("dormant_inputs"):
    c = st.columns(5)
    n = int(c[0].number_input("Sequences per domain", min_value=1, max_value=256, value=8, key="dorm_n"))
    T = int(c[1].number_input("Tokens (T)", min_value=4, max_value=min(model.facts.n_ctx, 1024), value=64, step=16,
                              key="dorm_T", help=f"At most {MAX_TOTAL_TOKENS:,} tokens per domain (n x T)."))
    seed = int(c[2].number_input("Seed", min_value=0, value=0, key="dorm_seed"))
    top = int(c[3].number_input("Top heads", min_value=1, max_value=20, value=5, key="dorm_top"))
    ablate = bool(c[4].checkbox("Ablate them (slower)", value=False, key="dorm_ablate"))
    st.form_submit_button("Compute", type="primary")
st.caption(f"Input: {n} windows of {T} tokens from each of the prose and code corpora (seed {seed}), drawn here, "
           "not the sidebar input: dormancy is defined by comparing two domains. The table's last column is each "
           "head's dormancy on the sidebar input.")
with shown_errors():
    check_total_tokens(n, T)
steps = "ablating the top heads" if ablate else "no ablation"
with shown_errors(), st.spinner(f"Dormancy of every head on {n} x {T} tokens per domain, then {steps} ..."):
    res = dormant_result(settings.spec, settings.device, settings.dtype, n, T, seed, top, ablate)
given = sidebar_rows(model, settings)
width = min(len(r) for r in given.rows)
mine = None
if width >= 2:
    with shown_errors(), st.spinner("Dormancy on the sidebar input ..."):
        mine = input_dormancy(settings.spec, settings.device, settings.dtype, tuple(r[:width] for r in given.rows))
tag = f"{model.facts.spec}_n{n}_T{T}_seed{seed}"
data = res.to_dict()
json_download(data, f"dormant_{tag}", label="Dormancy result JSON")
plot(figs.dormancy_scatter(data), f"dormancy_{tag}")
a, b = res.domains
rows = [{"layer": r.layer, "head": r.head, "role": r.role, f"dormancy_{a}": r.dormancy[a],
         f"dormancy_{b}": r.dormancy[b], "difference": r.difference,
         "dormancy_sidebar_input": float(mine[r.layer, r.head]) if mine is not None else None,
         **{f"loss_delta_{d}_{mode}": v for d, modes in r.loss_delta.items() for mode, v in modes.items()}}
        for r in res.rows]
table(pd.DataFrame(rows), f"dormant_heads_{tag}")
st.caption(f"dormancy_sidebar_input: mean attention on the first token over later queries on {describe_input(settings, given)}"
           + ("" if mine is not None else " (needs at least 2 tokens)") + ".")
