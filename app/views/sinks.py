"""Attention sinks page (spec: attention-sinks.md, Gu et al. 2024), built on probes.sinks.

Contract used (fixed with the sinks helper): inputs_for_regime(model, regime, n, T, seed, prepend_bos)
-> ids [n, T]; compute_sinks(model, ids, eps, prepend_bos, regime, batch_size, reporter=) -> SinkResult
with alpha [n, layer, head, T], sink_rate [T] (%), sink1 (%), head_rate [layer, head] (%), str_tokens, to_dict().

Input: the sidebar's prompt or corpus sample (regime "input", the default, so the page follows the
sidebar), or sequences the page draws for one of the spec's regimes (natural / random / repeat),
which the page then says. n x T is capped (app.ui.inputs) and checked against the memory budget.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app.figures import sinks as figs
from app.figures.attention import attention_pattern_figure, head_grid_figure, token_bar_figure
from app.ui.downloads import json_download, plot, table
from app.ui.errors import shown_errors
from app.ui.inputs import (
    MAX_TOTAL_TOKENS,
    PATTERN_MAX_TOKENS,
    check_budget,
    check_total_tokens,
    describe_input,
    sidebar_rows,
    token_window,
)
from app.ui.model import current_model, get_model, head_patterns
from app.ui.progress import StreamlitReporter
from app.ui.sidebar import current_settings
from probes import sinks
from probes.hidden_sinks import detect_hidden_sinks

REGIMES = {"input": "the sidebar input", "natural": "natural text (corpus)", "random": "random tokens", "repeat": "one token repeated"}
BOS = {"default": None, "prepend": True, "none": False}
HIDDEN_MIN_QUERIES = 8  # hidden sinks count only keys seen by at least 8 queries (as `glasshouse sinks` shows them)


@st.cache_data(show_spinner=False, max_entries=16)
def sink_result(spec: str, device: str, dtype: str, regime: str, n: int, T: int, eps: float, seed: int,
                bos: str, batch_size: int, rows: tuple[tuple[int, ...], ...] = (),
                rows_bos: bool = False) -> tuple[Any, list[list[int]]]:
    """compute_sinks on inputs_for_regime (or on `rows`, the sidebar input, for regime "input"), cached by
    every input; shows a progress bar while it runs. An interrupted run raises out of here, so st.cache_data
    keeps nothing of it."""
    import torch

    model = get_model(spec, device, dtype)
    if regime == "input":
        ids, prepend, label = torch.tensor(rows, dtype=torch.long), rows_bos, "custom"
    else:
        want = BOS[bos]
        prepend = model.facts.prepends_bos if want is None else want
        ids, label = sinks.inputs_for_regime(model, regime, n, T, seed=seed, prepend_bos=want), regime
    n, T = ids.shape
    reporter = StreamlitReporter(f"Sink metric on {n} x {T} tokens ...")
    result = sinks.compute_sinks(model, ids, eps=eps, prepend_bos=prepend, regime=label,
                                 batch_size=batch_size, reporter=reporter)
    reporter.close()
    return result, [[int(t) for t in row] for row in ids.tolist()]


@st.cache_data(show_spinner=False, max_entries=16)
def hidden_sinks(spec: str, device: str, dtype: str, rows: tuple[tuple[int, ...], ...]) -> Any:
    """probes.hidden_sinks.detect_hidden_sinks (ACT: alpha_k > 0.1) on the page's sequences, cached."""
    import torch

    model = get_model(spec, device, dtype)
    min_queries = min(HIDDEN_MIN_QUERIES, len(rows[0]) - 1)
    reporter = StreamlitReporter("Hidden sinks ...")
    result = detect_hidden_sinks(model, torch.tensor(rows), min_queries=min_queries, reporter=reporter)
    reporter.close()
    return result


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().float().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=float)


settings = current_settings()
st.title("Attention sinks")
st.caption("Sink_k^eps (Gu et al. 2024): the percentage of (sequence, layer, head) triples whose mean attention "
           "alpha on key k, averaged over the queries that can see it, exceeds eps.")
