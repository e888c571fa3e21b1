"""The one theme every Glasshouse figure uses, and writing figures to disk.

Figures must be readable without explanation: a title, axis titles with units, and hover text
with the token strings where tokens are involved.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from probes.io import atomic_write, to_jsonable

FONT = "Inter, Helvetica, Arial, sans-serif"
COLORWAY = ["#2E5EAA", "#E07A2E", "#3A9D5D", "#C8443B", "#7D5BA6", "#8C6D46", "#D46FB0", "#6E6E6E"]
HEATMAP_SCALE = "Viridis"
DIVERGING_SCALE = "RdBu_r"


_VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}
EMPTY_TOKEN = "∅"


def token_label(token: str) -> str:
    """The one way a token string is shown in a figure (axes, ticks, hover, titles; docs/app.md, "Figures").

    Whitespace is made visible (space ␣, newline ↵, tab ⇥, carriage return ␍), other unprintable
    characters are written as Python escapes (\\x00), the empty string is ∅, and the result is HTML-escaped,
    since plotly reads tags in titles, ticks and hover text ("<s>" would strike the text through, "<bos>"
    would vanish)."""
    if not token:
        return EMPTY_TOKEN
    shown = "".join(_VISIBLE.get(c) or (c if c.isprintable() else repr(c)[1:-1]) for c in token)
    return html.escape(shown, quote=False)


def plain(data: Any) -> Any:
    """A result's to_dict() data as JSON would give it back (tensors and arrays as lists, non-finite floats
    as None, tuples as lists, keys as strings), so a figure drawn from a live result and one drawn from its
    saved JSON are the same figure."""
    return json.loads(json.dumps(to_jsonable(data)))


def number(value: float | None, spec: str = ".3f") -> str:
    """A number for hover text; None (how a saved JSON holds NaN) as "n/a"."""
    return "n/a" if value is None else format(value, spec)


def apply_theme(fig: go.Figure, width: int | None = None, height: int | None = None) -> go.Figure:
    """Apply the shared look (fonts, colours, margins, white background) in place and return the figure."""
    fig.update_layout(
        template="plotly_white",
        font={"family": FONT, "size": 13},
        title={"x": 0.02, "xanchor": "left", "font": {"size": 16}},
        colorway=COLORWAY,
        margin={"l": 70, "r": 30, "t": 70, "b": 60},
        hoverlabel={"font": {"family": FONT}},
    )
    if width:
        fig.update_layout(width=width)
    if height:
        fig.update_layout(height=height)
    return fig


def _ensure_plotly_js(folder: Path) -> None:
    """Put plotly.min.js beside the HTML figures once, so they render offline without a CDN."""
    from plotly.offline import get_plotlyjs

    js = folder / "plotly.min.js"
    if not js.exists():
        atomic_write(js, _bytes_writer(get_plotlyjs().encode()))


def _bytes_writer(data: bytes) -> Callable[[Path], int]:
    return lambda tmp: tmp.write_bytes(data)


def save_figure(
    fig: go.Figure | str, path_base: str | Path, formats: Sequence[str] = ("html",), width: int | None = None,
    height: int | None = None, scale: float = 1.0,
) -> list[Path]:
    """Write a figure as `path_base.<fmt>` for each format; HTML always works, offline too
    (it loads plotly.min.js written once into the same folder), and is saved with the figure's
    JSON (`path_base.plotly.json`) so that `glasshouse export` can re-render it later.

    Static formats (png, svg, pdf) go through app/export.py (kaleido + the system Chromium) at
    width x height CSS pixels (default: the figure's layout size, else 900 x 600) times `scale`.
    A str is a finished HTML page (the SAE feature dashboards): written as `path_base.html`, and skipped
    for the static formats.
    """
    from app.export import STATIC_FORMATS, export_figure, write_figure_json

    base = Path(path_base)
    written = []
    if isinstance(fig, str):
        bad = [f for f in formats if f != "html" and f not in STATIC_FORMATS]
        if bad:
            raise ValueError(f"Unknown figure format '{bad[0]}'. Use html, png, svg or pdf.")
        page = fig.encode()
        return [atomic_write(Path(f"{base}.html"), _bytes_writer(page))] if "html" in formats else []
    for fmt in formats:
        if fmt == "html":
            target = Path(f"{base}.html")
            _ensure_plotly_js(target.parent)
            data = fig.to_html(include_plotlyjs="directory", full_html=True).encode()
            written.append(atomic_write(target, _bytes_writer(data)))
            written.append(write_figure_json(fig, base))
        elif fmt in STATIC_FORMATS:
            written += export_figure(fig, base, [fmt], width, height, scale)
        else:
            raise ValueError(f"Unknown figure format '{fmt}'. Use html, png, svg or pdf.")
    return written
