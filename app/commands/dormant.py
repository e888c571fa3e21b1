"""`glasshouse dormant`: active-dormant heads, prose vs code, with ablation effects on next-token loss.

Spec: docs/methods/extreme-tokens.md ("Active-dormant heads"). Writes dormant.json and HTML figures.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from app.commands._common import (
    add_bos_args,
    add_window_args,
    analysis_parser,
    int_range,
    load_from_args,
    prepared,
    write_outputs,
)
from app.commands.backend import is_remote, run_remote


def register(subparsers: Any) -> None:
    p = analysis_parser(subparsers, "dormant", "active-dormant heads: dormancy per head on prose vs code, ablations",
                        backend=True)
    add_window_args(p, n=16, n_help="sequences per domain")
    p.add_argument("--top", type=int_range(0), default=5, help="heads with the largest dormancy difference to ablate")
    p.add_argument("--controls", type=int_range(0), default=2, help="control heads (small difference) to ablate")
    p.add_argument("--heads", type=heads_type, default=[], help="more heads to ablate, e.g. L26H7,L23H4 (default none)")
    p.add_argument("--no-ablate", dest="ablate", action="store_false", help="dormancy only")
    add_bos_args(p)
    p.set_defaults(func=run)


def parse_heads(text: str) -> list[tuple[int, int]]:
    """'L26H7,L3H0' -> [(26, 7), (3, 0)]."""
    from probes.errors import InputError

    heads = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        match = re.fullmatch(r"[Ll](\d+)[Hh](\d+)", item)
        if match is None:
            raise InputError(f"Cannot read head '{item}': write heads as L<layer>H<head>, e.g. L26H7,L23H4.")
        heads.append((int(match[1]), int(match[2])))
    return heads


def heads_type(text: str) -> list[tuple[int, int]]:
    """argparse type for --heads (the range against the model is checked once it is loaded)."""
    try:
        return parse_heads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def check_heads(heads: list[tuple[int, int]], n_layers: int, n_heads: int) -> None:
    """Refuse --heads outside the model, naming the flag."""
    from probes.errors import UsageError

    bad = [f"L{layer}H{head}" for layer, head in heads if not (0 <= layer < n_layers and 0 <= head < n_heads)]
    if bad:
        raise UsageError(f"--heads {','.join(bad)}: the model has layers 0..{n_layers - 1} and heads "
                         f"0..{n_heads - 1} per layer.")


def run(args: argparse.Namespace) -> int:
    if is_remote(args):
        return run_remote(args, "dormant")
    with prepared(args, "dormant") as out:
        from app.figures.registry import draw
        from probes.dormant import ABLATIONS, dormant_heads
        from probes.progress import TqdmReporter

        model = load_from_args(args)
        check_heads(args.heads, model.facts.n_layers, model.facts.n_heads)
        res = dormant_heads(model, n=args.n, T=args.seq_len, seed=args.seed, top=args.top, controls=args.controls,
                            prepend_bos=args.prepend_bos, ablate=args.ablate, heads=args.heads,
                            reporter=TqdmReporter("dormant heads"))
        data = res.to_dict()
        write_outputs(out, "dormant", data, draw(data))
    a, b = res.domains
    print(f"base loss: {a} {res.base_loss[a]:.3f}, {b} {res.base_loss[b]:.3f} nats")
    print(f"{'head':<8}{'role':<9}{a:>7}{b:>7}  " + "  ".join(f"{d}:{m}" for d in res.domains for m in ABLATIONS))
    for r in res.rows:
        deltas = "  ".join(f"{r.loss_delta.get(d, {}).get(m, float('nan')):+.4f}" for d in res.domains for m in ABLATIONS)
        print(f"L{r.layer}H{r.head:<5}{r.role:<9}{r.dormancy[a]:7.3f}{r.dormancy[b]:7.3f}  {deltas}")
    for d in res.row_entropy:
        sinks = res.sink_heads(d)
        agree = float(((res.dormancy[d] > 0.5) == sinks).float().mean())
        print(f"entropy detector on {d}: {int(sinks.sum())} of {sinks.numel()} heads are sink heads "
              f"(agrees with dormancy > 0.5 on {100 * agree:.0f}% of heads)")
    print(f"wrote {out}")
    return 0
