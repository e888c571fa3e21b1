"""`glasshouse export RUN_DIR --format pdf`: re-render a finished run's figures (issue 9, docs/batch.md)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("export", help="re-render a run's saved figures as PNG, SVG or PDF")
    parser.add_argument("run_dir", help="a folder written by a command or `glasshouse batch`")
    parser.add_argument("--format", dest="formats", action="append", choices=["png", "svg", "pdf"],
                        help="output format (repeatable; default pdf)")
    parser.add_argument("--width", type=int, default=None, help="width in CSS pixels (default: the figure's)")
    parser.add_argument("--height", type=int, default=None, help="height in CSS pixels (default: the figure's)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies width and height (default 1)")
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from app.export import close_renderer, export_run

    try:
        written = export_run(args.run_dir, args.formats or ["pdf"], args.width, args.height, args.scale,
                             progress=True)
    finally:
        close_renderer()
    for path in written:
        print(path)
    return 0
