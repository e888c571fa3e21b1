"""Model page: the loaded model's canonical facts and a quick attention explorer (probes.capture)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.ui.downloads import json_download, plot, table
from app.ui.errors import shown_errors
from app.ui.figures import attention_pattern_figure
from app.ui.model import current_model, head_patterns, input_rows
from app.ui.sidebar import current_settings

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
rows = input_rows(model, settings)
left, mid, right = st.columns(3)
seq = 0
if len(rows.rows) > 1:
    seq = int(left.selectbox("Sequence", range(len(rows.rows)), format_func=lambda i: rows.labels[i], key="seq"))
layer = int(mid.number_input("Layer", min_value=0, max_value=facts.n_layers - 1, value=min(5, facts.n_layers - 1),
                             key="layer"))
group = facts.n_heads // facts.n_kv_heads
head = int(right.number_input("Head", min_value=0, max_value=facts.n_heads - 1, value=0, key="head",
                              help=f"Query head; {group} query heads share each key/value head." if group > 1 else None))
with shown_errors(), st.spinner("Running the model ..."):
    patterns, str_tokens = head_patterns(settings.spec, settings.device, settings.dtype, rows.rows[seq],
                                         rows.prepend_bos, layer)
name = f"attention_{facts.spec}_L{layer}H{head}"
kv = f", key/value head {model.kv_group(head)}" if facts.n_kv_heads < facts.n_heads else ""
plot(attention_pattern_figure(patterns[head], str_tokens,
                              f"{facts.spec}: layer {layer}, head {head}{kv} - attention pattern"), name)
first = patterns[:, :, 0].mean(axis=1)
st.caption(f"Mean attention on the first token ({str_tokens[0]!r}) in layer {layer}, per head: "
           + ", ".join(f"h{h} {v:.2f}" for h, v in enumerate(first)))
