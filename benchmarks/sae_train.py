"""SAE training benchmarks (docs/saes.md).

Two modes, both on the CPU and on a cached activation folder (saes/activation_store.py):

    python benchmarks/sae_train.py throughput --cache CACHE [--d-sae 2304 --batch 1024 --steps 20]
        training throughput (tokens/s) and peak resident memory for each architecture at one size,
        each in its own subprocess (so the peak is its own). The encode is the plain-torch one
        (SAE.pre_acts): the baseline a Triton kernel in saes/kernels/ is to improve on.

    python benchmarks/sae_train.py compare --cache CACHE --out runs/sae_compare [--eval-tokens 8192]
        trains all six architectures from the cache (the last --eval-tokens rows held out), then
        measures L0, FVU, dead fraction on the held-out rows and CE loss recovered by splicing
        into the model (zero ablation) on fresh corpus windows; writes results.json. A finished
        architecture folder in --out is resumed (not retrained), so re-running re-evaluates it.

    python benchmarks/sae_train.py step [--d 576 --d-sae 4608 --k 32 --batch 4096 --rounds 5 --threads 2]
                                        [--saelens-python /work/venvs/saelens/bin/python]
        one TopK training step (forward, loss, backward, Adam) on random activations, timed in
        interleaved rounds: our dense step (SAE.loss), our sparse step (TopKSAE.loss_sparse, the
        trainer's default on CPU), the six dense matmuls a dense step needs (the plain-torch bound),
        and, given --saelens-python, SAELens's TopKTrainingSAE step (training_forward_pass, backward,
        grad clipping, Adam, as its SAETrainer does; rescale_acts_by_decoder_norm on, its default) in
        its own venv, one subprocess per round. Each entry reports the median over rounds of
        tokens/s by wall time and its CPU seconds per step; each ratio is the median of the per-round
        ratios (entries of a round run back to back) by wall time, with the CPU-time ratio beside it.

    python benchmarks/sae_train.py underuse --out OUT [--steps 400]
        dead and under-used features over training, BatchTopK against Mutual Choice (our under-use
        loss) and Feature Choice (uniform, Zipf), with TopK for reference, on synthetic activations
        whose true features have Zipf-distributed frequencies (d 64, 1024 true features, F 512,
        k 8, batch 512; the same data and seed for every run); writes underuse.json with the
        metrics.jsonl curves and prints a markdown table (docs/saes.md).

    python benchmarks/sae_train.py table --results A/results.json B/results.json
        the markdown table in docs/saes.md (a later file's row replaces an earlier one's).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from probes.io import write_json  # noqa: E402
from saes import registry  # noqa: E402
from saes.activation_store import CachedActivations  # noqa: E402

ARCH_SETTINGS = {
    "standard": {"l1_coefficient": 1.5, "decoder_norm": "free"},
    "topk": {},
    "batchtopk": {},
    "jumprelu": {"l0_coefficient": 0.5},
    "feature_choice": {},
    "mutual_choice": {},
}


def throughput_one(cache: str, arch: str, d_sae: int, batch: int, steps: int) -> dict:
    """Time `steps` training steps (after 2 warm-up steps); peak RSS of this process."""
    from saes.trainer import TrainConfig, _initial_sae, _train_step

    source = CachedActivations(cache)
    cfg = TrainConfig(sae={"architecture": arch, "d_in": source.d_in, "d_sae": d_sae, "k": 32, **ARCH_SETTINGS[arch]},
                      batch_size=batch, total_tokens=batch * (steps + 2), progress=False, out_dir="/tmp/unused")
    sae = _initial_sae(cfg, source)
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    batches = source.iter_batches(batch, seed=0)
    xs = [next(batches) for _ in range(steps + 2)]
    sae.train()
    for i in range(2):
        _train_step(sae, opt, xs[i], i, cfg, Path("/tmp/unused"))
    t0 = time.perf_counter()
    for i in range(2, steps + 2):
        _train_step(sae, opt, xs[i], i, cfg, Path("/tmp/unused"))
    dt = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"architecture": arch, "d_sae": d_sae, "batch": batch, "steps": steps,
            "tokens_per_s": steps * batch / dt, "peak_rss_mb": peak_mb}


SAELENS_STEP = r"""
import json, sys, time, torch
from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.saes.sae import TrainStepInput
d, F, k, B, steps, threads = (int(a) for a in sys.argv[1:7])
torch.set_num_threads(threads)
torch.manual_seed(0)
sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d, d_sae=F, k=k))
opt = torch.optim.Adam(sae.parameters(), lr=1e-4)
xs = [torch.randn(B, d) for _ in range(2)]
def step(x):
    out = sae.training_forward_pass(TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=None,
                                                   n_training_steps=0, is_logging_step=False))
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
    opt.step()
    opt.zero_grad()
