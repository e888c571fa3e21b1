"""Attribution time and peak memory, position-agnostic (EAP) versus position-aware (PEAP), same run
(spec: circuits.md, "Position-aware EAP").

    OMP_NUM_THREADS=1 python -m benchmarks.circuits_attribution --task succession --n 4

Peak memory: the process's resident set size sampled every 20 ms by a thread during each call, minus
the resident size just before the call (torch's CPU allocations do not show in tracemalloc). The
allocator keeps memory freed by the first call, so the second call's number is a lower bound: run
with --first eap and --first peap to read each method's peak as the first call. Each method
runs once after one warm-up EAP call on one example. Wall times on a shared machine include waiting
for the CPU, so the process CPU time is reported too.
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
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from circuits.eap import eap
from circuits.forward import GraphForward
from circuits.peap import peap
from circuits.tasks import make_task
from probes import load_model

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def measure(fn: Callable[[], Any]) -> dict[str, float]:
    """Wall time, CPU time and peak RSS increase (MiB) of one call."""
    before = rss_bytes()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    done.set()
    t.join()
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "peak_extra_mib": round((peak[0] - before) / 2**20, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--task", default="succession")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--first", choices=("eap", "peap"), default="eap", help="which method runs first")
    ap.add_argument("--out", default="benchmarks/results/circuits_attribution.json")
    args = ap.parse_args()
    model = load_model(args.model, device="cpu")
    gf = GraphForward(model)
    task = make_task(args.task, model, n=args.n, seed=0)
    eap(gf, task.subset([0]))  # warm-up
    g = gf.graph
    row: dict[str, Any] = {"model": args.model, "task": args.task, "n": len(task), "spans": len(task.schema),
                           "tokens": [len(c) for c in task.clean], "graph_edges": g.n_edges,
                           "threads": os.environ.get("OMP_NUM_THREADS"), "cpu_count": os.cpu_count()}
    runs = {"agnostic_eap": lambda: eap(gf, task), "aware_peap": lambda: peap(gf, task)}
    order = list(runs) if args.first == "eap" else list(runs)[::-1]
    row["order"] = order
    for key in order:
        row[key] = measure(runs[key])
    S = len(task.schema)
    row["scores_mib"] = {"per_span": round(S * g.n_forward * g.n_backward * 4 / 2**20, 1),
                         "crossing_kv": round(S * S * g.n_forward * 2 * g.n_layers * g.n_heads * 4 / 2**20, 1)}
    print(json.dumps(row, indent=1), flush=True)
    from probes.io import write_json

    write_json(args.out, row)


if __name__ == "__main__":
    main()
