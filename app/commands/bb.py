"""`glasshouse bb train` and `glasshouse bb eval`: the Bigram-Backcopy toy lab (docs/sinks.md).

Spec: docs/methods/extreme-tokens.md, "The Bigram-Backcopy (BB) task"; docs/bb_lab.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from app.commands._common import (
    SEED,
    LazyChoices,
    LazyHelp,
    add_option,
    check_device,
    device_type,
    float_range,
    int_range,
)


def _optimizers() -> tuple[str, ...]:
    from probes.bb.options import OPTIMIZERS  # torch-free

    return OPTIMIZERS


def _attentions() -> tuple[str, ...]:
    from probes.bb.options import ATTENTIONS  # torch-free

    return ATTENTIONS


def _presets() -> list[str]:
    from probes.bb.options import PRESETS  # torch-free

    return list(PRESETS)


def _sized(name: str, what: str) -> LazyHelp:
    def text() -> str:
        from probes.bb.options import PRESETS  # torch-free

        return f"{what} (default by --preset: " + " / ".join(f"{p} {PRESETS[p][name]}" for p in PRESETS) + ")"

    return LazyHelp(text)


def _preset_help() -> str:
    from probes.bb.options import DEFAULT_PRESET  # torch-free

    return ("sizes: cpu (d 64, 65 tokens, batch 512, 2000 steps; about 11 min on 2 CPU cores) or spec (d 256, 257 "
            f"tokens, batch 512, 10k steps; a GPU job). Default {DEFAULT_PRESET}; the options below override it")


def register(subparsers: Any) -> None:
    bb = subparsers.add_parser("bb", help="Bigram-Backcopy toy lab: train small models, watch attention sinks form")
    sub = bb.add_subparsers(dest="bb_command", metavar="ACTION")

    train = sub.add_parser("train", help="train (or resume) one BB model; checkpoints and metrics.jsonl in --out")
    train.add_argument("--layers", type=int_range(1), default=1, help="transformer layers: 1 or 3 in the spec")
    train.add_argument("--optimizer", default="adamw", choices=LazyChoices(_optimizers), metavar="OPTIMIZER",
                       help="%(choices)s")
    train.add_argument("--attention", default="softmax", choices=LazyChoices(_attentions), metavar="ATTENTION",
                       help="%(choices)s")
    train.add_argument("--preset", default=None, choices=LazyChoices(_presets), metavar="PRESET",
                       help=LazyHelp(_preset_help))
    train.add_argument("--steps", type=int_range(1), default=None, help=_sized("steps", "training steps"))
    add_option(train, "--batch-size", aliases=("--batch",), type=int_range(1), default=None,
               help=_sized("batch", "sequences per step"))
    train.add_argument("--d-model", type=int_range(1), default=None, help=_sized("d_model", "model width"))
    train.add_argument("--seq-len", type=int_range(2), default=None, help=_sized("seq_len", "tokens per sequence incl. <s>"))
    train.add_argument("--lr", type=float_range(0, lo_open=True), default=None,
                       help="learning rate (default: the spec's for the optimizer)")
    train.add_argument("--eval-every", type=int_range(1), default=None, help=_sized("eval_every", "steps between measurements"))
    train.add_argument("--checkpoint-every", type=int_range(1), default=None, help=_sized("checkpoint_every", "steps between checkpoints"))
    train.add_argument("--seed", type=SEED, default=0, help="random seed")
    train.add_argument("--device", type=_bb_device, default="auto", metavar="DEVICE",
                       help="auto (cuda if available, else cpu), cpu, cuda or cuda:N")
    train.add_argument("--out", default=None, help="run folder (default runs/bb/<attention>-<optimizer>-L<layers>)")
    train.set_defaults(func=run_train)

    ev = sub.add_parser("eval", help="measure checkpoints (step or run folders) and draw their training curves")
    ev.add_argument("checkpoints", nargs="+", help="one or more checkpoint folders or run folders")
    ev.add_argument("--n", type=int_range(1), default=128, help="fresh evaluation sequences")
    ev.add_argument("--seed", type=SEED, default=12345, help="seed of the evaluation sequences")
    ev.add_argument("--out", default=None, help="output folder (default runs/bb/eval)")
    ev.set_defaults(func=run_eval)
    bb.set_defaults(func=lambda args: bb.print_help() or 2)


def _bb_device(text: str) -> str:
    """An argparse type: auto, or a device name device_type accepts (availability is checked in run_train)."""
    text = text.strip()
    if text == "auto":
        return text
    if text == "mps":
        raise argparse.ArgumentTypeError("must be auto, cpu, cuda or cuda:N (BB training has no mps path)")
    return device_type(text)


def resolve_bb_device(device: str) -> str:
    """auto -> cuda when torch sees a GPU, else cpu; any other name is checked to exist (InputError if not)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    check_device(device)
    return device


