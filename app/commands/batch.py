"""`glasshouse batch PLAN.toml`: run a sweep of probes, resumably (docs/batch.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("batch", help="run a plan of probes x models x settings x corpora (resumable)")
    parser.add_argument("plan", help="the TOML plan (see docs/batch.md)")
    parser.add_argument("--out", default=None, help="run folder (default runs/batch/<plan name>)")
    parser.add_argument("--check", action="store_true", help="only validate the plan and list its units")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_batch)


def run_batch(args: argparse.Namespace) -> int:
    from probes.errors import InputError

    if not Path(args.plan).is_file():  # before app.batch (and torch) is imported
        raise InputError(f"No plan file at {args.plan}. Write a TOML plan (see docs/batch.md).")
    from app.batch import read_plan, run_plan

    plan = read_plan(args.plan)
    units = plan.units()
    if args.check:
        print(f"plan '{plan.name}' is valid: {len(units)} unit(s)")
        for unit in units:
            print(f"  {unit.uid}  {unit.label()}")
        return 0
    from probes.runfolder import hold

    out = Path(args.out) if args.out else Path("runs") / "batch" / plan.name
    with hold(out, "--out" if args.out else "run folder"):  # before any model loads
        summary = run_plan(plan, out, progress=not args.no_progress)
    print(json.dumps(summary.to_dict(), indent=2))
    return 0
