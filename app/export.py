"""Static figure export (PNG, SVG, PDF) through kaleido 1.x and the system's Chromium.

Spec: docs/batch.md. kaleido 1.x drives a Chromium through choreographer; it is pointed
at the system browser with BROWSER_PATH (set here from `chromium_path()` when unset) and never
downloads one. MathJax is switched off and plotly.js is read from the installed plotly package, so
rendering contacts no network host. One browser is started on first use and kept for the process.

Sizes: width and height are in CSS pixels (default: the figure's own layout size, else 900 x 600)
and `scale` multiplies them. A PNG is width*scale x height*scale pixels; an SVG carries
width/height attributes of width*scale x height*scale; a PDF page is width*scale x height*scale
pixels at 96 per inch, i.e. 0.75 points per pixel.

Every HTML figure is saved with its JSON (`<name>.plotly.json`, fig.to_json()) beside it, so a
finished run's figures can be re-rendered: `glasshouse export RUN_DIR --format pdf`. A saved result
JSON is drawn again from its data (app.figures.registry, by the kind it records):
`glasshouse export runs/sinks/gpt2/sinks.json --format html --format png`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from probes.errors import GlasshouseError, cause, common_advice
from probes.extras import MissingExtraError, require_extra
from probes.io import atomic_write
from probes.progress import Reporter, as_reporter

STATIC_FORMATS = ("png", "svg", "pdf")
FIGURE_JSON = ".plotly.json"
DEFAULT_SIZE = (900, 600)
BROWSER_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
_server_started = False


class ExportError(GlasshouseError):
    """A static figure could not be rendered (kaleido or Chromium missing or failing)."""


def chromium_path() -> str:
    """The browser kaleido will drive: $BROWSER_PATH, else a system Chromium/Chrome on the PATH."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        if not os.access(env, os.X_OK):
            raise ExportError(f"BROWSER_PATH={env} is not an executable browser. Point it at Chromium or Chrome.")
        return env
    for candidate in BROWSER_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise ExportError(
        "PNG/SVG/PDF export needs a Chromium or Chrome browser and none was found. Install one with the system "
        "package manager (e.g. apt-get install chromium) and, if it is not on the PATH, set BROWSER_PATH to it. "
        "HTML figures need no browser."
    )


def _start_renderer() -> None:
    global _server_started
    if _server_started:
        return
    try:
        kaleido = require_extra("kaleido", "export", "PNG/SVG/PDF figure export (HTML needs nothing)")
    except MissingExtraError as exc:
        raise ExportError(str(exc)) from exc
    browser = chromium_path()
    os.environ.setdefault("BROWSER_PATH", browser)
    import plotly

    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    kaleido.start_sync_server(path=browser, mathjax=False, plotlyjs=str(plotly_js), silence_warnings=True)
    _server_started = True


def close_renderer() -> None:
    """Stop the browser started for rendering (it also stops at exit)."""
    global _server_started
    if _server_started:
        import kaleido

        kaleido.stop_sync_server(silence_warnings=True)
        _server_started = False


def figure_size(fig: go.Figure, width: int | None = None, height: int | None = None) -> tuple[int, int]:
    """The size to render at: the arguments, else the figure's layout size, else 900 x 600."""
    w = width or fig.layout.width or DEFAULT_SIZE[0]
    h = height or fig.layout.height or DEFAULT_SIZE[1]
    return int(w), int(h)


def render(fig: go.Figure, fmt: str, width: int | None = None, height: int | None = None, scale: float = 1.0) -> bytes:
    """The figure as PNG, SVG or PDF bytes at the given size (see the module docstring for units)."""
    if fmt not in STATIC_FORMATS:
        raise ExportError(f"Unknown static format '{fmt}'. Choose from {', '.join(STATIC_FORMATS)} (or html).")
    if scale <= 0:
        raise ExportError(f"scale must be positive, got {scale}.")
    _start_renderer()
    import kaleido

    w, h = figure_size(fig, width, height)
    try:
        data = kaleido.calc_fig_sync(fig.to_dict(), opts={"format": fmt, "width": w, "height": h, "scale": scale})
    except Exception as exc:
        raise ExportError(
            f"Rendering {fmt.upper()} failed ({cause(exc)}). " + (common_advice(exc) or f"Check that {chromium_path()} "
            "starts headless (it needs its shared libraries), or set BROWSER_PATH to a working Chromium.")
        ) from exc
    if not data:
        raise ExportError(f"kaleido returned an empty {fmt.upper()}; check the browser at {chromium_path()}.")
    return bytes(data)