step(xs[0])
walls, cpus = [], []
for i in range(steps):
    t0, c0 = time.perf_counter(), time.process_time()
    step(xs[i % 2])
    walls.append(time.perf_counter() - t0)
    cpus.append(time.process_time() - c0)
print(json.dumps({"wall": walls, "cpu": cpus}))
"""


def _ours_step(d: int, d_sae: int, k: int, batch: int, sparse: bool) -> Any:
    from saes.trainer import TrainConfig, _train_step

    sae = registry.build(registry.make_config("topk", d_in=d, d_sae=d_sae, k=k))
    from saes.trainer import make_optimizer

    cfg = TrainConfig(sae={}, batch_size=batch, total_tokens=batch * 100, progress=False, step="sparse" if sparse else "dense",
                      lr=1e-4)
    opt = make_optimizer(sae, cfg)
    xs = [torch.randn(batch, d, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    sae.train()
    state = {"i": 0}

    def run() -> None:
        _train_step(sae, opt, xs[state["i"] % 2], 50, cfg, Path("/tmp/unused"))
        state["i"] += 1

    run()
    return run


def _matmul_bound(d: int, d_sae: int, batch: int) -> Any:
    g = torch.Generator().manual_seed(0)
    x, W_enc, W_dec = torch.randn(batch, d, generator=g), torch.randn(d, d_sae, generator=g), torch.randn(d_sae, d, generator=g)
    f, dx = torch.randn(batch, d_sae, generator=g), torch.randn(batch, d, generator=g)

    def run() -> None:  # z = x W_enc; x_hat = f W_dec; df = dx W_dec^T; dW_dec = f^T dx; dW_enc = x^T dz; dx = dz W_enc^T
        torch.mm(x, W_enc)
        torch.mm(f, W_dec)
        torch.mm(dx, W_dec.T)
        torch.mm(f.T, dx)
        torch.mm(x.T, f)
        torch.mm(f, W_enc.T)

    run()
    return run


def _timed(run: Any, steps: int) -> tuple[float, float]:
    wall = cpu = 0.0
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        run()
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
    return wall / steps, cpu / steps


def step_benchmark(args: argparse.Namespace) -> None:
    import statistics

    torch.set_num_threads(args.threads)
    d, F, k, B = args.d, args.d_sae, args.k, args.batch
    runners = {"glasshouse_sparse": _ours_step(d, F, k, B, True), "glasshouse_dense": _ours_step(d, F, k, B, False),
               "six_dense_matmuls": _matmul_bound(d, F, B)}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in [*runners, "saelens"]}
    for r in range(args.rounds):
        for name, run in runners.items():
            samples[name].append(_timed(run, args.steps))
        if args.saelens_python:
            out = subprocess.run([args.saelens_python, "-c", SAELENS_STEP, str(d), str(F), str(k), str(B), str(args.steps),
                                  str(args.threads)], capture_output=True, text=True, check=True,
                                 env={**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": ""})
            t = json.loads(out.stdout.strip().splitlines()[-1])
            samples["saelens"].append((statistics.mean(t["wall"]), statistics.mean(t["cpu"])))
        print(f"round {r + 1}: " + ", ".join(f"{n} {B / v[-1][0]:.0f} tok/s" for n, v in samples.items() if v), flush=True)
    rows = {}
    for name, vals in samples.items():
        if not vals:
            continue
        wall = statistics.median(v[0] for v in vals)
        cpu = statistics.median(v[1] for v in vals)
        rows[name] = {"tokens_per_s_wall": B / wall, "tokens_per_s_cpu": B * args.threads / cpu if cpu else None,
                      "seconds_per_step_wall": wall, "cpu_seconds_per_step": cpu,
                      "rounds_wall": [B / v[0] for v in vals]}
    # Ratios per round (entries of one round ran back to back, under the same load), then the median;
    # CPU-time ratios beside them (less sensitive to other processes on a shared machine).
    ratios_wall, ratios_cpu = {}, {}
    for base in ("saelens", "six_dense_matmuls", "glasshouse_dense"):
        if base not in rows:
            continue
        for name in rows:
            if name != base:
                per_round = [b[0] / a[0] for a, b in zip(samples[name], samples[base], strict=False)]
                ratios_wall[f"{name}/{base}"] = statistics.median(per_round)
                ratios_cpu[f"{name}/{base}"] = rows[base]["cpu_seconds_per_step"] / rows[name]["cpu_seconds_per_step"]
    machine = {"cpu": platform.processor() or platform.machine(), "threads": args.threads, "torch": torch.__version__,
               "cores_visible": os.cpu_count(), "load_average": os.getloadavg()}
    result = {"shape": {"d_in": d, "d_sae": F, "k": k, "batch": B}, "rounds": args.rounds, "steps_per_round": args.steps,
              "machine": machine, "rows": rows, "ratios_wall_median_of_rounds": ratios_wall,
              "ratios_cpu_time": ratios_cpu}
    write_json(Path(args.out) / "step.json", result)
    for name, row in rows.items():
        print(f"{name:20s} {row['tokens_per_s_wall']:8.0f} tok/s wall  (cpu {row['cpu_seconds_per_step']:.3f} s/step)")
    for key, value in ratios_wall.items():
        print(f"{key:40s} {value:.2f}x wall (median of per-round ratios)  {ratios_cpu[key]:.2f}x CPU time")


def zipf_data(n: int, d: int = 64, n_true: int = 1024, mean_active: float = 8.0, seed: int = 0) -> torch.Tensor:
    """x = sum_g a_g u_g over true unit directions u_g, feature g active with probability p_g proportional to 1/g."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(n_true, d, generator=g)
    dirs /= dirs.norm(dim=1, keepdim=True)
    p = 1.0 / torch.arange(1, n_true + 1).double()
    p = (p / p.sum() * mean_active).clamp(max=1.0).float()
    active = torch.rand(n, n_true, generator=g) < p
    amp = torch.rand(n, n_true, generator=g) * 2 + 0.5
    return (active * amp) @ dirs + 0.01 * torch.randn(n, d, generator=g)


