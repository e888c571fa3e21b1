"""Declared analyses page (docs/app.md, "Declared analyses"): any analysis declared with probes.analysis, with
its controls generated from its settings dataclass and its run through probes.analysis.run_analysis.

Input: the sidebar's prompt or corpus sample, as the page says. The page names no analysis: a new declaration
appears here with its controls (a number box per int or float setting, with the declared range; a choice box;
a checkbox), its summary lines, its row figure (app/figures/batch.py ROW_FIGURES) or, for a report whose
result is a saved document (sinks, extreme, dormant, successor), the figures its command draws, its rows as a
table and the result JSON to download. A page of its own (sinks, dormant, ...) keeps only its custom views.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd
import streamlit as st

from app.declared import analyses
from app.figures.batch import ROW_FIGURES
from app.figures.registry import draw, kinds
from app.ui.downloads import json_download, plot, table
from app.ui.errors import shown_errors
from app.ui.inputs import describe_input
from app.ui.model import current_model, get_model, input_rows
from app.ui.progress import StreamlitReporter
from app.ui.sidebar import current_settings
from probes.analysis import SettingInfo, get_analysis, run_declared


@st.cache_data(show_spinner=False, max_entries=16)
def declared_result(name: str, spec: str, device: str, dtype: str, rows: tuple[tuple[int, ...], ...],
                    values: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    """The analysis's result and rows on the given token rows, cached by its inputs."""
    import sys

    import torch

    from probes.corpus import CorpusSample
    from probes.io import to_jsonable

    analysis = get_analysis(name)
    model = get_model(spec, device, dtype)
    settings = analysis.make_settings(dict(values))
    ids = torch.tensor(rows, dtype=torch.long)
    corpus = CorpusSample("input", ids, [""] * len(rows), ["sidebar"] * len(rows), 0, sys.version.split()[0])
    reporter = StreamlitReporter(f"{name} ...")
    result = run_declared(analysis, model, settings, corpus if analysis.uses_corpus else None, 0, reporter=reporter)
    reporter.close()
    summary = analysis.summary(result) if analysis.summary else []
    return {"kind": "analysis", "analysis": name, "model": spec, "settings": dataclasses.asdict(settings), "result": to_jsonable(result),
            "rows": analysis.rows(result), "summary": summary, "document": analysis.document}


def control(info: SettingInfo, key: str) -> Any:
    """One widget for one setting, bounded as declared."""
    if info.type is bool:
        return st.checkbox(info.name, value=info.default, help=info.help, key=key)
    if info.choices is not None:
        return st.selectbox(info.name, list(info.choices), index=list(info.choices).index(info.default),
                            help=info.help, key=key)
    if info.type is int:
        lo = None if info.minimum is None else int(info.minimum) + int(info.open_low)
        hi = None if info.maximum is None else int(info.maximum) - int(info.open_high)
        return int(st.number_input(info.name, min_value=lo, max_value=hi, value=info.default, step=1,
                                   help=info.help, key=key))
    if info.type is float:
        return float(st.number_input(info.name, min_value=info.minimum, max_value=info.maximum,
                                     value=float(info.default), format="%.4g", help=f"{info.help} ({info.range_text()})",
                                     key=key))
    return st.text_input(info.name, value=str(info.default), help=info.help, key=key)


settings = current_settings()
st.title("Declared analyses")
st.caption("Every analysis declared once in probes/analyses/, run with the controls its settings declare.")
model = current_model(settings)
declared = {a.name: a for a in analyses()}
name = st.selectbox("Analysis", list(declared), format_func=lambda n: f"{n}: {declared[n].description}",
                    key="declared_name")
analysis = declared[name]
st.caption(f"Method page: {analysis.method}. Runs {'here or remotely (--backend)' if analysis.remote else 'here'}.")
with st.form(f"declared_{name}"):
    infos = list(analysis.info().values())
    columns = st.columns(max(1, min(4, len(infos))))
    values: dict[str, Any] = {}
    for i, info in enumerate(infos):
        with columns[i % len(columns)]:
            values[info.name] = control(info, f"declared_{name}_{info.name}")
    st.form_submit_button("Compute", type="primary")
with shown_errors():
    rows = input_rows(model, settings)
    st.caption(f"Input: {describe_input(settings, rows)}.")
    problems = analysis.check(values)
    if problems:
        st.error("; ".join(problems) + ".")
        st.stop()
    data = declared_result(name, settings.spec, settings.device, settings.dtype, rows.rows,
                           tuple(sorted(values.items())))
    for line in data["summary"]:
        st.write(line)
    if name in ROW_FIGURES:
        plot(ROW_FIGURES[name](data["rows"], settings.spec), name)
    if data["document"] in kinds():  # a report: the figures of its saved document, as its command draws them
        for figure_name, figure in draw(data["result"]).items():
            plot(figure, figure_name)
    table(pd.DataFrame(data["rows"]), f"{name}_rows")
    json_download(data, name)
