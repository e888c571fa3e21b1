"""`glasshouse circuit TASK`: find a circuit for a generated task and draw it (spec: circuits.md).

Scores every edge (EAP or EAP-IG; position-aware adds per-span and crossing key/value scores),
grows greedy circuits from the logits at each edge count in --points, measures their normalized
faithfulness, and writes circuit.json plus HTML figures (the largest circuit of each kind, and the
faithfulness curves) into output_dir(args, "circuit").
"""

from __future__ import annotations

import argparse
from typing import Any

from app.commands._common import (
    LazyChoices,
    LazyHelp,
    analysis_parser,
    int_list,
    int_range,
    load_from_args,
    prepared,
    write_outputs,
)


def _tasks() -> list[str]:
    from circuits.tasks import TASKS

    return list(TASKS)


def _methods() -> tuple[str, ...]:
    from circuits.discover import METHODS

    return METHODS


TASKS = LazyChoices(_tasks)


def register(subparsers: Any) -> None:
    p = analysis_parser(subparsers, "circuit", "position-aware circuit discovery on a generated task")
    # checked in run_circuit, before the model loads, so that a bad option fails without importing circuits
    p.add_argument("task", metavar="TASK", help=LazyHelp(lambda: "the generated task: " + ", ".join(TASKS)))
    p.add_argument("--n", type=int_range(1), default=16, help="number of examples")
    p.add_argument("--method", choices=LazyChoices(_methods), default="eap", metavar="METHOD",
                   help="edge scores: %(choices)s")
    p.add_argument("--steps", type=int_range(1), default=5, help="EAP-IG interpolation steps")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--position-aware", dest="which", action="store_const", const="aware",
                       help="only the position-aware circuit")
    which.add_argument("--agnostic", dest="which", action="store_const", const="agnostic",
                       help="only the position-agnostic circuit")
    p.set_defaults(which="both")
    p.add_argument("--points", type=_counts, default="10,30,100,300,1000",
                   help="edge counts of the curve (comma separated)")
    p.add_argument("--draw", type=int_range(1), default=None, help="edges in the drawn circuit (default: smallest count "
                   "reaching 0.8, else the largest)")
    p.set_defaults(func=run_circuit)


def run_circuit(args: argparse.Namespace) -> int:
    from probes.errors import UsageError

    if args.task not in TASKS:
        raise UsageError(f"argument TASK: invalid choice: {args.task!r} (choose from {', '.join(TASKS)})")
    counts = args.points  # parsed by _counts (argparse applies the type to the string default too)
    with prepared(args, "circuit") as out:
        from app.figures.registry import draw
        from circuits.discover import discover

        model = load_from_args(args)
        result = discover(model, args.task, n=args.n, method=args.method, steps=args.steps, which=args.which,
                          counts=counts, seed=args.seed, draw=args.draw)
        data = result.to_dict()
        for path in write_outputs(out, "circuit", data, draw(data)):
            print(path)
    for c in result.curves:
        print(f"{c.label}: area {c.area:.3f}, edges to 0.8: {c.edges_to_80}, "
              f"faithfulness {[round(v, 3) for v in c.faithfulness]} at {c.edges}")
    return 0


def _counts(text: str) -> list[int]:
    """--points: sorted distinct positive edge counts."""
    return sorted(set(int_list(1, "edge counts")(text)))
