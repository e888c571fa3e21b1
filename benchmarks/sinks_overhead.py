"""The sink report on the statistics path against bare HF forwards, in time and in memory.

Spec: docs/kernels.md ("The statistics path"); targets from issue 28: the sink report (compute_sinks,
attention="fast") at most 1.15x a bare SDPA forward over the same inputs at T = 64 (n = 48) and at most
1.25x at T = 1024 and 8192; its peak memory linear in T and at most 1.5x the bare SDPA forward's at 8192.

    python -m benchmarks.sinks_overhead time [--configs 64x48,1024x4,8192x1 --rounds 3 --batch-size 8]
    python -m benchmarks.sinks_overhead memory [--lengths 2048,4096,8192 --eager-lengths 512,1024,2048]

`time`: in one process, over the same natural-prose inputs (random tokens past the corpus' longest window), interleaved rounds (the order rotates each
round) of: Glasshouse's sink report on the fast path and on the pattern path; a second, plain HF copy of
the model (no bridge, no hooks) forwarding with SDPA, and with eager attention and output_attentions=True
(skipped where its attentions alone would pass --eager-limit-gb). Wall and CPU time (process_time, every
thread) per side, the median over rounds, and each ratio to the SDPA forward and to the eager one.
`memory`: each (side, T) in a fresh process, n = 1: the peak RSS growth over the RSS after loading (VmHWM,
reset after loading),
and the exponent of a least-squares fit of log(peak) on log(T) per side.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, this folder would lead sys.path and its module names could shadow installed packages
# (benchmarks/kernels.py once hid the `kernels` distribution): the repository root leads instead.
if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

import torch

SIDES = ("sinks_fast", "sinks_patterns", "hf_sdpa", "hf_eager_attentions")


def _machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
            f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")


def _runners(spec: str, n: int, T: int, batch_size: int, eager_limit_gb: float
             ) -> tuple[Any, torch.Tensor, dict[str, Callable[[torch.Tensor], Any]]]:
    """The loaded model, n natural windows of T tokens, and one runner per side taking the ids to run."""
    from probes import load_model
    from probes.errors import InputError
    from probes.model.loading import _load_hf
    from probes.model.model_specs import resolve_spec
    from probes.sinks import compute_sinks, inputs_for_regime

    model = load_model(spec, device="cpu")
    plain, _ = _load_hf(resolve_spec(spec), torch.float32)  # a second copy: no bridge, no hooks
    plain.eval()
    try:
        ids = inputs_for_regime(model, "natural", n, T)
    except InputError:  # the prose corpus has no windows this long: random tokens cost the same
        ids = inputs_for_regime(model, "random", n, T)

    def hf(implementation: str, attentions: bool) -> Callable[[torch.Tensor], None]:
        def run(x: torch.Tensor) -> None:
            plain.set_attn_implementation(implementation)
            with torch.no_grad():
                for s in range(0, len(x), batch_size):
                    plain(x[s : s + batch_size], output_attentions=attentions, use_cache=False)

        return run

    f = model.facts
    runners: dict[str, Callable[[torch.Tensor], Any]] = {
        "sinks_fast": lambda x: compute_sinks(model, x, batch_size=batch_size, attention="fast"),
        "sinks_patterns": lambda x: compute_sinks(model, x, batch_size=batch_size, attention="patterns"),
        "hf_sdpa": hf("sdpa", False),
    }
    attentions_gb = f.n_layers * min(n, batch_size) * f.n_heads * T * T * 4 / 2**30
    if attentions_gb <= eager_limit_gb:
        runners["hf_eager_attentions"] = hf("eager", True)
    return model, ids, runners


def time_one(spec: str, n: int, T: int, rounds: int, batch_size: int, eager_limit_gb: float) -> dict[str, Any]:
    _, ids, runners = _runners(spec, n, T, batch_size, eager_limit_gb)
    if T > 2048:  # the pattern path's eager T x T per layer: measured where affordable only
        runners.pop("sinks_patterns")
    for run in runners.values():  # warm-up
        run(ids[:batch_size])
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runners}
    names = list(runners)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            w0, c0 = time.perf_counter(), time.process_time()
            runners[name](ids)
            samples[name].append((time.perf_counter() - w0, time.process_time() - c0))
    med = {name: (statistics.median(w for w, _ in s), statistics.median(c for _, c in s)) for name, s in samples.items()}
    row: dict[str, Any] = {"T": T, "n": n, "rounds": rounds, "wall_s": {k: v[0] for k, v in med.items()},
                           "cpu_s": {k: v[1] for k, v in med.items()}}
    for base in ("hf_sdpa", "hf_eager_attentions"):
        if base in med:
            row[f"ratio_to_{base}"] = {k: {"wall": v[0] / med[base][0], "cpu": v[1] / med[base][1]}
                                       for k, v in med.items() if k != base}
    return row


def peak_one(spec: str, side: str, T: int) -> dict[str, Any]:
    """In this (fresh) process: load, then one n = 1 run of `side`; the peak RSS growth in bytes."""
    import psutil

    from probes.sinks import sink_memory_bytes

    model, ids, runners = _runners(spec, 1, T, 1, eager_limit_gb=1e9)
    runners[side](ids[:, :8])  # one-time costs (lazy imports, thread pools) out of the measurement
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak RSS (VmHWM) left by loading
    before = psutil.Process().memory_info().rss
    runners[side](ids)
    row: dict[str, Any] = {"side": side, "T": T, "peak_growth_bytes": max(0, _vm_hwm() - before)}
    if side.startswith("sinks_"):  # the formula behind docs/kernels.md's memory model, checked here
        row["estimate_bytes"] = sink_memory_bytes(model, 1, T, side.removeprefix("sinks_"))
    return row


def _vm_hwm() -> int:
    """Peak RSS since the last reset, in bytes (/proc/self/status VmHWM; ru_maxrss where that is missing)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def exponent(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of log(bytes) on log(T)."""
    xs, ys = [math.log(t) for t, _ in points], [math.log(max(b, 1.0)) for _, b in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def memory(spec: str, lengths: list[int], eager_lengths: list[int]) -> dict[str, Any]:
    plan = [(side, T) for T in lengths for side in ("sinks_fast", "hf_sdpa")]
    plan += [(side, T) for T in eager_lengths for side in ("sinks_patterns", "hf_eager_attentions")]
    rows = []
    for side, T in plan:
        out = subprocess.run([sys.executable, "-m", "benchmarks.sinks_overhead", "peak", "--model", spec,
                              "--side", side, "--T", str(T)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        est = rows[-1].get("estimate_bytes")
        print(f"{side:<20} T={T:<6} peak growth {rows[-1]['peak_growth_bytes'] / 2**30:.3f} GiB"
              + ("" if est is None else f" (formula: {est / 2**30:.3f} GiB)"), flush=True)
    fits = {}
    for side in SIDES:
        pts = [(r["T"], float(r["peak_growth_bytes"])) for r in rows if r["side"] == side]
        if len(pts) >= 2:
            fits[side] = exponent(pts)
    return {"rows": rows, "exponent": fits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("time", "memory", "peak"))
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--configs", default="64x48,1024x4,8192x1", help="TxN,... for `time`")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eager-limit-gb", type=float, default=4.0)
    parser.add_argument("--lengths", default="2048,4096,8192")
    parser.add_argument("--eager-lengths", default="512,1024,2048")
    parser.add_argument("--side", choices=SIDES)
    parser.add_argument("--T", type=int)
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    if args.mode == "peak":
        print(json.dumps(peak_one(args.model, args.side, args.T)))
        return
    print(f"machine: {_machine()}")
    if args.mode == "time":
        result: dict[str, Any] = {"rows": []}
        for config in args.configs.split(","):
            T, n = (int(x) for x in config.split("x"))
            row = time_one(args.model, n, T, args.rounds, args.batch_size, args.eager_limit_gb)
            result["rows"].append(row)
            print(f"T={T} n={n}: " + ", ".join(f"{k} {v:.2f} s wall / {row['cpu_s'][k]:.2f} s CPU"
                                                for k, v in row["wall_s"].items()), flush=True)
            for base in ("hf_sdpa", "hf_eager_attentions"):
                for side, r in row.get(f"ratio_to_{base}", {}).items():
                    print(f"    {side} / {base}: {r['wall']:.3f}x wall, {r['cpu']:.3f}x CPU")
    else:
        result = memory(args.model, [int(x) for x in args.lengths.split(",")],
                        [int(x) for x in args.eager_lengths.split(",")])
        for side, e in result["exponent"].items():
            print(f"fitted exponent of peak memory in T, {side}: {e:.2f}")
        fast = {r["T"]: r["peak_growth_bytes"] for r in result["rows"] if r["side"] == "sinks_fast"}
        sdpa = {r["T"]: r["peak_growth_bytes"] for r in result["rows"] if r["side"] == "hf_sdpa"}
        for T in sorted(set(fast) & set(sdpa)):
            print(f"T={T}: sink report peak / bare SDPA peak = {fast[T] / max(sdpa[T], 1):.2f}x")
    result["machine"] = _machine()
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
