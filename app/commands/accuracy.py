"""`glasshouse eval TASK_OR_FILE`: a model's accuracy on a task, with or without ZeroTuning, and its sweeps
(docs/tasks.md; probes/accuracy.py, probes/zerotuning.py).

TASK_OR_FILE is a built-in task name or a .jsonl / .json / .csv file (probes/tasks). Without --sweep: the
accuracy on --split with its 95% interval, and with --gamma the same with the first token's attention (or
--key's) scaled by gamma on --heads. --sweep layers: accuracy per layer and gamma (--gammas) on dev;
--sweep heads: the per-head change at --gamma on dev; --sweep tune: heads fitted on dev, reported on test.
Writes eval.json (and the sweeps' figures) into the output folder.
"""

from __future__ import annotations

import argparse
from typing import Any

from app.commands._common import (
    analysis_parser,
    float_range,
    int_list,
    int_range,
    load_from_args,
    prepared,
    write_outputs,
)

SWEEPS = ("layers", "heads", "tune")
SPLITS = ("train", "dev", "test", "all")


def register(subparsers: Any) -> None:
    p = analysis_parser(subparsers, "eval", "accuracy on a task (built-in or your file), with ZeroTuning")
    p.add_argument("task", metavar="TASK_OR_FILE",
                   help="a built-in task (antonyms, capitals, counting, next_day, sentiment; ioi and succession "
                        "from the circuits tasks, 32 examples unless --n) or a .jsonl/.json/.csv file of examples "
                        "with prompt, answer and optional choices")
    p.add_argument("--n", type=int_range(1), default=None, help="use the first N examples (default: all of them)")
    p.add_argument("--split", choices=SPLITS, default="test", help="which examples are scored (default test)")
    p.add_argument("--normalize", action="store_true", help="score choices by mean log-probability per token "
                   "(default: their sum)")
    p.add_argument("--gamma", type=float_range(0, lo_open=True), default=None,
                   help="scale the attention on the first token (or --key) by this on --heads (default: no scaling)")
    p.add_argument("--heads", default="all", help="heads to scale: all, or heads like L3H1,L5H0 "
                   "(default all)")
    p.add_argument("--key", type=int_range(0), default=0, help="the scaled position (0, the first token; "
                   "another is the paper's control)")
    p.add_argument("--sweep", choices=SWEEPS, default=None,
                   help="layers: accuracy per layer and gamma; heads: change per head at --gamma; "
                        "tune: heads fitted on dev, reported on test (default: no sweep, one score)")
    p.add_argument("--gammas", default="0.25,0.5,0.8,1.25,1.5,2", help="gammas of --sweep layers (default %(default)s)")
    p.add_argument("--layers", type=int_list(0, "layers"), default=None, help="layers to sweep (default all)")
    p.add_argument("--top", type=int_range(1), default=8, help="at most this many heads in --sweep tune")
    p.set_defaults(func=run_eval)


def _gammas(text: str) -> list[float]:
    from probes.errors import UsageError

    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise UsageError(f"argument --gammas: {text!r} is not a comma-separated list of numbers") from exc
    if not values or any(not v > 0 for v in values):
        raise UsageError(f"argument --gammas: every gamma must be above 0 (got {text!r})")
    return values


def _heads(text: str) -> list[tuple[int, int]] | None:
    """--heads read as the other commands read heads (probes.analyses.values.heads: L3H1,L5H0); None for all."""
    from probes.analyses.values import heads
    from probes.errors import InputError, UsageError

    if text == "all":
        return None
    try:
        return heads(text)
    except InputError as exc:
        raise UsageError(f"argument --heads: {exc}") from exc


def _every_or_in_model(picked: list[tuple[int, int]] | None, n_layers: int, n_heads: int) -> list[tuple[int, int]]:
    from probes.errors import UsageError

    if picked is None:
        return [(layer, h) for layer in range(n_layers) for h in range(n_heads)]
    for layer, head in picked:
        if layer >= n_layers or head >= n_heads:
            raise UsageError(f"argument --heads: L{layer}H{head} is beyond the model ({n_layers} layers, {n_heads} heads)")
    return picked


def run_eval(args: argparse.Namespace) -> int:
    from probes.errors import UsageError

    gammas = _gammas(args.gammas)
    picked = _heads(args.heads)
    if args.sweep in ("heads", "tune") and args.gamma is None:
        raise UsageError(f"--sweep {args.sweep} needs --gamma (the scale each head is tried at)")
    from circuits.tasks.as_taskset import CONVERTIBLE, generated_taskset
    from probes.tasks import load_task

    generated = args.task.replace("-", "_") in CONVERTIBLE  # circuits' tasks are made for the model's tokenizer
    task = None if generated else load_task(args.task, n=args.n, seed=args.seed)  # a bad file fails here, early
    with prepared(args, "eval") as out:
        from app.figures.registry import draw

        model = load_from_args(args)
        if task is None:
            task = generated_taskset(args.task.replace("-", "_"), model, n=args.n or 32, seed=args.seed)
        data = _measure(args, model, task, gammas, picked)
        figures = draw(data) if data["kind"] != "accuracy" else {}
        for path in write_outputs(out, "eval", data, figures):
            print(path)
    return 0


def _measure(args: argparse.Namespace, model: Any, task: Any, gammas: list[float],
             picked: list[tuple[int, int]] | None) -> dict[str, Any]:
    from probes.accuracy import score_task
    from probes.hidden_sinks import scaling_edits
    from probes.zerotuning import head_sweep, layer_sweep, tune_heads

    f = model.facts
    if args.sweep == "layers":
        res = layer_sweep(model, task, gammas, args.layers, key=args.key, normalize=args.normalize)
        layer, gamma, acc = res.best()
        print(f"{task.name}: unedited {res.baseline:.3f} on dev (n = {res.n}); best layer {layer} at gamma {gamma}: "
              f"{acc:.3f}")
        return res.to_dict()
    if args.sweep == "heads":
        heads = head_sweep(model, task, args.gamma, key=args.key, normalize=args.normalize, layers=args.layers)
        print(f"{task.name}: unedited {heads.baseline:.3f} on dev (n = {heads.n}); largest change "
              f"{max(c for row in heads.change for c in row):+.3f}")
        return heads.to_dict()
    if args.sweep == "tune":
        tuned = tune_heads(model, task, args.gamma, args.top, args.key, args.normalize, layers=args.layers)
        print(f"{task.name}: heads {tuned.heads}; test {tuned.before.accuracy:.3f} -> {tuned.after.accuracy:.3f} "
              f"(n = {tuned.after.n})")
        return tuned.to_dict()
    edits = scaling_edits(model, _every_or_in_model(picked, f.n_layers, f.n_heads), args.gamma, args.key) \
        if args.gamma is not None else []
    scored = score_task(model, task, args.split, args.normalize, edits=edits)
    shown = f" with gamma {args.gamma} on {args.heads} heads" if edits else ""
    print(f"{task.name}{shown}: accuracy {scored.accuracy:.3f} [{scored.ci_low:.3f}, {scored.ci_high:.3f}] "
          f"({scored.correct} of {scored.n}, {args.split}; {scored.scoring})")
    return {**scored.to_dict(), "intervention": {"gamma": args.gamma, "heads": args.heads, "key": args.key}
            if edits else None}
