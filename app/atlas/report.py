"""The atlas report: one self-contained HTML file (plotly.js inlined once, nothing fetched).

Spec: docs/atlas.md. Each figure is also saved as figures/<analysis>.plotly.json, so that
`glasshouse export ATLAS_DIR --format pdf` (app/export.py) renders it to PDF/PNG/SVG.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from app.export import write_figure_json
from probes.io import atomic_write

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child, td:nth-child(2) { text-align: left; }
thead th { background: #f3f3f3; }
.notes { color: #555; font-size: 0.9em; }
code { background: #f6f6f6; padding: 0 3px; }
"""


def fmt(value: Any) -> str:
    """A table cell: 4 significant digits for floats, as-is otherwise, a dash for missing."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def headline_table(summary: dict[str, Any]) -> str:
    models = summary["atlas"]["models"]
    head = "".join(f"<th>{html.escape(m)}</th>" for m in models)
    body = []
    for row in summary["table"]:
        cells = "".join(f"<td>{html.escape(fmt(row.get(m)))}</td>" for m in models)
        body.append(f"<tr><td>{html.escape(row['analysis'])}</td><td>{html.escape(row['number'])}</td>{cells}</tr>")
    return (f"<table><thead><tr><th>analysis</th><th>number</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _settings_text(settings: dict[str, Any]) -> str:
    return "; ".join(f"{p}: " + ", ".join(f"{k}={v}" for k, v in s.items()) for p, s in settings.items())


def section(name: str, info: dict[str, Any], fig: Any) -> str:
    parts = [f"<h2 id='{html.escape(name)}'>{html.escape(info['title'])}</h2>",
             f"<p class='notes'>settings: <code>{html.escape(_settings_text(info['settings']))}</code></p>"]
    if info.get("notes"):
        parts.append(f"<p class='notes'>{html.escape(info['notes'])}</p>")
    if info.get("missing_models"):
        parts.append(f"<p class='notes'>not finished for: {html.escape(', '.join(info['missing_models']))}</p>")
    if fig is not None:
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False,
                                 div_id=f"fig-{name}"))
    return "\n".join(parts)


def render_report(summary: dict[str, Any], figures: dict[str, Any]) -> str:
    """The whole HTML document as a string."""
    from plotly.offline import get_plotlyjs

    a = summary["atlas"]
    c = a["corpus"]
    title = "Glasshouse atlas: " + ", ".join(a["models"])
    run = summary.get("run", {})
    loads = run.get("load_seconds", {})
    seconds = ", ".join(f"{m}: {s:.1f} s" + (f" (+ {loads[m]:.1f} s loading)" if m in loads else "")
                        for m, s in run.get("model_seconds", {}).items())
    versions = ", ".join(f"{k} {v}" for k, v in summary.get("versions", {}).items())
    sections = "\n".join(section(name, info, figures.get(name)) for name, info in summary["analyses"].items())
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<h1>{html.escape(title)}</h1>
<p>budget <b>{html.escape(a['budget'])}</b>: {c['n']} {html.escape(str(c['domain']))} windows of {c['length']} tokens,
seed {a['seed']}, dtype {html.escape(str(a['dtype']))}. Compute time per model (units summed): {html.escape(seconds or '-')}.</p>
<p class="notes">versions: {html.escape(versions)}</p>
<h2>Headline numbers</h2>
{headline_table(summary)}
{sections}
</body></html>
"""


def write_report(path: Path, summary: dict[str, Any], figures: dict[str, Any], folder: Path) -> Path:
    """Write report.html atomically, and each figure's JSON under folder/figures/ (for export)."""
    (folder / "figures").mkdir(exist_ok=True)
    for name, fig in figures.items():
        write_figure_json(fig, folder / "figures" / name)
    text = render_report(summary, figures)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_summary(folder: str | Path) -> dict[str, Any]:
    """summary.json of an atlas folder (InputError saying what to do when it is missing or unreadable)."""
    import json

    from probes.errors import InputError, cause

    path = Path(folder) / "summary.json"
    if not path.is_file():
        raise InputError(f"{folder} holds no atlas summary.json; pick a folder written by `glasshouse atlas`.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{path} is not valid JSON ({cause(exc)}); rerun `glasshouse atlas` on that folder.") from exc
    if not isinstance(data, dict) or not {"atlas", "table", "analyses"} <= set(data):
        raise InputError(f"{path} is not an atlas summary (no atlas, table and analyses).")
    return data


def select_models(summary: dict[str, Any], models: list[str]) -> dict[str, Any]:
    """The same summary restricted to `models` (in that order): table columns, headlines, figure data."""
    from probes.errors import InputError

    unknown = [m for m in models if m not in summary["atlas"]["models"]]
    if unknown:
        raise InputError(f"The atlas has no model {', '.join(unknown)} (it has {', '.join(summary['atlas']['models'])}).")
    analyses = {}
    for name, info in summary["analyses"].items():
        out = {**info, "headline": {m: v for m, v in info["headline"].items() if m in models},
               "missing_models": [m for m in models if m not in info["headline"]]}
        if "figure" in info:
            out["figure"] = {**info["figure"], "data": {m: v for m, v in info["figure"]["data"].items() if m in models}}
        analyses[name] = out
    table = [{"analysis": r["analysis"], "number": r["number"], **{m: r.get(m) for m in models}}
             for r in summary["table"] if any(r.get(m) is not None for m in models)]
    return {**summary, "atlas": {**summary["atlas"], "models": list(models)}, "table": table, "analyses": analyses}
