"""`glasshouse bb train` and `glasshouse bb eval`: the Bigram-Backcopy toy lab (issue 3).

Spec: ../shared/specs/extreme-tokens.md, "The Bigram-Backcopy (BB) task"; docs/bb_lab.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from probes.errors import InputError


def register(subparsers: Any) -> None:
    bb = subparsers.add_parser("bb", help="Bigram-Backcopy toy lab: train small models, watch attention sinks form")
    sub = bb.add_subparsers(dest="bb_command", metavar="ACTION")
    from probes.bb.options import ATTENTIONS, DEFAULT_PRESET, OPTIMIZERS, PRESETS  # no torch for --help

    def sized(name: str) -> str:
        return " / ".join(f"{p} {PRESETS[p][name]}" for p in PRESETS)

    train = sub.add_parser("train", help="train (or resume) one BB model; checkpoints and metrics.jsonl in --out")
    train.add_argument("--layers", type=int, default=1, help="1 or 3 in the spec (default 1)")
    train.add_argument("--optimizer", default="adamw", help=f"one of {', '.join(OPTIMIZERS)} (default adamw)")
    train.add_argument("--attention", default="softmax", help=f"one of {', '.join(ATTENTIONS)} (default softmax)")
    train.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS),
                       help=f"sizes: cpu (d 64, 65 tokens, batch 512, 2000 steps; about 11 min on 2 CPU cores) or spec "
                            f"(d 256, 257 tokens, batch 512, 10k steps; a GPU job). Default {DEFAULT_PRESET}; the "
                            "options below override it")
    train.add_argument("--steps", type=int, default=None, help=f"training steps ({sized('steps')})")
    train.add_argument("--batch", type=int, default=None, help=f"sequences per step ({sized('batch')})")
    train.add_argument("--d-model", type=int, default=None, help=f"model width ({sized('d_model')})")
    train.add_argument("--seq-len", type=int, default=None, help=f"tokens per sequence incl. <s> ({sized('seq_len')})")
    train.add_argument("--lr", type=float, default=None, help="learning rate (default: the spec's for the optimizer)")
    train.add_argument("--eval-every", type=int, default=None, help=f"steps between measurements ({sized('eval_every')})")
    train.add_argument("--checkpoint-every", type=int, default=None,
                       help=f"steps between checkpoints ({sized('checkpoint_every')})")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--out", default=None, help="run folder (default runs/bb/<attention>-<optimizer>-L<layers>)")
    train.set_defaults(func=run_train)

    ev = sub.add_parser("eval", help="measure checkpoints (step or run folders) and draw their training curves")
    ev.add_argument("checkpoints", nargs="+", help="one or more checkpoint folders or run folders")
    ev.add_argument("--n", type=int, default=128, help="fresh evaluation sequences (default 128)")
    ev.add_argument("--seed", type=int, default=12345, help="seed of the evaluation sequences")
    ev.add_argument("--out", default=None, help="output folder (default runs/bb/eval)")
    ev.set_defaults(func=run_eval)
    bb.set_defaults(func=lambda args: bb.print_help() or 2)


def run_train(args: argparse.Namespace) -> int:
    from app.commands._common import write_outputs
    from app.figures.bb import sink_formation_figure
    from probes.bb.train import TrainSettings, train

    settings = TrainSettings.from_preset(
        args.preset, layers=args.layers, optimizer=args.optimizer, attention=args.attention, steps=args.steps,
        batch=args.batch, seq_len=args.seq_len, d_model=args.d_model, lr=args.lr, seed=args.seed,
        eval_every=args.eval_every, checkpoint_every=args.checkpoint_every)
    out = Path(args.out or os.path.join("runs", "bb", f"{args.attention}-{args.optimizer}-L{args.layers}"))
    result = train(settings, out)
    label = f"{args.attention}+{args.optimizer}"
    write_outputs(out, "bb_train", result, {"bb_sink_formation": sink_formation_figure({label: result.metrics})})
    last = result.metrics[-1]
    print(f"{out}: step {last['step']}, attention on <s> non-trigger {last['attn_sink_nontrigger'][-1]:.3f} "
          f"trigger {last['attn_sink_trigger'][-1]:.3f}, back-copy risk {last['backcopy_risk']:.3f}, "
          f"bigram risk {last['bigram_risk']:.3f}; checkpoint {result.final_checkpoint}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from app.commands._common import write_outputs
    from app.figures.bb import sink_by_position_figure, sink_formation_figure, token_attention_figure
    from probes.bb.evaluate import evaluate

    if args.n < 1:
        raise InputError(f"--n must be at least 1 (got {args.n}).")
    evals = [evaluate(c, args.n, args.seed) for c in args.checkpoints]
    out = Path(args.out or os.path.join("runs", "bb", "eval"))
    out.mkdir(parents=True, exist_ok=True)
    labels = [f"{e.settings['attention']}+{e.settings['optimizer']} L{e.settings['layers']} d{e.settings['d_model']} "
              f"batch {e.settings['batch']} ({Path(e.checkpoint).parent.name})" for e in evals]
    figures: dict[str, Any] = {"bb_sink_formation": sink_formation_figure(
        {label: e.training_metrics for label, e in zip(labels, evals, strict=True) if e.training_metrics})}
    figures["bb_sink_by_position"] = sink_by_position_figure(
        {label: e.measures.sink_by_position for label, e in zip(labels, evals, strict=True)})
    for i, (label, e) in enumerate(zip(labels, evals, strict=True)):
        figures[f"bb_token_attention_{i}"] = token_attention_figure(
            e.measures.token_attn_sink, e.triggers, title=f"Attention on <s> per query token: {label}, step {e.step}")
        m = e.measures
        print(f"{label} step {e.step}: attention on <s> non-trigger {m.attn_sink_nontrigger[-1]:.3f} trigger "
              f"{m.attn_sink_trigger[-1]:.3f}; value norm <s>/others {m.value_norm_sink[-1]:.3f}/{m.value_norm_others[-1]:.3f}; "
              f"residual norm <s>/others {m.resid_norm_sink[-1]:.2f}/{m.resid_norm_others[-1]:.2f}; back-copy risk "
              f"{m.backcopy_risk:.3f}, bigram risk {m.bigram_risk:.3f}; active tokens {m.n_active}")
        print(f"  logit gap <s> vs others (non-trigger) {m.logit_gap_nontrigger[-1]:+.2f}; attention on <s> by query "
              "position: " + ", ".join(f"{k} {v:.2f}" for k, v in m.sink_by_position.items()))
    write_outputs(out, "bb", {"evaluations": [e.to_dict() for e in evals]}, figures)
    print(f"wrote {out}/bb.json and figures")
    return 0
