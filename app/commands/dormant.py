"""`glasshouse dormant`: active-dormant heads, prose vs code, with ablation effects on next-token loss.

Spec: ../shared/specs/extreme-tokens.md ("Active-dormant heads"). Writes dormant.json and HTML figures.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from app.commands._common import add_model_args, load_from_args, output_dir, write_outputs
from app.commands.backend import add_backend_arg, is_remote, run_remote
from probes.errors import InputError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("dormant", help="active-dormant heads: dormancy per head on prose vs code, ablations")
    add_model_args(p)
    add_backend_arg(p)
    p.add_argument("--n", type=int, default=16, help="sequences per domain (default 16)")
    p.add_argument("--T", type=int, default=64, help="tokens per sequence (default 64)")
    p.add_argument("--top", type=int, default=5, help="heads with the largest dormancy difference to ablate")
    p.add_argument("--controls", type=int, default=2, help="control heads (small difference) to ablate")
    p.add_argument("--heads", default="", help="more heads to ablate, e.g. L26H7,L23H4")
    p.add_argument("--no-ablate", dest="ablate", action="store_false", help="dormancy only")
    bos = p.add_mutually_exclusive_group()
    bos.add_argument("--bos", dest="prepend_bos", action="store_true", default=None, help="put the BOS first")
    bos.add_argument("--no-bos", dest="prepend_bos", action="store_false", help="no BOS")
    p.set_defaults(func=run)


def parse_heads(text: str) -> list[tuple[int, int]]:
    """'L26H7,L3H0' -> [(26, 7), (3, 0)]."""
    heads = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        match = re.fullmatch(r"[Ll](\d+)[Hh](\d+)", item)
        if match is None:
            raise InputError(f"Cannot read head '{item}': write heads as L<layer>H<head>, e.g. L26H7,L23H4.")
        heads.append((int(match[1]), int(match[2])))
    return heads


def run(args: argparse.Namespace) -> int:
    if is_remote(args):
        return run_remote(args, "dormant")
    from app.figures.sinks import dormancy_scatter
    from probes.dormant import ABLATIONS, dormant_heads

    heads = parse_heads(args.heads)
    model = load_from_args(args)
    res = dormant_heads(model, n=args.n, T=args.T, seed=args.seed, top=args.top, controls=args.controls,
                        prepend_bos=args.prepend_bos, ablate=args.ablate, heads=heads)
    out = output_dir(args, "dormant")
    write_outputs(out, "dormant", res, {"dormancy_scatter": dormancy_scatter(res)})
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
