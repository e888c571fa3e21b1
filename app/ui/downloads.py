"""Download buttons: every figure as HTML (and PNG/SVG where kaleido works), every table as CSV and JSON.

Data is produced only when a button is clicked (Streamlit's deferred download data), so a page
with many figures stays light.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from probes.io import to_jsonable


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "figure"


@cache
def static_export_available() -> bool:
    """Whether PNG/SVG can be offered: kaleido imports (it drives a Chromium to render). Asked once per process."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False
    return True


def _html(fig: go.Figure) -> Callable[[], str]:
    # Self-contained: plotly.js inlined, so the file opens offline.
    return lambda: fig.to_html(include_plotlyjs=True, full_html=True)


def _image(fig: go.Figure, fmt: str) -> Callable[[], bytes]:
    return lambda: bytes(fig.to_image(format=fmt))


def figure_downloads(fig: go.Figure, name: str) -> None:
    """A row of download buttons under a figure."""
    base = slug(name)
    formats: list[tuple[str, Any, str]] = [("HTML", _html(fig), "text/html")]
    if static_export_available():
        formats += [("PNG", _image(fig, "png"), "image/png"), ("SVG", _image(fig, "svg"), "image/svg+xml")]
    cols = st.columns(len(formats) + 3)
    for col, (label, data, mime) in zip(cols, formats, strict=False):
        col.download_button(label, data=data, file_name=f"{base}.{label.lower()}", mime=mime,
                            key=f"dl-fig-{base}-{label}", on_click="ignore", icon=":material/download:")


def plot(fig: go.Figure, name: str) -> None:
    """Show a figure and its download buttons."""
    st.plotly_chart(fig, key=f"fig-{slug(name)}", config={"displaylogo": False})
    figure_downloads(fig, name)


def table_downloads(df: pd.DataFrame, name: str) -> None:
    """CSV and JSON buttons for a table."""
    base = slug(name)
    c1, c2, _ = st.columns([1, 1, 4])
    c1.download_button("CSV", data=lambda: df.to_csv(index=False), file_name=f"{base}.csv", mime="text/csv",
                       key=f"dl-tab-{base}-csv", on_click="ignore", icon=":material/download:")
    c2.download_button("JSON", data=lambda: df.to_json(orient="records", indent=1), file_name=f"{base}.json",
                       mime="application/json", key=f"dl-tab-{base}-json", on_click="ignore",
                       icon=":material/download:")


def table(df: pd.DataFrame, name: str) -> None:
    """Show a table and its download buttons."""
    st.dataframe(df, hide_index=True, key=f"tab-{slug(name)}")
    table_downloads(df, name)


def json_download(data: Any, name: str, label: str = "Result JSON") -> None:
    """One button for a whole result (its to_dict())."""
    base = slug(name)
    st.download_button(label, data=lambda: json.dumps(to_jsonable(data), indent=1), file_name=f"{base}.json",
                       mime="application/json", key=f"dl-json-{base}", on_click="ignore",
                       icon=":material/download:")
