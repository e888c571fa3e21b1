"""`glasshouse successor`: successor heads, first-order (effective OV) and in-context (DLA) views."""

from __future__ import annotations

import argparse
from typing import Any

from app.commands._common import (
    add_option,
    analysis_parser,
    float_range,
    int_range,
    load_from_args,
    prepared,
    write_outputs,
)
from app.commands.backend import is_remote, run_remote


def register(subparsers: Any) -> None:
    p = analysis_parser(subparsers, "successor", "find successor heads (effective OV score and in-context DLA)",
                        backend=True)
    p.add_argument("--norm", default="auto", choices=["auto", "none", "mlp", "all"],
                   help="norms on the OV path (auto: none for LayerNorm models, all for RMSNorm)")
    p.add_argument("--source", default="mlp0", choices=["mlp0", "resid"], help="what a head reads for a token")
    p.add_argument("--threshold", type=float_range(0, 1), default=0.4,
                   help="score (in [0, 1]) listing a head as a successor head")
    add_option(p, "--n", aliases=("--max-prompts",), type=int_range(1), default=20, help="in-context prompts per task")
    p.add_argument("--natural", type=int_range(0), default=8, help="corpus windows for the natural-text view (0: skip)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if is_remote(args):
        return run_remote(args, "successor")
    with prepared(args, "successor") as out:
        return _run(args, out)


def _run(args: argparse.Namespace, out: Any) -> int:
    from app.figures.registry import draw
    from probes.progress import TqdmReporter
    from probes.successor import (
        OVSettings,
        in_context_scores,
        mod10_analysis,
        natural_text_effects,
        score_heads,
    )

    model = load_from_args(args)
    settings = OVSettings(norm=args.norm, source=args.source)
    scores = score_heads(model, settings=settings, threshold=args.threshold, reporter=TqdmReporter("successor score"))
    ic = in_context_scores(model, max_prompts=args.n, reporter=TqdmReporter("in-context DLA"))
    mod10 = mod10_analysis(model, head=scores.top_head, dataset=scores.dataset, settings=settings, seed=args.seed)
    ic_top = ic.ranking(1)[0]
    natural = (natural_text_effects(model, ic_top["layer"], ic_top["head"], n=args.natural, seed=args.seed,
                                    reporter=TqdmReporter("natural text")) if args.natural > 0 else None)
    sd, icd = scores.to_dict(), ic.to_dict()
    result = {"kind": "successor", "first_order": sd, "in_context": icd, "mod10": mod10.to_dict(),
              "natural_text": natural.to_dict() if natural else None}
    paths = write_outputs(out, "successor", result, draw(result))
    top = sd["ranking"][0]
    print(f"first-order top head L{top['layer']}H{top['head']} score {top['score']:.3f} (chance {sd['chance']:.3f})")
    print(f"in-context top head L{ic_top['layer']}H{ic_top['head']} mean DLA {ic_top['mean_dla']:.3f} logits")
    print(f"mod-10: {mod10.status} {mod10.reason}")
    print(f"wrote {len(paths)} files to {out}")
    return 0
