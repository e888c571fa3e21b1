"""Accuracy of the built-in tasks with and without ZeroTuning (docs/tasks.md, "Measured").

    python -m benchmarks.zerotuning_tasks [--model smollm2-135m] [--tasks antonyms,...] [--json PATH]

For each task (all its examples, seed 0): the test accuracy with its Wilson interval; the layer sweep on dev
(every layer, --gammas); head-specific tuning at the best layer's gamma over the heads of --tune-layers (fitted
on dev, scored on test). Prints one table row per task and writes the raw results as JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, this folder would lead sys.path and its module names could shadow installed packages
# (benchmarks/kernels.py once hid the `kernels` distribution): the repository root leads instead.
if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tasks", default="antonyms,capitals,counting,next_day,sentiment")
    parser.add_argument("--gammas", default="0.5,0.8,1.25,2")
    parser.add_argument("--tune-layers", default="0,1,2,3,4,5,6,7")
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from probes import load_model
    from probes.accuracy import score_task
    from probes.tasks import load_task
    from probes.zerotuning import layer_sweep, tune_heads

    model = load_model(args.model, device="cpu")
    gammas = [float(g) for g in args.gammas.split(",")]
    tune_layers = [int(x) for x in args.tune_layers.split(",")]
    rows = []
    print(f"{'task':10} {'n':>4} {'chance':>6} {'test':>18} {'best layer/gamma (dev)':>24} {'tuned heads: test':>24} seconds")
    for name in args.tasks.split(","):
        start = time.perf_counter()
        task = load_task(name, seed=0)
        plain = score_task(model, task, "test")
        sweep = layer_sweep(model, task, gammas)
        layer, gamma, best = sweep.best()
        tuned = tune_heads(model, task, gamma, args.top, layers=tune_layers)
        chance = (sum(1 / len(ex.choices) for ex in task.examples) / len(task.examples)) if task.multiple_choice else 0.0
        seconds = time.perf_counter() - start
        rows.append({"task": name, "n": len(task.examples), "chance": chance, "test": plain.to_dict(),
                     "layer_sweep": sweep.to_dict(), "tuned": tuned.to_dict(), "seconds": seconds})
        a = tuned.after
        print(f"{name:10} {len(task.examples):4d} {chance:6.2f} {plain.accuracy:6.3f} [{plain.ci_low:.2f},{plain.ci_high:.2f}] "
              f"{f'L{layer} g{gamma}: {best:.3f} (vs {sweep.baseline:.3f})':>24} "
              f"{f'{len(tuned.heads)} heads {a.accuracy:.3f} [{a.ci_low:.2f},{a.ci_high:.2f}]':>24} {seconds:.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "gammas": gammas, "tune_layers": tune_layers,
                                               "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()
