"""Overhead of a full sink report against a bare HF forward with output_attentions=True.

Spec: docs/sinks.md (target: under 50% overhead). Both run in the same process over the same inputs
(natural prose, n x T, default 100 x 64): Glasshouse's compute_sinks on the embedded model (bridge
hooks reduce each layer's pattern to alpha) and an independently loaded plain HF model (eager
attention) whose forward returns every layer's attentions. Each side gets one warm-up batch; the
runs alternate `--repeats` times and the best time of each side is reported.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python -m benchmarks.sinks_overhead
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, this folder would lead sys.path and its module names could shadow installed packages
# (benchmarks/kernels.py once hid the `kernels` distribution): the repository root leads instead.
if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import os
import platform
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--T", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    from probes import load_model
    from probes.model.loading import _load_hf
    from probes.model.model_specs import resolve_spec
    from probes.sinks import compute_sinks, inputs_for_regime

    model = load_model(args.model, device="cpu")
    hf_model, _ = _load_hf(resolve_spec(args.model), torch.float32)  # a second, plain copy (no bridge)
    hf_model.eval()
    ids = inputs_for_regime(model, "natural", args.n, args.T)
    batches = [ids[s : s + args.batch_size] for s in range(0, len(ids), args.batch_size)]

    def bare() -> None:
        with torch.no_grad():
            for b in batches:
                out = hf_model(b, output_attentions=True)
                assert len(out.attentions) == model.facts.n_layers

    def report() -> float:
        return compute_sinks(model, ids, batch_size=args.batch_size).sink1

    with torch.no_grad():
        hf_model(batches[0], output_attentions=True)
    compute_sinks(model, batches[0])
    t_bare, t_sinks, sink1 = [], [], 0.0
    for _ in range(args.repeats):
        start = time.perf_counter()
        bare()
        t_bare.append(time.perf_counter() - start)
        start = time.perf_counter()
        sink1 = report()
        t_sinks.append(time.perf_counter() - start)
    best_bare, best_sinks = min(t_bare), min(t_sinks)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    print(f"inputs: {args.n} x {args.T} natural tokens, batch {args.batch_size}; Sink_1^0.3 = {sink1:.2f}%")
    print(f"bare HF forward (output_attentions=True): {best_bare:.2f} s  (runs {[round(t, 2) for t in t_bare]})")
    print(f"Glasshouse sink report (compute_sinks):   {best_sinks:.2f} s  (runs {[round(t, 2) for t in t_sinks]})")
    print(f"overhead: {100 * (best_sinks / best_bare - 1):+.1f}%")


if __name__ == "__main__":
    main()
