"""`glasshouse atlas MODEL [MODEL ...]`: every atlas analysis on each model, one report (docs/atlas.md)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from app.atlas_folders import default_folder
from app.commands._common import SEED, LazyChoices, add_device_args, name_list, prepared

BUDGET_NAMES = ("small", "standard")


def _atlas_names() -> list[str]:
    from app.atlas.registry import atlas_names

    return atlas_names()


ANALYSES = LazyChoices(_atlas_names)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("atlas", help="the atlas: every registered analysis on one or more models, "
                                            "one self-contained HTML report and summary.json (resumable)")
    p.add_argument("models", nargs="+", metavar="MODEL", help="model specs (embedded name, hub name or folder)")
    p.add_argument("--budget", choices=BUDGET_NAMES, default="small", help="corpus size and settings: %(choices)s")
    p.add_argument("--analyses", type=name_list(ANALYSES, "analysis"), default=None,
                   help="comma-separated atlas analyses (default: all registered)")
    add_device_args(p)
    p.add_argument("--out", default=None, help="atlas folder (default runs/atlas/<models joined by +>)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the corpus sample and torch")
    p.add_argument("--format", dest="formats", action="append", choices=("pdf", "png", "svg"), default=[],
                   help="also render every figure in this static format (repeatable; needs kaleido + Chromium)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from probes.model.preflight import check_model_spec

    for spec in args.models:
        check_model_spec(spec)
    if args.out is None:
        args.out = str(default_folder(args.models))
    with prepared(args, "atlas", model=False) as out:
        from app.atlas import atlas_entries, run_atlas

        entries = atlas_entries(list(args.analyses) if args.analyses else None)
        result = run_atlas(args.models, out, args.budget, entries, seed=args.seed, device=args.device,
                           dtype=args.dtype, progress=not args.no_progress)
        if args.formats:
            from app.export import export_run

            export_run(out / "figures", args.formats)
    print(json.dumps({"folder": str(result.folder), "report": str(result.report), **result.batch.to_dict(),
                      "table": result.summary["table"]}, indent=2))
    return 0