model = current_model(settings)
facts = model.facts

with st.form("sink_inputs"):
    c = st.columns(6)
    regime = c[0].selectbox("Input", list(REGIMES), format_func=REGIMES.__getitem__, key="sink_regime",
                            help="The sidebar input (prompt or corpus sample), or sequences drawn here for one of "
                                 "the spec's regimes (Sequences, Tokens, Seed and BOS apply to those only).")
    n = int(c[1].number_input("Sequences", min_value=1, max_value=1024, value=16, key="sink_n"))
    T = int(c[2].number_input("Tokens (T)", min_value=2, max_value=min(facts.n_ctx, 1024), value=64, step=16,
                              key="sink_T", help=f"At most {MAX_TOTAL_TOKENS:,} tokens in all (n x T)."))
    eps = float(c[3].number_input("eps", min_value=0.0, max_value=1.0, value=0.3, step=0.05, key="sink_eps"))
    seed = int(c[4].number_input("Seed", min_value=0, value=0, key="sink_seed"))
    bos = c[5].selectbox("BOS", list(BOS), key="sink_bos",
                         format_func=lambda b: {"default": f"tokenizer default ({'yes' if facts.prepends_bos else 'no'})",
                                                "prepend": "prepend BOS", "none": "no BOS"}[b])
    batch_size = 8
    st.form_submit_button("Compute", type="primary")
want_bos = BOS[str(bos)]
prepend = facts.prepends_bos if want_bos is None else want_bos
rows: tuple[tuple[int, ...], ...] = ()
if regime == "input":
    given = sidebar_rows(model, settings)
    rows, prepend = given.rows, given.prepend_bos
    n, T = len(rows), min(len(r) for r in rows)
    st.caption(f"Input: {describe_input(settings, given)}; change it in the sidebar, or pick a regime above to "
               "draw sequences here.")
    if T < 2:
        st.error("The sink metric needs at least 2 tokens; the sidebar prompt has 1. Type a longer prompt.",
                 icon=":material/error:")
        st.stop()
    rows = tuple(r[:T] for r in rows)
else:
    st.caption(f"Input: {n} sequences of {T} tokens drawn here ({REGIMES[str(regime)]}, seed {seed}), not the "
               "sidebar input: pick **the sidebar input** above to measure your own text.")
with shown_errors():
    check_total_tokens(n, T)
    check_budget(model, n, T, 4 * n * facts.n_layers * facts.n_heads * T, batch_size, what="sink run")
    result, ids = sink_result(settings.spec, settings.device, settings.dtype, str(regime), n, T, eps, seed,
                              str(bos), batch_size, rows, prepend)

alpha = _numpy(result.alpha)  # [n, layer, head, T]
sink_rate = _numpy(result.sink_rate)
head_rate = _numpy(result.head_rate)
first_alpha = alpha[:, :, :, 0].mean(axis=0)
tag = f"{facts.spec}_{regime}_n{n}_T{T}_eps{eps:g}" + ("" if regime == "input" else f"_seed{seed}")

m = st.columns(4)
m[0].metric(f"Sink_1^{eps:g}", f"{float(result.sink1):.2f} %",
            help="Percentage of (sequence, layer, head) with alpha on the first token above eps.")
m[1].metric("Sequences x tokens", f"{n} x {T}")
m[2].metric("Always-sink heads", f"{int((head_rate >= 100.0).sum())} / {head_rate.size}",
            help=f"Heads with alpha_1 > {eps:g} (a first-token sink) in every sequence.")
m[3].metric("Max Sink_k, k > 1", f"{float(sink_rate[1:].max()) if len(sink_rate) > 1 else 0.0:.2f} %",
            help="The largest Sink_k^eps beyond the first token.")
data = result.to_dict()
json_download(data, f"sinks_{tag}", label="Sink result JSON")

view = st.radio("Heatmap colour", ["alpha", "rate"], horizontal=True, key="sink_view",
                format_func=lambda v: {"alpha": "mean alpha on the first token",
                                       "rate": f"% of sequences with alpha_1 > {eps:g}"}[v])