UNDERUSE_RUNS = {
    "batchtopk": {"architecture": "batchtopk"},
    "mutual_choice": {"architecture": "mutual_choice"},
    "feature_choice (uniform)": {"architecture": "feature_choice", "capacities": "uniform"},
    "feature_choice (zipf)": {"architecture": "feature_choice", "capacities": "zipf"},
    "topk": {"architecture": "topk"},
}


def underuse(args: argparse.Namespace) -> None:
    from saes.activation_store import TensorSource
    from saes.evaluate import reconstruction_metrics
    from saes.trainer import TrainConfig, train

    batch, steps = 512, args.steps
    data = zipf_data(batch * steps + 8192)
    source, held_out = TensorSource(data[: batch * steps]), data[batch * steps:]
    rows = {}
    for name, sae in UNDERUSE_RUNS.items():
        cfg = TrainConfig(sae={**sae, "d_in": 64, "d_sae": 512, "k": 8}, total_tokens=batch * steps, batch_size=batch,
                          lr=2e-3, warmup_steps=10, dead_window_tokens=batch * 20, log_every=10,
                          checkpoint_every=steps, out_dir=f"{args.out}/{name.replace(' ', '_')}", progress=False)
        res = train(cfg, source)
        curve = [json.loads(line) for line in (Path(cfg.out_dir) / "metrics.jsonl").read_text().splitlines()]
        rec = reconstruction_metrics(res.sae, held_out)
        rows[name] = {"curve": [{k: c[k] for k in ("step", "dead_fraction", "underused_fraction", "l0", "fvu")} for c in curve],
                      "held_out": {"l0": rec.l0, "fvu": rec.fvu, "dead_fraction": rec.dead_fraction}}
        print(name, rows[name]["curve"][-1], rows[name]["held_out"], flush=True)
    write_json(Path(args.out) / "underuse.json", {"steps": steps, "rows": rows})
    marks = sorted({max(10, steps // 8), steps // 4, steps // 2, steps})
    head = " | ".join(f"dead / under-used @ {m}" for m in marks)
    lines = [f"| run | {head} | held-out L0 | held-out FVU |", "|---" * (len(marks) + 3) + "|"]
    for name, row in rows.items():
        at = {c["step"]: c for c in row["curve"]}
        cells = " | ".join(f"{at[m]['dead_fraction']:.3f} / {at[m]['underused_fraction']:.3f}" if m in at else "-" for m in marks)
        lines.append(f"| {name} | {cells} | {row['held_out']['l0']:.1f} | {row['held_out']['fvu']:.3f} |")
    print("\n".join(lines))


def throughput(args: argparse.Namespace) -> None:
    rows = []
    for arch in registry.names():
        cmd = [sys.executable, __file__, "_one", "--cache", args.cache, "--arch", arch, "--d-sae", str(args.d_sae),
               "--batch", str(args.batch), "--steps", str(args.steps)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    machine = {"cpu": platform.processor() or platform.machine(), "threads": args.threads, "torch": torch.__version__,
               "python": platform.python_version(), "cores_visible": os.cpu_count()}
    write_json(Path(args.out) / "throughput.json", {"machine": machine, "rows": rows})


def compare(args: argparse.Namespace) -> None:
    from probes import load_model
    from probes.corpus import sample
    from saes.activation_store import TensorSource
    from saes.evaluate import ce_loss_recovered, reconstruction_metrics
    from saes.trainer import TrainConfig, train

    cache = CachedActivations(args.cache)
    n = len(cache)
    train_rows = n - args.eval_tokens
    source = TensorSource(cache.rows(0, train_rows))
    held_out = cache.rows(train_rows, n)
    model = load_model(cache.meta["model"], device="cpu")
    ids = torch.cat([sample("prose", args.ce_prompts // 2, args.ce_length, model, seed=777).ids,
                     sample("code", args.ce_prompts // 2, args.ce_length, model, seed=777).ids])
    settings = {a: dict(v) for a, v in ARCH_SETTINGS.items()}
    settings["standard"]["l1_coefficient"] = args.l1_coefficient
    settings["jumprelu"].update(l0_coefficient=args.l0_coefficient, initial_threshold=args.jumprelu_threshold)
    results = []
    for arch in args.archs or registry.names():
        cfg = TrainConfig(
            sae={"architecture": arch, "d_in": cache.d_in, "d_sae": args.d_sae, "k": args.k,
                 "hook_name": cache.hook_name, "model_name": cache.meta["model"], **settings[arch]},
            total_tokens=train_rows, batch_size=args.batch, lr=args.lr, warmup_steps=10,
            dead_window_tokens=args.dead_window, log_every=8, checkpoint_every=32, out_dir=f"{args.out}/{arch}",
        )
        t0 = time.time()
        res = train(cfg, source)
        rec = reconstruction_metrics(res.sae, held_out)
        ce = ce_loss_recovered(model, res.sae, cache.hook_name, ids, ablation="zero")
        row = {"architecture": arch, "tokens_trained": res.tokens, "train_seconds": time.time() - t0,
               "reconstruction": rec.to_dict(), "ce": ce.to_dict()}
        results.append(row)
        print(arch, f"L0 {rec.l0:.1f} FVU {rec.fvu:.3f} CE rec {ce.ce_loss_recovered:.3f} dead {rec.dead_fraction:.3f}", flush=True)
        write_json(Path(args.out) / "results.json", {"cache": cache.meta, "settings": vars(args), "rows": results})


def table(paths: list[str]) -> str:
    """A markdown table of the rows of one or more compare results.json files (later files win per architecture)."""
    rows: dict[str, dict] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        for row in data["rows"]:
            rows[row["architecture"]] = {**row, "settings": data["settings"], "source": path}
    lines = ["| architecture | setting | L0 | FVU | CE loss recovered | dead fraction |", "|---|---|---|---|---|---|"]
    for arch in registry.names():
        if arch not in rows:
            continue
        r, s = rows[arch], rows[arch]["settings"]
        setting = {"standard": f"λ={s.get('l1_coefficient')}", "jumprelu": f"L0 coef {s.get('l0_coefficient')}, θ0={s.get('jumprelu_threshold')}"}.get(arch, f"k={s['k']}")
        rec, ce = r["reconstruction"], r["ce"]
        lines.append(f"| {arch} | {setting} | {rec['l0']:.1f} | {rec['fvu']:.3f} | {ce['ce_loss_recovered']:.3f} | {rec['dead_fraction']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["throughput", "compare", "table", "step", "underuse", "_one"])
    p.add_argument("--d", type=int, default=576, help="activation width (step)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (step)")
    p.add_argument("--saelens-python", default=None, help="python of a venv with sae-lens 6 (step)")
    p.add_argument("--cache", default=None, help="activation cache folder (throughput, compare)")
    p.add_argument("--results", nargs="*", default=[], help="results.json files (table)")
    p.add_argument("--out", default="runs/sae_bench")
    p.add_argument("--arch", default="topk")
    p.add_argument("--archs", nargs="*")
    p.add_argument("--d-sae", type=int, default=2304)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-tokens", type=int, default=8192)
    p.add_argument("--dead-window", type=int, default=16384)
    p.add_argument("--ce-prompts", type=int, default=8)
    p.add_argument("--ce-length", type=int, default=64)
    p.add_argument("--l1-coefficient", type=float, default=ARCH_SETTINGS["standard"]["l1_coefficient"])
    p.add_argument("--l0-coefficient", type=float, default=ARCH_SETTINGS["jumprelu"]["l0_coefficient"])
    p.add_argument("--jumprelu-threshold", type=float, default=0.1, help="JumpReLU's initial threshold (normalised units)")
    args = p.parse_args()
    if args.mode == "table":
        print(table(args.results))
        return
    if args.mode == "underuse":
        args.steps = 400 if args.steps == 20 else args.steps
        underuse(args)
        return
    if args.mode == "step":
        if args.d_sae == 2304 and args.batch == 1024:  # the step benchmark's own defaults (the target shape in docs/saes.md)
            args.d_sae, args.batch, args.threads = 4608, 4096, max(args.threads, 2)
        args.steps = min(args.steps, 3) if args.steps == 20 else args.steps
        step_benchmark(args)
        return
    if not args.cache:
        p.error("--cache is required for throughput and compare")
    if args.mode == "_one":
        print(json.dumps(throughput_one(args.cache, args.arch, args.d_sae, args.batch, args.steps)))
    elif args.mode == "throughput":
        throughput(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
