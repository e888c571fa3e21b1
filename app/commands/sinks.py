"""`glasshouse sinks`: Sink_k^eps by input regime, per-head first-token maps, hidden sinks and interventions.

Spec: docs/methods/attention-sinks.md. Writes sinks.json and HTML figures into the output folder.
"""

from __future__ import annotations

import argparse
from typing import Any

from app.commands._common import (
    LazyChoices,
    add_bos_args,
    add_option,
    add_window_args,
    analysis_parser,
    float_range,
    int_range,
    load_from_args,
    name_list,
    prepared,
    write_outputs,
)
from app.commands.backend import is_remote, run_remote


def _regimes() -> tuple[str, ...]:
    from probes.sinks import REGIMES

    return REGIMES


REGIMES = LazyChoices(_regimes)
ATTENTION_MODES = ("fast", "patterns")  # probes.sinks.ATTENTION_MODES, without importing torch for --help


def register(subparsers: Any) -> None:
    p = analysis_parser(subparsers, "sinks", "attention sinks: Sink_k^eps by input regime, hidden sinks, interventions",
                        backend=True)
    add_window_args(p, n=100, n_help="sequences per regime")
    p.add_argument("--eps", type=float_range(0, 1, lo_open=True, hi_open=True), default=0.3,
                   help="threshold on alpha, in (0, 1)")
    p.add_argument("--regimes", type=name_list(REGIMES, "regime"), default=("natural", "random", "repeat"),
                   help="comma-separated input regimes, from: natural, random, repeat (default all three)")
    add_bos_args(p, no_bos_help="no BOS (first text token is first)")
    add_option(p, "--batch-size", aliases=("--batch",), type=int_range(1), default=8,
               help="sequences per forward pass")
    p.add_argument("--attention", choices=ATTENTION_MODES, default="fast",
                   help="fast (default): alpha from each layer's q and k under the model's SDPA attention, no T x T "
                        "pattern, memory linear in T; patterns: eager patterns reduced in hooks (the reference)")
    p.add_argument("--interventions", action="store_true",
                   help="also detect hidden sinks, search calibration heads and measure loss before/after "
                        "calibration and first-token scaling (gamma 0.5 and 1.5) on 8 natural sequences")
    p.set_defaults(func=run)


def interventions(model: Any, T: int, seed: int, prepend_bos: bool | None, attention: str = "fast") -> dict[str, Any]:
    """Hidden sinks (shown with min_queries=8), ACT calibration head search and ZeroTuning on all heads."""
    from probes.hidden_sinks import detect_hidden_sinks, evaluate_intervention, search_calibration_heads
    from probes.progress import TqdmReporter
    from probes.sinks import inputs_for_regime

    calib = inputs_for_regime(model, "natural", 8, T, seed=seed + 1, prepend_bos=prepend_bos)
    evaluation = inputs_for_regime(model, "natural", 8, T, seed=seed + 2, prepend_bos=prepend_bos)
    hidden = detect_hidden_sinks(model, calib, min_queries=8, reporter=TqdmReporter("hidden sinks"), attention=attention)
    kept, search = search_calibration_heads(model, calib, candidates=6, reporter=TqdmReporter("calibration search"))
    out: dict[str, Any] = {"hidden_sinks": hidden.to_dict(), "calibration_search": search, "calibrated_heads": kept}
    if kept:
        out["calibration"] = evaluate_intervention(model, evaluation, "calibrate", kept, search=search).to_dict()
    every = [(layer, h) for layer in range(model.facts.n_layers) for h in range(model.facts.n_heads)]
    out["scale_first"] = [evaluate_intervention(model, evaluation, "scale_first", every, gamma=g).to_dict()
                          for g in (0.5, 1.5)]
    return out


def run(args: argparse.Namespace) -> int:
    if is_remote(args):
        return run_remote(args, "sinks")
    with prepared(args, "sinks") as out:
        from app.figures.registry import draw
        from probes.progress import TqdmReporter
        from probes.sinks import sinks_by_regime

        model = load_from_args(args)
        regimes = tuple(args.regimes)
        results = sinks_by_regime(model, n=args.n, T=args.seq_len, eps=args.eps, seed=args.seed,
                                  prepend_bos=args.prepend_bos, regimes=regimes, batch_size=args.batch_size,
                                  reporter=TqdmReporter("sinks"), attention=args.attention)
        bundle: dict[str, Any] = {"kind": "sinks", "regimes": {r: res.to_dict() for r, res in results.items()},
                                  "sink1": {r: res.sink1 for r, res in results.items()}}
        if args.interventions:
            bundle["interventions"] = interventions(model, args.seq_len, args.seed, args.prepend_bos, args.attention)
        write_outputs(out, "sinks", bundle, draw(bundle))
    for r, res in results.items():
        print(f"Sink_1^{args.eps} {r:<8} {res.sink1:6.2f}%  (n={res.alpha.shape[0]}, T={res.T}, "
              f"first token BOS: {res.first_is_bos})")
    print(f"wrote {out}")
    return 0
