"""`glasshouse export RUN_DIR --format pdf`: re-render a finished run's figures (docs/batch.md)."""

from __future__ import annotations

import argparse
from typing import Any

from app.commands._common import float_range, int_range


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("export", help="re-render a run's saved figures as PNG, SVG or PDF")
    parser.add_argument("run_dir", help="a folder written by a command or `glasshouse batch`")
    parser.add_argument("--format", dest="formats", action="append", choices=["png", "svg", "pdf"],
                        help="output format (repeatable; default pdf)")
    parser.add_argument("--width", type=int_range(1, 20000), default=None, help="width in CSS pixels (default: the figure's)")
    parser.add_argument("--height", type=int_range(1, 20000), default=None, help="height in CSS pixels (default: the figure's)")
    parser.add_argument("--scale", type=float_range(0, 20, lo_open=True), default=1.0,
                        help="multiplies width and height, in (0, 20]")
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from app.export import close_renderer, export_run
    from probes.errors import RunFolderError
    from probes.runfolder import check_writable

    if not Path(args.run_dir).is_dir():
        raise RunFolderError(f"RUN_DIR {args.run_dir} is not a folder. Give a folder written by a command or by "
                             "`glasshouse batch`.")
    check_writable(args.run_dir, "RUN_DIR")
    try:
        written = export_run(args.run_dir, args.formats or ["pdf"], args.width, args.height, args.scale,
                             progress=True)
    finally:
        close_renderer()
    for path in written:
        print(path)
    return 0
