"""Successor heads page (spec: successor-heads.md, Gould et al. 2023), built on probes.successor.

Shows the first-order successor score of every head (effective OV circuit W_U . W_OV . MLP0(W_E[t])),
one head's accuracy per task beside chance, and a live view: type a token, see which tokens the
chosen head's effective OV circuit promotes for it (top logits over the whole vocabulary).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app.figures import successor as figs
from app.ui.downloads import json_download, plot, table
from app.ui.errors import shown_errors
from app.ui.model import current_model, get_model
from app.ui.progress import StreamlitReporter
from app.ui.sidebar import current_settings
from probes import successor
from probes.errors import InputError

NORMS = {"auto": "auto (none for LayerNorm, all for RMSNorm)", "none": "none (the paper's GPT-2 setting)",
         "mlp": "MLP0's input norm only", "all": "every norm on the path"}
SOURCES = {"mlp0": "MLP0(W_E[t]) (the paper)", "resid": "residual entering the head's layer ([BOS, t])"}
TOP_K = 15


@st.cache_data(show_spinner=False, max_entries=16)
def successor_scores(spec: str, device: str, dtype: str, norm: str, source: str, threshold: float) -> dict[str, Any]:
    """probes.successor.score_heads on the standard tasks, as its to_dict(), cached by its inputs."""
    model = get_model(spec, device, dtype)
    settings = successor.OVSettings(norm=norm, source=source)
    reporter = StreamlitReporter("Successor scores ...")
    result = dict(successor.score_heads(model, settings=settings, threshold=threshold, reporter=reporter).to_dict())
    reporter.close()
    return result


def token_id(model: Any, text: str) -> int:
    """The id of `text` if it is exactly one token; InputError saying what it is otherwise."""
    from probes.successor.dataset import single_token_id

    if not text:
        raise InputError("Type a token, e.g. ' Monday' (with its leading space) or ' March'.")
    tid = single_token_id(model.tokenizer, text)
    if tid is not None:
        return tid
    tok = getattr(model.tokenizer, "tokenizer", model.tokenizer)
    ids = list(tok(text, add_special_tokens=False).input_ids)
    pieces = [tok.decode([i]) for i in ids]
    shown = " + ".join(repr(p) for p in pieces)
    raise InputError(f"{text!r} is {len(ids)} tokens ({shown}), not one: type a single token, e.g. ' Monday' "
                     "with its leading space (the tasks' items are single tokens).")


@st.cache_data(show_spinner=False, max_entries=64)
def head_predictions(spec: str, device: str, dtype: str, norm: str, source: str, layer: int, head: int,
                     tid: int, k: int) -> list[dict[str, Any]]:
    """The k output tokens with the highest effective-OV logit of (layer, head) for source token `tid`."""
    import torch

    model = get_model(spec, device, dtype)
    vocab = model.W_U.shape[1]
    logits = successor.ov_logits(model, [tid], torch.arange(vocab), successor.OVSettings(norm=norm, source=source),
                                 layers=[layer])[0, head, 0]
    values, ids = torch.topk(logits, k)
    tok = getattr(model.tokenizer, "tokenizer", model.tokenizer)
    return [{"rank": r + 1, "token_id": int(i), "token": tok.decode([int(i)]), "logit": float(v)}
            for r, (v, i) in enumerate(zip(values.tolist(), ids.tolist(), strict=True))]


settings = current_settings()
st.title("Successor heads")
st.caption("A successor head maps a token of an ordered sequence (Monday, 3, March, C) to its successor through "
           "its OV circuit: W_U . W_OV . MLP0(W_E[t]) ranks succ(t) first among the task's tokens.")
st.caption("Input: none from the sidebar. The scores read the weights only (the effective OV circuit on the "
           "tasks' token lists: days, months, numbers, letters); the last section reads the token you type.")
model = current_model(settings)
facts = model.facts

with st.form("succ_inputs"):
    c = st.columns(3)
    norm = str(c[0].selectbox("Norms on the OV path", list(NORMS), format_func=NORMS.__getitem__, key="succ_norm"))
    source = str(c[1].selectbox("What a head reads for t", list(SOURCES), format_func=SOURCES.__getitem__,
                                key="succ_source"))
    threshold = float(c[2].number_input("Successor-head threshold", min_value=0.0, max_value=1.0, value=0.4,
                                        step=0.05, key="succ_threshold"))
    st.form_submit_button("Compute", type="primary")
with shown_errors(), st.spinner("Effective OV circuit of every head on every task ..."):
    scores = successor_scores(settings.spec, settings.device, settings.dtype, norm, source, threshold)
tag = f"{facts.spec}_norm{norm}_{source}"
best = scores["ranking"][0]
m = st.columns(4)
m[0].metric("Top head", f"L{best['layer']}H{best['head']}")
m[1].metric("Its score", f"{best['score']:.3f}", help="Fraction of all successor pairs it gets right.")
m[2].metric("Chance (pair-weighted)", f"{scores['chance']:.3f}")
m[3].metric(f"Heads with score >= {threshold:g}", len(scores["successor_heads"]))
skipped = scores["dataset"]["skipped"]
if skipped:
    st.caption("Tasks skipped for this tokenizer: " + "; ".join(f"{k} ({v.split(';')[0]})" for k, v in skipped.items()))
json_download(scores, f"successor_{tag}", label="Successor scores JSON")
plot(figs.score_heatmap(scores), f"successor_scores_{tag}")
with st.expander("Top heads (table)"):
    table(pd.DataFrame([{"layer": r["layer"], "head": r["head"], "score": r["score"], **r["per_task"]}
                        for r in scores["ranking"]]), f"successor_ranking_{tag}")

st.header("One head")
pick = st.columns(2)
layer = int(pick[0].number_input("Layer", min_value=0, max_value=facts.n_layers - 1, value=best["layer"], key="succ_layer"))
head = int(pick[1].number_input("Head", min_value=0, max_value=facts.n_heads - 1, value=best["head"], key="succ_head"))
tasks = [t["name"] for t in scores["dataset"]["tasks"]]
per_task = {t: float(scores["per_task"][t][layer][head]) for t in tasks}
chance = {t: float(scores["task_chance"][t]) for t in tasks}
pairs = {t["name"]: len(t["pairs"]) for t in scores["dataset"]["tasks"]}
st.metric(f"L{layer}H{head} successor score", f"{scores['scores'][layer][head]:.3f}",
          help="Fraction of all pairs of all tasks where succ(t) has the top effective-OV logit among the task's tokens.")
plot(figs.task_bars(per_task, chance, f"L{layer}H{head}: accuracy per task vs chance", "accuracy (fraction of pairs)"),
     f"successor_tasks_{tag}_L{layer}H{head}")
table(pd.DataFrame([{"task": t, "accuracy": per_task[t], "chance": chance[t], "pairs": pairs[t]} for t in tasks]),
      f"successor_head_tasks_{tag}_L{layer}H{head}")

st.header("Type a token")
st.caption("The chosen head's effective OV logits for one source token, over the whole vocabulary "
           "(same norms and source as above).")
typed = st.text_input("Token (one token; mind the leading space)", value=" Monday", key="succ_token")
with shown_errors():
    tid = token_id(model, typed)
    rows = head_predictions(settings.spec, settings.device, settings.dtype, norm, source, layer, head, tid, TOP_K)
st.caption(f"{typed!r} is token {tid}. Top prediction of L{layer}H{head}: {rows[0]['token']!r} "
           f"(logit {rows[0]['logit']:.3f}).")
plot(figs.prediction_figure(rows, typed, layer, head), f"successor_predict_{tag}_L{layer}H{head}_{tid}")
table(pd.DataFrame(rows), f"successor_predict_{tag}_L{layer}H{head}_{tid}")