def run_train(args: argparse.Namespace) -> int:
    from probes.runfolder import hold

    device = resolve_bb_device(getattr(args, "device", "auto"))  # before the run folder is touched
    default = os.path.join("runs", "bb", f"{args.attention}-{args.optimizer}-L{args.layers}")
    with hold(Path(args.out or default), "--out" if args.out else "output folder") as out:
        from app.commands._common import write_outputs
        from app.figures.registry import draw
        from probes.bb.train import DEFAULT_PRESET, TrainSettings, train

        settings = TrainSettings.from_preset(
            args.preset or DEFAULT_PRESET, layers=args.layers, optimizer=args.optimizer, attention=args.attention,
            steps=args.steps, batch=args.batch_size, seq_len=args.seq_len, d_model=args.d_model, lr=args.lr,
            seed=args.seed, eval_every=args.eval_every, checkpoint_every=args.checkpoint_every)
        result = train(settings, out, device=device)
        data = result.to_dict()
        write_outputs(out, "bb_train", data, draw(data))
    last = result.metrics[-1]
    print(f"{out} ({device}): step {last['step']}, attention on <s> non-trigger {last['attn_sink_nontrigger'][-1]:.3f} "
          f"trigger {last['attn_sink_trigger'][-1]:.3f}, back-copy risk {last['backcopy_risk']:.3f}, "
          f"bigram risk {last['bigram_risk']:.3f}; checkpoint {result.final_checkpoint}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from probes.runfolder import hold

    missing = [c for c in args.checkpoints if not Path(c).exists()]
    if missing:
        from probes.errors import CheckpointError

        raise CheckpointError(f"no such checkpoint or run folder: {', '.join(missing)}. Give folders written by "
                         "`glasshouse bb train`.")
    with hold(Path(args.out or os.path.join("runs", "bb", "eval")), "--out" if args.out else "output folder") as out:
        return _evaluate(args, out)


def _evaluate(args: argparse.Namespace, out: Path) -> int:
    from app.commands._common import write_outputs
    from app.figures.registry import bb_evaluation_label, draw
    from probes.bb.evaluate import evaluate

    evals = [evaluate(c, args.n, args.seed) for c in args.checkpoints]
    bundle: dict[str, Any] = {"kind": "bb", "evaluations": [e.to_dict() for e in evals]}
    for data, e in zip(bundle["evaluations"], evals, strict=True):
        label = bb_evaluation_label(data)
        m = e.measures
        print(f"{label} step {e.step}: attention on <s> non-trigger {m.attn_sink_nontrigger[-1]:.3f} trigger "
              f"{m.attn_sink_trigger[-1]:.3f}; value norm <s>/others {m.value_norm_sink[-1]:.3f}/{m.value_norm_others[-1]:.3f}; "
              f"residual norm <s>/others {m.resid_norm_sink[-1]:.2f}/{m.resid_norm_others[-1]:.2f}; back-copy risk "
              f"{m.backcopy_risk:.3f}, bigram risk {m.bigram_risk:.3f}; active tokens {m.n_active}")
        print(f"  logit gap <s> vs others (non-trigger) {m.logit_gap_nontrigger[-1]:+.2f}; attention on <s> by query "
              "position: " + ", ".join(f"{k} {v:.2f}" for k, v in m.sink_by_position.items()))
    write_outputs(out, "bb", bundle, draw(bundle))
    print(f"wrote {out}/bb.json and figures")
    return 0
