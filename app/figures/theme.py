"""The one theme every Glasshouse figure uses, and writing figures to disk.

Figures must be readable without explanation: a title, axis titles with units, and hover text
with the token strings where tokens are involved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import plotly.graph_objects as go

from probes.io import atomic_write

FONT = "Inter, Helvetica, Arial, sans-serif"
COLORWAY = ["#2E5EAA", "#E07A2E", "#3A9D5D", "#C8443B", "#7D5BA6", "#8C6D46", "#D46FB0", "#6E6E6E"]
HEATMAP_SCALE = "Viridis"
DIVERGING_SCALE = "RdBu_r"


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


def save_figure(fig: go.Figure, path_base: str | Path, formats: Sequence[str] = ("html",)) -> list[Path]:
    """Write a figure as `path_base.<fmt>` for each format; HTML always works, offline too
    (it loads plotly.min.js written once into the same folder).

    Static formats (png, svg, pdf) need kaleido and a Chromium; see app/export.py when it lands.
    """
    base = Path(path_base)
    written = []
    for fmt in formats:
        target = base.with_suffix(f".{fmt}")
        if fmt == "html":
            _ensure_plotly_js(target.parent)
            data = fig.to_html(include_plotlyjs="directory", full_html=True).encode()
        else:
            data = fig.to_image(format=fmt)
        written.append(atomic_write(target, _bytes_writer(data)))
    return written