if view == "alpha":
    grid = figs.first_token_heatmap(data)
else:
    grid = head_grid_figure(data["head_rate"], f"{facts.spec}: heads with a first-token sink ({regime}, eps {eps:g})",
                            f"% sequences<br>alpha_1 > {eps:g}", zmax=100.0, hover_unit=" %")
plot(grid, f"sinks_heads_{view}_{tag}")
plot(figs.sink_rate_by_regime({str(regime): data}), f"sinks_by_position_{tag}")

with st.expander("Per-head table"):
    layer_idx, head_idx = np.meshgrid(np.arange(facts.n_layers), np.arange(facts.n_heads), indexing="ij")
    table(pd.DataFrame({"layer": layer_idx.ravel(), "head": head_idx.ravel(),
                        "mean_alpha_first_token": first_alpha.ravel(),
                        f"pct_sequences_alpha1_gt_{eps:g}": head_rate.ravel()}), f"sinks_per_head_{tag}")

st.header("Token by token")
cols = st.columns(3)
seq = int(cols[0].number_input("Sequence", min_value=0, max_value=n - 1, value=0, key="sink_seq"))
default_layer = int(np.unravel_index(np.argmax(first_alpha), first_alpha.shape)[0])
layer = int(cols[1].number_input("Layer", min_value=0, max_value=facts.n_layers - 1, value=default_layer,
                                 key="sink_layer"))
head = int(cols[2].number_input("Head", min_value=0, max_value=facts.n_heads - 1, value=0, key="sink_head"))
plot(figs.token_view(data, seq), f"sinks_tokens_{tag}_s{seq}")

with shown_errors(), st.spinner(f"Detecting hidden sinks (ACT, alpha_k > 0.1) on {n} x {T} tokens ..."):
    hidden = hidden_sinks(settings.spec, settings.device, settings.dtype, tuple(map(tuple, ids)))
is_sink = _numpy(hidden.alpha) > hidden.threshold
last = T - min(HIDDEN_MIN_QUERIES, T - 1)  # positions seen by fewer queries are not counted (as the CLI does)
hidden_here = [k for k in range(1, last + 1) if is_sink[seq, layer, head, k]]
key_alpha = alpha[seq, layer, head]
with shown_errors(), st.spinner(f"Attention patterns of layer {layer} on sequence {seq} ..."):
    patterns, str_tokens = head_patterns(settings.spec, settings.device, settings.dtype, tuple(ids[seq]),
                                         prepend, layer)
bar_title = f"(red: hidden sinks, alpha > {hidden.threshold:g} at k > 1)"
line, marked = float(hidden.threshold), hidden_here
plot(token_bar_figure(key_alpha, str_tokens, f"Sequence {seq}, layer {layer}, head {head}: alpha per key {bar_title}",
                      "alpha (mean attention from later queries)", threshold=line, highlight=marked),
     f"sinks_alpha_tokens_{tag}_s{seq}_L{layer}H{head}")
st.caption(f"Hidden sinks of this head in this sequence: {len(hidden_here)} "
           + (", ".join(f"{k}: {str_tokens[k]!r}" for k in hidden_here) if hidden_here else "")
           + f". Over all heads and sequences, {float(_numpy(hidden.hidden_rate).mean()):.1f} % of "
           "(sequence, head) pairs have one.")
with st.expander("Hidden sinks in context (strongest first)"):
    table(pd.DataFrame([{"layer": e.layer, "head": e.head, "sequence": e.sample, "position": e.position,
                         "token": e.token, "alpha": e.alpha, "context": e.context} for e in hidden.examples],
                       columns=["layer", "head", "sequence", "position", "token", "alpha", "context"]),
          f"hidden_sinks_{tag}")
start, stop = token_window(len(str_tokens), PATTERN_MAX_TOKENS, key="sink_pattern_start", what="The pattern heatmap")
plot(attention_pattern_figure(patterns[head], str_tokens, f"Sequence {seq}, layer {layer}, head {head}: attention pattern",
                              start=start, stop=stop), f"sinks_pattern_{tag}_s{seq}_L{layer}H{head}")
