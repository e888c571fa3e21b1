"""Model page: the loaded model's canonical facts and a quick attention explorer (probes.model.capture) on the
sidebar input. The pattern heatmap draws at most PATTERN_MAX_TOKENS positions (a window the user
picks); the full pattern is a download."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import streamlit as st
import torch

from app.figures.attention import attention_pattern_figure
from app.ui.downloads import json_download, plot, slug, table
from app.ui.errors import shown_errors
from app.ui.inputs import PATTERN_MAX_TOKENS, describe_input, sidebar_rows, token_window
from app.ui.model import current_model, head_patterns
from app.ui.sidebar import current_settings
from probes.quantities import first_token_attention

settings = current_settings()
st.title("Model")
model = current_model(settings)
facts = model.facts

st.subheader(f"{facts.spec}  ·  {facts.architecture}")
c = st.columns(5)
c[0].metric("Layers", facts.n_layers)
c[1].metric("Query heads", facts.n_heads)
c[2].metric("Key/value heads", facts.n_kv_heads)
c[3].metric("d_model", facts.d_model)
c[4].metric("Parameters", f"{facts.n_params / 1e6:.1f} M")
with st.expander("All canonical facts (model.facts)"):
    table(pd.DataFrame({"fact": list(facts.to_dict()), "value": [str(v) for v in facts.to_dict().values()]}),
          f"facts_{facts.spec}")
    json_download(facts.to_dict(), f"facts_{facts.spec}", label="Facts JSON")

st.header("Attention explorer")
rows = sidebar_rows(model, settings)
st.caption(f"Input: {describe_input(settings, rows)}; change it in the sidebar.")
left, mid, right = st.columns(3)
seq = 0
if len(rows.rows) > 1:
    seq = int(left.selectbox("Sequence", range(len(rows.rows)), format_func=lambda i: rows.labels[i], key="seq"))
layer = int(mid.number_input("Layer", min_value=0, max_value=facts.n_layers - 1, value=min(5, facts.n_layers - 1),
                             key="layer"))
group = facts.n_heads // facts.n_kv_heads
head = int(right.number_input("Head", min_value=0, max_value=facts.n_heads - 1, value=0, key="head",
                              help=f"Query head; {group} query heads share each key/value head." if group > 1 else None))
with shown_errors(), st.spinner(f"Running the model on {len(rows.rows[seq])} tokens (layer {layer} patterns) ..."):
    patterns, str_tokens = head_patterns(settings.spec, settings.device, settings.dtype, rows.rows[seq],
                                         rows.prepend_bos, layer)
name = f"attention_{facts.spec}_L{layer}H{head}"
kv = f", key/value head {model.kv_group(head)}" if facts.n_kv_heads < facts.n_heads else ""
start, stop = token_window(len(str_tokens), PATTERN_MAX_TOKENS, key="pattern_start", what="The heatmap")
window = "" if (start, stop) == (0, len(str_tokens)) else f" (positions {start}..{stop - 1})"
plot(attention_pattern_figure(patterns[head], str_tokens, f"{facts.spec}: layer {layer}, head {head}{kv} - "
                              f"attention pattern{window}", start=start, stop=stop), name)


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _pattern_csv(a: np.ndarray) -> str:
    q, k = np.tril_indices(a.shape[0])
    return pd.DataFrame({"query": q, "key": k, "attention": a[q, k]}).to_csv(index=False)


full = patterns[head]
c1, c2, _ = st.columns([1, 1, 3])
c1.download_button("Full pattern (NPY)", data=lambda: _npy(full), file_name=f"{slug(name)}_pattern.npy",
                   mime="application/octet-stream", key="dl-pattern-npy", on_click="ignore",
                   help=f"[query, key] float32, all {len(str_tokens)} positions.", icon=":material/download:")
c2.download_button("Full pattern (CSV)", data=lambda: _pattern_csv(full), file_name=f"{slug(name)}_pattern.csv",
                   mime="text/csv", key="dl-pattern-csv", on_click="ignore",
                   help="query, key, attention (the causal lower triangle).", icon=":material/download:")
first = first_token_attention(torch.as_tensor(patterns), min_query=0).numpy()  # queries from 0, as alpha_1
st.caption(f"Mean attention on the first token ({str_tokens[0]!r}) in layer {layer}, per head: "
           + ", ".join(f"h{h} {v:.2f}" for h, v in enumerate(first)))
