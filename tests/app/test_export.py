"""Static export through kaleido + the system Chromium: files exist, are non-empty, have the asked size.

If kaleido or Chromium cannot run, these tests fail with ExportError's message (never skip).
"""

from __future__ import annotations

import re
import struct

import plotly.graph_objects as go

from app.cli import main
from app.export import export_figure, figure_files
from app.figures.theme import apply_theme, save_figure


def small_figure():
    fig = go.Figure(go.Scatter(x=[0, 1, 2], y=[1, 3, 2], name="y"))
    fig.update_layout(title="A test figure", xaxis_title="x (units)", yaxis_title="y (units)")
    return apply_theme(fig)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def svg_size(text: str) -> tuple[float, float]:
    tag = re.search(r"<svg[^>]*>", text).group(0)
    return float(re.search(r'width="([\d.]+)"', tag).group(1)), float(re.search(r'height="([\d.]+)"', tag).group(1))


def pdf_size(data: bytes) -> tuple[float, float]:
    box = re.search(rb"/MediaBox\s*\[\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", data)
    x0, y0, x1, y1 = (float(v) for v in box.groups())
    return x1 - x0, y1 - y0


def test_png_svg_pdf_have_the_asked_size(tmp_path):
    paths = export_figure(small_figure(), tmp_path / "fig", ["png", "svg", "pdf"], width=500, height=300, scale=2)
    png, svg, pdf = (p.read_bytes() for p in paths)
    assert all(len(b) > 1000 for b in (png, svg, pdf))
    assert png_size(png) == (1000, 600)
    assert svg_size(svg.decode()) == (1000, 600)
    w, h = pdf_size(pdf)  # 0.75 pt per CSS pixel
    assert abs(w - 750) <= 1.5 and abs(h - 450) <= 1.5, (w, h)
    assert pdf[:5] == b"%PDF-"


def test_export_command_rerenders_a_saved_run(tmp_path, capsys):
    save_figure(small_figure(), tmp_path / "sub" / "one", ["html"])
    fig2 = small_figure().update_layout(width=400, height=250)
    save_figure(fig2, tmp_path / "two", ["html"])
    assert len(figure_files(tmp_path)) == 2
    assert main(["export", str(tmp_path), "--format", "pdf", "--format", "png"]) == 0
    assert png_size((tmp_path / "two.png").read_bytes()) == (400, 250)  # the figure's own size
    assert png_size((tmp_path / "sub" / "one.png").read_bytes()) == (900, 600)  # the default size
    w, h = pdf_size((tmp_path / "sub" / "one.pdf").read_bytes())
    assert abs(w - 675) <= 1.5 and abs(h - 450) <= 1.5
    assert main(["export", str(tmp_path), "--format", "svg", "--width", "320", "--height", "200", "--scale", "1.5"]) == 0
    assert svg_size((tmp_path / "two.svg").read_text()) == (480, 300)


def test_export_of_an_empty_folder_says_what_to_do(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 1
    assert "No figures" in capsys.readouterr().err
