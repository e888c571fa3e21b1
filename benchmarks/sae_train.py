"""SAE training benchmarks (docs/saes.md).

Two modes, both on the CPU and on a cached activation folder (saes/activation_store.py):

    python -m benchmarks.sae_train throughput --cache CACHE [--d-sae 2304 --batch 1024 --rounds 5 --steps 3 --threads 1]
        training throughput of every architecture at one size, as `sae train` runs it (its default
        settings, `_train_step`: TopK's sparse step on the CPU), and the six dense matmuls of a dense
        step (the plain-torch bound), in one process, in interleaved rounds (the order rotated each
        round), two cached batches per architecture. Per entry: median tokens/s by wall time, median
        CPU seconds per step, and the ratio to the bound (median of per-round wall ratios; CPU-time
        ratio beside it). The peak resident memory is the whole process's (all architectures).

    python -m benchmarks.sae_train compare --cache CACHE --out runs/sae_compare [--eval-tokens 8192]
        trains all six architectures from the cache (the last --eval-tokens rows held out), then
        measures L0, FVU, dead fraction on the held-out rows and CE loss recovered by splicing
        into the model (zero ablation) on fresh corpus windows; writes results.json. A finished
        architecture folder in --out is resumed (not retrained), so re-running re-evaluates it.

    python -m benchmarks.sae_train step [--d 576 --d-sae 4608 --k 32 --batch 4096 --rounds 5 --threads 2]
                                        [--saelens-python /work/venvs/saelens/bin/python]
        one TopK training step (forward, loss, backward, Adam) on random activations, timed in
        interleaved rounds: our dense step (SAE.loss), our sparse step (TopKSAE.loss_sparse, the
        trainer's default on CPU), the six dense matmuls a dense step needs (the plain-torch bound),
        and, given --saelens-python, SAELens's TopKTrainingSAE step (training_forward_pass, backward,
        grad clipping, Adam, as its SAETrainer does; rescale_acts_by_decoder_norm on, its default) in
        its own venv, one subprocess per round. Each entry reports the median over rounds of
        tokens/s by wall time and its CPU seconds per step; each ratio is the median of the per-round
        ratios (entries of a round run back to back) by wall time, with the CPU-time ratio beside it.

    python -m benchmarks.sae_train underuse --out OUT [--steps 400]
    python -m benchmarks.sae_train underuse --cache CACHE --out OUT [--steps 128 --tokens 65536 --eval-tokens 16384
                                            --d-sae 2304 --k 32 --batch 1024 --dead-window 16384 --archs ...]
        dead and under-used features over training (the trainer's metrics.jsonl: dead for the dead
        window; under-used = density EMA below 0.1x the Zipf fit at its rank, mutual_choice.py), then
        on held-out rows in inference mode. Without --cache: BatchTopK against Mutual Choice (our
        under-use loss) and Feature Choice (uniform, Zipf), with TopK for reference, on synthetic
        activations whose true features have Zipf-distributed frequencies (d 64, 1024 true features,
        F 512, k 8, batch 512). With --cache (real activations; the first --tokens rows, reused each
        epoch, the next --eval-tokens held out): BatchTopK and Mutual Choice by default. Same data and
        seed for every run; writes underuse.json and prints a markdown table (docs/saes.md).

    python -m benchmarks.sae_train table --results A/results.json B/results.json
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

# Run as a file, this folder would lead sys.path and its module names could shadow installed packages
# (benchmarks/kernels.py once hid the `kernels` distribution): the repository root leads instead.
if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch

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
    "gated": {"l1_coefficient": 1.0},  # GatedConfig's default (SAELens 6's)
}


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


def _alternating_steps(sae: Any, opt: Any, cfg: Any, xs: list[torch.Tensor], warmup: int) -> Any:
    """A callable running one `_train_step` per call on the batches `xs` in turn, after `warmup` untimed calls."""
    from saes.trainer import _train_step

    sae.train()
    state = {"i": 0}

    def run() -> None:
        _train_step(sae, opt, xs[state["i"] % len(xs)], 50, cfg, Path("/tmp/unused"))
        state["i"] += 1

    for _ in range(warmup):
        run()
    return run


def _ours_step(d: int, d_sae: int, k: int, batch: int, sparse: bool) -> Any:
    from saes.trainer import TrainConfig

    sae = registry.build(registry.make_config("topk", d_in=d, d_sae=d_sae, k=k))
    from saes.trainer import make_optimizer

    cfg = TrainConfig(sae={}, batch_size=batch, total_tokens=batch * 100, progress=False, step="sparse" if sparse else "dense",
                      lr=1e-4)
    opt = make_optimizer(sae, cfg)
    xs = [torch.randn(batch, d, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    return _alternating_steps(sae, opt, cfg, xs, warmup=1)


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
    """Dead and under-used features over training; synthetic Zipf data, or --cache (real activations)."""
    from saes.activation_store import TensorSource
    from saes.trainer import TrainConfig, train

    if args.cache:
        cache = CachedActivations(args.cache)
        train_rows = min(args.tokens, len(cache) - args.eval_tokens)
        source, held_out = TensorSource(cache.rows(0, train_rows)), cache.rows(train_rows, train_rows + args.eval_tokens)
        d_in, d_sae, k, batch, lr = cache.d_in, args.d_sae, args.k, args.batch, args.lr
        runs = {name: UNDERUSE_RUNS[name] for name in (args.archs or ["batchtopk", "mutual_choice"])}
        extra = {"hook_name": cache.hook_name, "model_name": cache.meta["model"]}
        dead_window, log_every, warmup = args.dead_window, 8, 10
    else:
        d_in, d_sae, k, batch, lr = 64, 512, 8, 512, 2e-3
        data = zipf_data(batch * args.steps + 8192)
        source, held_out = TensorSource(data[: batch * args.steps]), data[batch * args.steps:]
        runs, extra, dead_window, log_every, warmup = UNDERUSE_RUNS, {}, batch * 20, 10, 10
    steps = args.steps
    rows = {}
    for name, sae in runs.items():
        cfg = TrainConfig(sae={**sae, "d_in": d_in, "d_sae": d_sae, "k": k, **extra}, total_tokens=batch * steps,
                          batch_size=batch, lr=lr, warmup_steps=warmup, dead_window_tokens=dead_window,
                          log_every=log_every, checkpoint_every=max(1, steps // 4),
                          out_dir=f"{args.out}/{name.replace(' ', '_')}", progress=False)
        t0 = time.time()
        res = train(cfg, source)
        curve = [json.loads(line) for line in (Path(cfg.out_dir) / "metrics.jsonl").read_text().splitlines()]
        rows[name] = {"curve": [{k: c.get(k) for k in ("step", "dead_fraction", "underused_fraction", "l0", "fvu", "underuse")}
                                for c in curve],
                      "held_out": held_out_usage(res.sae, held_out), "seconds": time.time() - t0}
        print(name, rows[name]["curve"][-1], rows[name]["held_out"], flush=True)
        write_json(Path(args.out) / "underuse.json", {"steps": steps, "d_sae": d_sae, "k": k, "batch": batch,
                                                       "dead_window_tokens": dead_window, "machine": _machine(args.threads),
                                                       "cache": args.cache, "rows": rows})
    print(underuse_table(rows, steps, d_sae))


def held_out_usage(sae: Any, acts: torch.Tensor) -> dict:
    """Held-out (inference mode) L0, FVU, dead features (density 0) and under-used ones (the trainer's rule on density)."""
    from saes.architectures.mutual_choice import underused
    from saes.evaluate import reconstruction_metrics

    rec = reconstruction_metrics(sae, acts)
    sae.eval()
    with torch.no_grad():
        density = torch.cat([(sae.encode(acts[i : i + 4096]) > 0).float() for i in range(0, acts.shape[0], 4096)]).mean(0)
    under = underused(density, 0.1, None)
    return {"l0": rec.l0, "fvu": rec.fvu, "dead": int((density == 0).sum()), "underused": int(under.sum()),
            "underused_live": int((under & (density > 0)).sum()), "n_tokens": int(acts.shape[0])}


def underuse_table(rows: dict, steps: int, d_sae: int) -> str:
    """Markdown: dead / under-used feature counts at a few steps for each run, then the held-out counts."""
    logged = [c["step"] for c in next(iter(rows.values()))["curve"]]
    marks = sorted({min(logged, key=lambda s: abs(s - f * steps)) for f in (1 / 8, 1 / 4, 1 / 2, 3 / 4, 1)})
    head = " | ".join(f"step {m}" for m in marks)
    lines = [f"| run (dead / under-used of {d_sae}) | {head} | held-out dead / under-used | held-out L0 | held-out FVU |",
             "|---" * (len(marks) + 4) + "|"]
    for name, row in rows.items():
        at = {c["step"]: c for c in row["curve"]}
        cells = " | ".join(f"{round(at[m]['dead_fraction'] * d_sae)} / {round(at[m]['underused_fraction'] * d_sae)}"
                           if m in at else "-" for m in marks)
        h = row["held_out"]
        lines.append(f"| {name} | {cells} | {h['dead']} / {h['underused']} | {h['l0']:.1f} | {h['fvu']:.3f} |")
    return "\n".join(lines)


def cli_train_config(arch: str, cache: CachedActivations, out_dir: str, tokens: int = 65536, d_sae: int = 2304,
                     k: int = 32, sae_overrides: dict | None = None, batch: int = 1024) -> Any:
    """The TrainConfig `glasshouse sae train --arch ARCH` builds with its defaults (saes.pipeline.sae_fields, as
    app/commands/sae.py run_train calls saes.pipeline.train_sae)."""
    from saes.pipeline import SAESpec, sae_fields
    from saes.trainer import TrainConfig

    fields = sae_fields(SAESpec(arch, d_sae, k, cache.hook_name, cache.meta["model"], seed=0), cache.d_in)
    fields.update(sae_overrides or {})
    return TrainConfig(sae=fields, total_tokens=tokens, batch_size=batch, lr=2e-3, seed=0, out_dir=out_dir,
                       checkpoint_every=20, progress=False)


def _parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = json.loads(value)
    return out


def defaults(args: argparse.Namespace) -> None:
    """Standard and JumpReLU with `sae train`'s default sparsity (target L0 = k): where does L0 land?"""
    from saes.activation_store import TensorSource
    from saes.evaluate import reconstruction_metrics
    from saes.trainer import train

    cache = CachedActivations(args.cache)
    tokens = args.tokens
    held_out = cache.rows(tokens, min(len(cache), tokens + args.eval_tokens))
    rows = {}
    for arch in args.archs or ["standard", "jumprelu"]:
        name = arch + (f" {args.label}" if args.label else "")
        cfg = cli_train_config(arch, cache, f"{args.out}/{name.replace(' ', '_')}", tokens, args.d_sae, args.k,
                               _parse_sets(args.set))
        t0 = time.time()
        res = train(cfg, TensorSource(cache.rows(0, tokens)))
        curve = [json.loads(line) for line in (Path(cfg.out_dir) / "metrics.jsonl").read_text().splitlines()]
        rec = reconstruction_metrics(res.sae, held_out)
        rows[name] = {"sae": cfg.sae, "curve_l0": {c["step"]: c["l0"] for c in curve},
                      "sparsity_scale": float(getattr(res.sae, "sparsity_scale", 1.0)),
                      "held_out": {"l0": rec.l0, "fvu": rec.fvu, "dead_fraction": rec.dead_fraction},
                      "seconds": time.time() - t0}
        print(name, json.dumps({k: v for k, v in rows[name].items() if k != "sae"}), flush=True)
        previous = json.loads((Path(args.out) / "defaults.json").read_text())["rows"] if (Path(args.out) / "defaults.json").exists() else {}
        write_json(Path(args.out) / "defaults.json", {"cache": cache.meta, "tokens": tokens, "k": args.k,
                                                        "machine": _machine(args.threads), "rows": {**previous, **rows}})
    for name, row in rows.items():
        steps = sorted(row["curve_l0"])
        marks = " ".join(f"{s}:{row['curve_l0'][s]:.0f}" for s in steps)
        print(f"| {name} | {marks} | {row['held_out']['l0']:.1f} | {row['held_out']['fvu']:.3f} | {row['sparsity_scale']:.3g} |")


def _machine(threads: int) -> dict:
    return {"cpu": platform.processor() or platform.machine(), "threads": threads, "torch": torch.__version__,
            "python": platform.python_version(), "cores_visible": os.cpu_count(), "load_average": os.getloadavg()}


def _arch_step(arch: str, cache: CachedActivations, d_sae: int, batch: int) -> Any:
    """One training step of `arch` as `sae train` runs it (its default settings; `_train_step`), on two cached batches."""
    from saes.trainer import _initial_sae, make_optimizer

    cfg = cli_train_config(arch, cache, "/tmp/unused", tokens=batch * 100, d_sae=d_sae, batch=batch)
    sae = _initial_sae(cfg, cache)
    opt = make_optimizer(sae, cfg)
    batches = cache.iter_batches(batch, seed=0)
    xs = [next(batches) for _ in range(2)]
    return _alternating_steps(sae, opt, cfg, xs, warmup=2)


def throughput(args: argparse.Namespace) -> None:
    """Every architecture's training step (and the six-dense-matmul bound) in interleaved rounds, one process."""
    import statistics

    torch.set_num_threads(args.threads)
    cache = CachedActivations(args.cache)
    runners = {arch: _arch_step(arch, cache, args.d_sae, args.batch) for arch in registry.names()}
    runners["six_dense_matmuls"] = _matmul_bound(cache.d_in, args.d_sae, args.batch)
    names = list(runners)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:  # a rotated order each round
            samples[name].append(_timed(runners[name], args.steps))
        print(f"round {r + 1}: " + ", ".join(f"{n} {args.batch / v[-1][0]:.0f}" for n, v in samples.items()), flush=True)
    base = samples["six_dense_matmuls"]
    rows = {}
    for name, vals in samples.items():
        wall, cpu = statistics.median(v[0] for v in vals), statistics.median(v[1] for v in vals)
        rows[name] = {"tokens_per_s_wall": args.batch / wall, "cpu_seconds_per_step": cpu,
                      "tokens_per_s_cpu": args.batch * args.threads / cpu if cpu else None,
                      "vs_six_dense_matmuls_wall": statistics.median(b[0] / a[0] for a, b in zip(vals, base, strict=True)),
                      "vs_six_dense_matmuls_cpu": statistics.median(v[1] for v in base) / cpu if cpu else None,
                      "rounds_tokens_per_s_wall": [args.batch / v[0] for v in vals]}
    machine = {**_machine(args.threads), "peak_rss_mb_all_architectures": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    result = {"shape": {"d_in": cache.d_in, "d_sae": args.d_sae, "batch": args.batch, "k": 32}, "rounds": args.rounds,
              "steps_per_round": args.steps, "machine": machine, "rows": rows}
    write_json(Path(args.out) / "throughput.json", result)
    print("| architecture | tokens/s (wall) | CPU s/step | vs six dense matmuls (wall / CPU) |\n|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['tokens_per_s_wall']:.0f} | {row['cpu_seconds_per_step']:.3f} | "
              f"{row['vs_six_dense_matmuls_wall']:.2f}x / {row['vs_six_dense_matmuls_cpu']:.2f}x |")


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
        setting = {"standard": f"λ={s.get('l1_coefficient')}", "jumprelu": f"L0 coef {s.get('l0_coefficient')}, θ0={s.get('jumprelu_threshold')}",
                   "gated": f"λ={ARCH_SETTINGS['gated']['l1_coefficient']}"}.get(arch, f"k={s['k']}")
        rec, ce = r["reconstruction"], r["ce"]
        lines.append(f"| {arch} | {setting} | {rec['l0']:.1f} | {rec['fvu']:.3f} | {ce['ce_loss_recovered']:.3f} | {rec['dead_fraction']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["throughput", "compare", "table", "step", "underuse", "defaults"])
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
    p.add_argument("--tokens", type=int, default=65536, help="training tokens (defaults; `sae train`'s default)")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=JSON", help="SAE config overrides (defaults)")
    p.add_argument("--label", default="", help="row label suffix (defaults)")
    p.add_argument("--jumprelu-threshold", type=float, default=0.1, help="JumpReLU's initial threshold (normalised units)")
    args = p.parse_args()
    if args.mode == "table":
        print(table(args.results))
        return
    if args.mode == "underuse":
        args.steps = (128 if args.cache else 400) if args.steps == 20 else args.steps
        underuse(args)
        return
    if args.mode == "step":
        if args.d_sae == 2304 and args.batch == 1024:  # the step benchmark's own defaults (the target shape in docs/saes.md)
            args.d_sae, args.batch, args.threads = 4608, 4096, max(args.threads, 2)
        args.steps = min(args.steps, 3) if args.steps == 20 else args.steps
        step_benchmark(args)
        return
    if args.mode == "throughput" and args.steps == 20:
        args.steps = 3
    if not args.cache:
        p.error("--cache is required for throughput and compare")
    if args.mode == "defaults":
        defaults(args)
    elif args.mode == "throughput":
        throughput(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
