"""Faithfulness-versus-edges curves on the embedded model, position-aware versus position-agnostic
(spec: circuits.md, "Evaluation"). One PEAP pass per task gives both rankings: the agnostic ranking is
its per-span scores summed over spans (= EAP), the position-aware one keeps spans and crossing k/v edges.

    OMP_NUM_THREADS=1 python -m benchmarks.circuits_faithfulness --n 8 \
        --out benchmarks/results/circuits_faithfulness.json

Each task's result is written as soon as it is done (atomically) and skipped on a rerun (resume).
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
import time
from pathlib import Path

import torch

from circuits.faithfulness import baselines, curve
from circuits.forward import GraphForward
from circuits.peap import peap
from circuits.tasks import make_task
from probes import load_model
from probes.io import write_json

COUNTS = [10, 30, 100, 300, 1000, 3000, 10000]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tasks", default="ioi,greater_than,succession")
    ap.add_argument("--counts", default=",".join(map(str, COUNTS)))
    ap.add_argument("--out", default="benchmarks/results/circuits_faithfulness.json")
    args = ap.parse_args()
    out = Path(args.out)
    done = json.loads(out.read_text()) if out.exists() else {}
    counts = [int(c) for c in args.counts.split(",")]
    torch.manual_seed(args.seed)
    model = load_model(args.model, device="cpu")
    gf = GraphForward(model)
    for name in args.tasks.split(","):
        if name in done:
            print(f"{name}: done already, skipped", flush=True)
            continue
        t0 = time.time()
        task = make_task(name, model, n=args.n, seed=args.seed)
        scores = peap(gf, task, progress=True)
        t_attr = time.time() - t0
        base = baselines(gf, task)
        row = {"n": len(task), "spans": list(task.schema.names), "clean_metric": scores.clean_metric,
               "corrupted_metric": scores.corrupted_metric, "full_graph_metric": base.clean,
               "empty_circuit_metric": base.baseline, "n_edges_graph": gf.graph.n_edges,
               "attribution_s": round(t_attr, 1)}
        print(name, row, flush=True)
        for aware in (False, True):
            c = curve(gf, task, scores, counts, aware, base, progress=True)
            row["aware" if aware else "agnostic"] = c.to_dict()
            print(name, c.to_dict(), flush=True)
        row["total_s"] = round(time.time() - t0, 1)
        done[name] = row
        write_json(out, done)
    print(json.dumps(done, indent=1), flush=True)


if __name__ == "__main__":
    main()
