"""`glasshouse extreme`: residual-state peaks, value-state drains, attention-logit gaps and the peak ablation.

Spec: docs/methods/extreme-tokens.md. Writes extreme.json and HTML figures.
"""

from __future__ import annotations

import argparse
from typing import Any

from app.commands._common import (
    add_bos_args,
    add_window_args,
    analysis_parser,
    int_list,
    load_from_args,
    prepared,
    write_outputs,
)
from app.commands.backend import is_remote, run_remote


def register(subparsers: Any) -> None:
    p = analysis_parser(subparsers, "extreme", "extreme tokens: residual peak, value drain, logit gap, ablations",
                        backend=True)
    p.add_argument("--prompt", type=_prompt, default=None,
                   help="one prompt instead of corpus windows (e.g. 'Summer is warm. Winter is cold.'; default: windows)")
    add_window_args(p, n=8, n_help="prose windows", seq_len_help="tokens per window")
    p.add_argument("--ablate-layers", type=int_list(0, "layer numbers"), default=None,
                   help="comma-separated layers whose MLP / attention output is zeroed in turn "
                        "(default: 0, 1 and the layer where the first-token norm jumps, with the one before)")
    add_bos_args(p)
    p.set_defaults(func=run)


def _prompt(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give some text, or leave --prompt out to use corpus windows")
    return text


def _check_layers(layers: list[int] | None, n_layers: int) -> None:
    from probes.errors import UsageError

    bad = [layer for layer in layers or [] if layer >= n_layers]
    if bad:
        raise UsageError(f"--ablate-layers {bad}: the model has layers 0..{n_layers - 1}.")


def run(args: argparse.Namespace) -> int:
    if is_remote(args):
        return run_remote(args, "extreme")
    with prepared(args, "extreme") as out:
        from app.figures.registry import draw
        from probes.extreme import extreme_tokens, peak_ablation
        from probes.progress import TqdmReporter
        from probes.sinks import inputs_for_regime

        model = load_from_args(args)
        _check_layers(args.ablate_layers, model.facts.n_layers)
        if args.prompt:
            ids = model.to_tokens(args.prompt, prepend_bos=args.prepend_bos).ids
        else:
            ids = inputs_for_regime(model, "natural", args.n, args.seq_len, seed=args.seed,
                                    prepend_bos=args.prepend_bos)
        res = extreme_tokens(model, ids, reporter=TqdmReporter("extreme tokens"))
        ablation = peak_ablation(model, ids[:4], layers=args.ablate_layers, reporter=TqdmReporter("peak ablation"))
        bundle = {"kind": "extreme", "measurements": res.to_dict(), "ablation": ablation.to_dict()}
        write_outputs(out, "extreme", bundle, draw(bundle))
    s, at = res.summary(), ablation.measure_layer
    print(f"first token {res.str_tokens[0][0]!r}: ||resid|| peaks at layer {s['peak_layer']} "
          f"({float(s['resid_sink'][s['peak_layer']]):.1f}; largest other {float(s['resid_rest_max'][s['peak_layer']]):.1f})")
    for row in ablation.rows:
        print(f"  zero {row['component']:<4} L{row['layer']}: first-token norm at layer {at} = {row['sink']:.1f} "
              f"(clean {float(ablation.clean_sink[at]):.1f}), largest other {row['rest_max']:.1f}")
    print(f"wrote {out}")
    return 0