def _writer(data: bytes) -> Callable[[Path], int]:
    return lambda tmp: tmp.write_bytes(data)


def _path(base: Path, suffix: str) -> Path:
    return Path(f"{base}{suffix}")


def write_figure_json(fig: go.Figure, base: str | Path) -> Path:
    """Save fig.to_json() as `<base>.plotly.json` (what `export_run` re-renders)."""
    text = fig.to_json()
    return atomic_write(_path(Path(base), FIGURE_JSON), lambda tmp: tmp.write_text(text))


def export_figure(
    fig: go.Figure, base: str | Path, formats: Sequence[str], width: int | None = None, height: int | None = None,
    scale: float = 1.0,
) -> list[Path]:
    """Write the figure as `<base>.<fmt>` for each static format; return the paths."""
    written = []
    for fmt in formats:
        data = render(fig, fmt, width, height, scale)
        written.append(atomic_write(_path(Path(base), f".{fmt}"), _writer(data)))
    return written


def figure_files(run_dir: str | Path) -> list[Path]:
    """Every saved figure JSON under a run folder."""
    return sorted(Path(run_dir).rglob(f"*{FIGURE_JSON}"))


def load_figure(path: str | Path) -> go.Figure:
    fig: Any = pio.from_json(Path(path).read_text())
    return fig


def export_run(
    run_dir: str | Path, formats: Sequence[str], width: int | None = None, height: int | None = None,
    scale: float = 1.0, progress: bool = False, reporter: Reporter | None = None,
) -> list[Path]:
    """Re-render every figure of a finished run in the given static formats, beside its HTML (reporter:
    probes.progress, per figure; `progress` without one shows a terminal bar)."""
    files = figure_files(run_dir)
    if not files:
        raise ExportError(
            f"No figures (*{FIGURE_JSON}) under {run_dir}. Figures are saved with their JSON by the commands and "
            "by `glasshouse batch`; run one first."
        )
    rep = as_reporter(reporter, progress, "export")
    written: list[Path] = []
    for done, path in enumerate(files, start=1):
        rep.check()
        base = Path(str(path)[: -len(FIGURE_JSON)])
        written += _write(load_figure(path), base, formats, width, height, scale)
        rep.update(f"export: figure {done} of {len(files)}", done, len(files))
    return written


def _write(fig: go.Figure | str, base: Path, formats: Sequence[str], width: int | None, height: int | None,
           scale: float) -> list[Path]:
    from app.figures.theme import save_figure

    if isinstance(fig, go.Figure) and "html" not in formats:
        return export_figure(fig, base, formats, width, height, scale)
    return save_figure(fig, base, formats, width, height, scale)


def export_result(
    path: str | Path, formats: Sequence[str], out: str | Path | None = None, width: int | None = None,
    height: int | None = None, scale: float = 1.0, progress: bool = False, reporter: Reporter | None = None,
) -> list[Path]:
    """Draw a saved result JSON again (the figures of the kind it records, app.figures.registry) and write
    each as `<out>/<figure name>.<fmt>` (out: default the JSON's folder, where its command wrote them).
    A `*.plotly.json` figure file is rendered as it is. reporter: per figure, as export_run."""
    from app.figures.registry import draw_file

    path = Path(path)
    folder = Path(out) if out is not None else path.parent
    if path.name.endswith(FIGURE_JSON):
        return _write(load_figure(path), folder / path.name[: -len(FIGURE_JSON)], formats, width, height, scale)
    figures = draw_file(path)
    rep = as_reporter(reporter, progress, "export")
    written: list[Path] = []
    for done, (name, fig) in enumerate(figures.items(), start=1):
        rep.check()
        written += _write(fig, folder / name, formats, width, height, scale)
        rep.update(f"export: figure {done} of {len(figures)}", done, len(figures))
    return written
