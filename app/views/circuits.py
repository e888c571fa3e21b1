"""Circuits page (spec: circuits.md): edge attribution (EAP, EAP-IG, position-aware EAP), faithfulness
curves and the circuit graph with spans (token positions) as columns, built on circuits/ and
app/figures/circuits.py.

The run is circuits.discover.discover, the function `glasshouse circuit` calls, with an
app.ui.progress.StreamlitReporter for its progress bar. Nothing runs until **Find circuit** is pressed
(attribution takes seconds to minutes on CPU); results are cached by every input.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app.figures import circuits as figs
from app.ui.downloads import json_download, plot, table
from app.ui.errors import shown_errors
from app.ui.model import current_model, get_model
from app.ui.progress import StreamlitReporter
from app.ui.sidebar import current_settings
from circuits.discover import discover
from circuits.tasks import TASKS
from probes.errors import InputError

MAX_COUNTS = 20
MAX_DRAWN_EDGES = 2000  # edges the circuit graph draws (each is a line and a hover label)
KINDS = {"agnostic": "position-agnostic only", "aware": "position-aware only", "both": "both kinds"}


def parse_counts(text: str) -> tuple[int, ...]:
    """Edge counts of the curve from '10,100,1000' (sorted, distinct, positive)."""
    try:
        counts = sorted({int(c) for c in text.split(",") if c.strip()})
    except ValueError:
        raise InputError(f"Edge counts must be comma-separated whole numbers, like 10,100,1000 (got {text!r}).") from None
    if not counts or counts[0] < 1:
        raise InputError(f"Give at least one positive edge count, like 10,100,1000 (got {text!r}).")
    if len(counts) > MAX_COUNTS:
        raise InputError(f"Give at most {MAX_COUNTS} edge counts (got {len(counts)}); each one is a faithfulness run.")
    return tuple(counts)


@st.cache_data(show_spinner=False, max_entries=8)
def circuit_result(spec: str, device: str, dtype: str, task: str, n: int, method: str, steps: int, which: str,
                   counts: tuple[int, ...], seed: int, draw: int) -> dict[str, Any]:
    """circuits.discover.discover (what `glasshouse circuit` runs) with a progress bar; its to_dict(), cached
    by every input. The drawn circuit is capped at MAX_DRAWN_EDGES edges."""
    reporter = StreamlitReporter("Building the task ...")
    try:
        result = discover(get_model(spec, device, dtype), task, n=n, method=method, steps=steps, which=which,
                          counts=counts, seed=seed, draw=draw or None, reporter=reporter, max_draw=MAX_DRAWN_EDGES)
    finally:
        reporter.close()
    return dict(result.to_dict())


def submit() -> None:
    st.session_state["circ_run"] = True


settings = current_settings()
st.title("Circuits")
st.caption("Edge attribution patching scores every edge of the model's graph; greedy circuits grown from the logits "
           "are measured by normalized faithfulness (1: the full model, 0: every edge patched with the corrupted run).")
st.caption("Input: the task's own clean/corrupted prompt pairs (drawn from its templates with the seed), not the "
           "sidebar input: attribution needs matched pairs whose answers differ.")
task_names = list(TASKS)
model = current_model(settings)

with st.form("circ_inputs"):
    c = st.columns(4)
    task = str(c[0].selectbox("Task", task_names, index=task_names.index("succession") if "succession" in task_names
                              else 0, key="circ_task"))
    n = int(c[1].number_input("Examples", min_value=1, max_value=256, value=4, key="circ_n"))
    method = str(c[2].selectbox("Method", ["eap", "eap-ig"], key="circ_method"))
    steps = int(c[3].number_input("EAP-IG steps", min_value=1, max_value=64, value=5, key="circ_steps"))
    c2 = st.columns(4)
    which = str(c2[0].selectbox("Circuits", list(KINDS), format_func=KINDS.__getitem__, key="circ_which"))
    counts_text = c2[1].text_input("Edge counts on the curve", value="10,100,1000", key="circ_counts")
    draw = int(c2[2].number_input("Edges in the drawn circuit (0: first count reaching 0.8)", min_value=0,
                                  max_value=MAX_DRAWN_EDGES, value=0, key="circ_draw",
                                  help=f"At most {MAX_DRAWN_EDGES:,}: the graph draws every edge."))
    seed = int(c2[3].number_input("Seed", min_value=0, value=0, key="circ_seed"))
    st.form_submit_button("Find circuit", type="primary", on_click=submit)
if not st.session_state.get("circ_run"):
    st.info("Choose a task and press **Find circuit**. Attribution on the embedded model takes from seconds "
            "(4 examples, position-agnostic) to minutes (position-aware, more examples) on a CPU.",
            icon=":material/account_tree:")
    st.stop()
with shown_errors():
    counts = parse_counts(counts_text)
    result = circuit_result(settings.spec, settings.device, settings.dtype, task, n, method, steps, which, counts,
                            seed, draw)

tag = f"{model.facts.spec}_{task}_n{n}_{method}_{which}_seed{seed}"
m = st.columns(4)
m[0].metric("Clean metric (full graph)", f"{result['full_graph_metric']:.4f}",
            help="Mean task metric over the examples, every edge kept.")
m[1].metric("Empty circuit", f"{result['empty_circuit_metric']:.4f}", help="Every edge patched from the corrupted run.")
m[2].metric("Examples", result["task"]["n_examples"])
m[3].metric("Metric", result["task"]["metric"])
json_download(result, f"circuit_{tag}", label="Circuit result JSON")
plot(figs.curves_figure(result["curves"], f"{task}: faithfulness against circuit size"), f"circuit_curves_{tag}")
table(pd.DataFrame([{"circuit": c["label"], "edges": e, "edges_after_pruning": k, "faithfulness": f}
                    for c in result["curves"]
                    for e, k, f in zip(c["edges"], c.get("pruned_sizes", c["edges"]), c["faithfulness"], strict=True)]),
      f"circuit_curves_{tag}")

labels = list(result["circuits"])
label = str(st.radio("Circuit to draw", labels, horizontal=True, key="circ_label")) if len(labels) > 1 else labels[0]
circuit = result["circuits"][label]
plot(figs.circuit_figure(circuit, f"{task}, {label} circuit"), f"circuit_graph_{label}_{tag}")
with st.expander(f"Edges of the {label} circuit ({circuit['n_edges']})"):
    table(pd.DataFrame([{k: e[k] for k in ("src", "dst", "slot_name", "src_span", "dst_span", "score")}
                        for e in circuit["edges"]], columns=["src", "dst", "slot_name", "src_span", "dst_span", "score"]),
          f"circuit_edges_{label}_{tag}")
with st.expander("Task examples (first 5)"):
    t = result["task"]
    if t["clean_text"] and len(t["clean_text"]) == len(t["corrupted_text"]):
        table(pd.DataFrame({"clean": t["clean_text"], "corrupted": t["corrupted_text"]}), f"circuit_examples_{tag}")
    st.caption(f"Spans: {', '.join(t['schema'])}. {t.get('notes', '')}")
