"""`glasshouse export PATH --format pdf`: draw a saved result JSON again, or re-render a run folder's figures.

Docs: docs/batch.md ("Exporting figures"), docs/app.md ("Figures").
"""

from __future__ import annotations

import argparse
from typing import Any

from app.commands._common import float_range, int_range

FORMATS = ("html", "png", "svg", "pdf")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export", help="draw a saved result JSON again, or re-render a run folder's figures (HTML, PNG, SVG, PDF)")
    parser.add_argument("run_dir", metavar="PATH",
                        help="a result JSON written by a command (drawn again from its data, by the kind it records), "
                             "or a folder written by a command or `glasshouse batch` (its saved *.plotly.json "
                             "figures re-rendered)")
    parser.add_argument("--format", dest="formats", action="append", choices=list(FORMATS),
                        help="output format (repeatable; default pdf)")
    parser.add_argument("--out", default=None,
                        help="folder for the figures of a result JSON (default: the JSON's folder); a run folder's "
                             "figures are written beside their saved JSON")
    parser.add_argument("--width", type=int_range(1, 20000), default=None, help="width in CSS pixels (default: the figure's)")
    parser.add_argument("--height", type=int_range(1, 20000), default=None, help="height in CSS pixels (default: the figure's)")
    parser.add_argument("--scale", type=float_range(0, 20, lo_open=True), default=1.0,
                        help="multiplies width and height, in (0, 20]")
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from app.export import close_renderer, export_result, export_run
    from probes.errors import RunFolderError
    from probes.runfolder import check_writable

    path = Path(args.run_dir)
    formats = args.formats or ["pdf"]
    if path.is_file():
        out = Path(args.out) if args.out else path.parent
        check_writable(out, "--out" if args.out else "the JSON's folder")
    elif path.is_dir():
        if args.out:
            raise RunFolderError("--out applies to a result JSON; a run folder's figures are written beside their "
                                 "saved JSON. Leave --out out, or give a result JSON.")
        check_writable(path, "PATH")
    else:
        raise RunFolderError(f"PATH {path} does not exist. Give a result JSON written by a command, or a RUN_DIR: "
                             "a folder written by a command or by `glasshouse batch`.")
    try:
        if path.is_file():
            written = export_result(path, formats, out, args.width, args.height, args.scale, progress=True)
        else:
            written = export_run(path, formats, args.width, args.height, args.scale, progress=True)
    finally:
        close_renderer()
    for p in written:
        print(p)
    return 0
