"""Benchmarks of the Glasshouse Triton kernels against their baselines (spec: docs/methods/kernels.md).

Usage (from the repository root, on a machine with an NVIDIA GPU; figures in benchmarks/RESULTS.md, which
also says how scripts/gpu_check.sh runs this script with everything else of the GPU check):
    python -m benchmarks.kernels [--only encode decode attention] [--json out.json]
Prints, per case, the median time (triton.testing.do_bench), peak memory above the inputs
(torch.cuda.max_memory_allocated), achieved TFLOP/s or GB/s with the fraction of the roofline
(989 TFLOP/s dense bf16; HBM 3.35 TB/s on an H100, 4.8 TB/s on an H200), and our kernel's speed-up over each baseline.
Without CUDA it says so, runs a tiny CPU smoke check of the same code paths (torch references;
the Triton kernels too when TRITON_INTERPRET=1) and exits 0. `--dry-run` runs the full benchmark
code at tiny shapes on the CPU with a wall-clock timer (numbers meaningless; checks the script).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Run as a file, this folder would lead sys.path and its module names could shadow installed packages
# (benchmarks/kernels.py once hid the `kernels` distribution): the repository root leads instead.
if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch
import torch.nn.functional as F

from probes.model.kernels.attention import attention_stats  # noqa: E402
from saes.kernels import jumprelu_encode, relu_encode, sparse_decode, topk_encode  # noqa: E402

PEAK_TFLOPS = 989.0  # H100 / H200 SXM dense bf16 (datasheet)
PEAK_GBS = 3350.0  # H100 SXM HBM3; set_peaks() switches to the H200's 4800 GB/s HBM3e


def set_peaks(device_name: str) -> None:
    """The roofline's memory bandwidth for the GPU in use (the bf16 peak is the same on H100 and H200)."""
    global PEAK_GBS
    PEAK_GBS = 4800.0 if "H200" in device_name else 3350.0


@dataclass
class Row:
    group: str
    name: str
    ms: float | None
    peak_mib: float | None
    tflops: float | None = None
    gbs: float | None = None
    roofline: float | None = None
    note: str = ""


@dataclass
class Shapes:
    n: int = 65536
    d: int = 768
    f: int = 24576
    k: int = 32
    heads: int = 9
    kv_heads: int = 3
    d_head: int = 64
    t_long: int = 32768
    t_check: int = 2048
    t_memory: tuple[int, ...] = (2048, 8192, 32768)


TINY = Shapes(n=256, d=64, f=512, k=8, heads=3, kv_heads=1, d_head=16, t_long=128, t_check=64, t_memory=(32, 64))


class Bench:
    """Times and measures callables on CUDA (do_bench, max_memory_allocated) or, in a dry run, on the CPU."""

    def __init__(self, device: str) -> None:
        self.device = device

    def time_ms(self, fn: Callable[[], Any]) -> float:
        if self.device == "cuda":
            from triton.testing import do_bench

            return float(do_bench(fn, warmup=25, rep=100, return_mode="median"))
        fn()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    def peak_mib(self, fn: Callable[[], Any]) -> float | None:
        if self.device != "cuda":
            return None
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        del out
        return peak / 2**20

    def run(self, group: str, name: str, fn: Callable[[], Any], flops: float | None = None,
            bytes_moved: float | None = None, note: str = "") -> Row:
        try:
            fn()  # warm-up: compilation and autotuning stay out of the figures
            mem = self.peak_mib(fn)
            ms = self.time_ms(fn)
        except Exception as exc:  # a baseline that cannot run here (OOM, unsupported dtype) is reported, not fatal
            if self.device == "cuda":
                torch.cuda.empty_cache()
            return Row(group, name, None, None, note=f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
        row = Row(group, name, ms, mem, note=note)
        if flops:
            row.tflops = flops / (ms * 1e-3) / 1e12
            row.roofline = row.tflops / PEAK_TFLOPS
        if bytes_moved:
            row.gbs = bytes_moved / (ms * 1e-3) / 1e9
            if not flops:
                row.roofline = row.gbs / PEAK_GBS
        return row


def _compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    return torch.compile(fn, dynamic=False)


def bench_encode(b: Bench, s: Shapes, dtype: torch.dtype) -> list[Row]:
    dev = b.device
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(s.n, s.d, device=dev, dtype=dtype, generator=g)
    W = (torch.randn(s.d, s.f, device=dev, dtype=dtype, generator=g) / s.d**0.5).to(dtype)
    bias = torch.zeros(s.f, device=dev, dtype=dtype)
    thr = torch.full((s.f,), 0.5, device=dev, dtype=dtype)
    flops = 2.0 * s.n * s.d * s.f

    def eager_topk() -> Any:
        return torch.topk(torch.addmm(bias, x, W), s.k, dim=-1, sorted=False)

    def eager_relu() -> Any:
        return torch.relu(x @ W + bias)

    def eager_jump() -> Any:
        pre = x @ W + bias
        return torch.where(pre > thr, pre, torch.zeros_like(pre))

    rows = [
        b.run("encode", "ours: topk_encode (Triton, fused)", lambda: topk_encode(x, W, bias, s.k), flops),
        b.run("encode", "eager: addmm + torch.topk(sorted=False)", eager_topk, flops),
        b.run("encode", "torch.compile(eager topk)", _compiled(lambda: eager_topk()), flops),
        b.run("encode", "bare GEMM x @ W (speed of light)", lambda: x @ W, flops),
        b.run("encode", "ours: relu_encode (Triton, dense codes)", lambda: relu_encode(x, W, bias), flops),
        b.run("encode", "eager: x @ W + b, relu", eager_relu, flops),
        b.run("encode", "torch.compile(eager relu)", _compiled(lambda: eager_relu()), flops),
        b.run("encode", "torch._addmm_activation (cuBLASLt ReLU)", lambda: torch._addmm_activation(bias, x, W), flops),
        b.run("encode", "ours: jumprelu_encode (Triton, dense codes)", lambda: jumprelu_encode(x, W, bias, thr), flops),
        b.run("encode", "eager: x @ W + b, JumpReLU", eager_jump, flops),
        b.run("encode", "torch.compile(eager JumpReLU)", _compiled(lambda: eager_jump()), flops),
    ]
    head = x[:1024]
    vals, idx = topk_encode(head, W, bias, s.k)
    rv, ri = torch.topk(head.float() @ W.float() + bias.float(), s.k, dim=-1)
    same = sum(set(a.tolist()) == set(c.tolist()) for a, c in zip(idx.cpu(), ri.cpu(), strict=True))
    rows.append(Row("encode", "check: topk index sets equal to fp32 torch.topk", None, None,
                    note=f"{same}/{head.shape[0]} rows (near-ties may differ)"))
    return rows


def bench_decode(b: Bench, s: Shapes, dtype: torch.dtype) -> list[Row]:
    dev = b.device
    g = torch.Generator(device=dev).manual_seed(1)
    vals = torch.rand(s.n, s.k, device=dev, generator=g).to(dtype)
    idx = torch.stack([torch.randperm(s.f, device=dev, generator=g)[: s.k] for _ in range(min(s.n, 4096))])
    idx = idx.repeat(math.ceil(s.n / idx.shape[0]), 1)[: s.n]
    W_dec = torch.randn(s.f, s.d, device=dev, dtype=dtype, generator=g)
    b_dec = torch.zeros(s.d, device=dev, dtype=dtype)
    dense = torch.zeros(s.n, s.f, device=dev, dtype=dtype).scatter_(1, idx, vals)
    flops = 2.0 * s.n * s.k * s.d
    moved = s.n * s.k * (vals.element_size() + 8) + s.n * s.d * W_dec.element_size() + W_dec.numel() * 2
    rows = [
        b.run("decode", "ours: sparse_decode (Triton)", lambda: sparse_decode(vals, idx, W_dec, b_dec), flops, moved),
        b.run("decode", "dense codes @ W_dec + b", lambda: torch.addmm(b_dec, dense, W_dec), 2.0 * s.n * s.f * s.d),
        b.run("decode", "F.embedding_bag(per_sample_weights)",
              lambda: F.embedding_bag(idx, W_dec, per_sample_weights=vals, mode="sum") + b_dec, flops, moved),
    ]
    try:
        csr = dense.to_sparse_csr()
        rows.append(b.run("decode", "torch.sparse.mm(CSR codes, W_dec)", lambda: torch.sparse.mm(csr, W_dec), flops,
                          moved))
    except Exception as exc:
        rows.append(Row("decode", "torch.sparse.mm(CSR codes, W_dec)", None, None, note=f"failed: {exc}"[:90]))
    out = sparse_decode(vals, idx, W_dec, b_dec).float()
    err = (out - (dense.float() @ W_dec.float())).abs().max().item()
    rows.append(Row("decode", "check: max |ours - fp32 dense|", None, None, note=f"{err:.2e}"))
    return rows


def _attention_inputs(dev: str, s: Shapes, t: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    g = torch.Generator(device=dev).manual_seed(2)
    q = torch.randn(1, s.heads, t, s.d_head, device=dev, dtype=dtype, generator=g)
    k = torch.randn(1, s.kv_heads, t, s.d_head, device=dev, dtype=dtype, generator=g)
    v = torch.randn(1, s.kv_heads, t, s.d_head, device=dev, dtype=dtype, generator=g)
    return q, k, v


def _eager_pattern(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    s = (q @ k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5
    t = q.shape[2]
    s = s.masked_fill(torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1), -math.inf)
    p = torch.softmax(s, dim=-1)
    return p, (p.to(v.dtype) @ v)


def bench_attention(b: Bench, s: Shapes, dtype: torch.dtype) -> list[Row]:
    dev, t = b.device, s.t_long
    q, k, v = _attention_inputs(dev, s, t, dtype)
    fwd = 4.0 * s.heads * t * t * s.d_head / 2  # causal: half the square
    rows = [
        b.run("attention", f"ours: stats + received, T={t}", lambda: attention_stats(q, k, v, n_sink=4), 1.5 * fwd),
        b.run("attention", f"ours: stats only (pass 1), T={t}",
              lambda: attention_stats(q, k, v, n_sink=4, received=False), fwd),
        b.run("attention", f"SDPA causal (no weights), T={t}",
              lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True), fwd),
        b.run("attention", f"eager with pattern, T={t}", lambda: _eager_pattern(q, k, v), fwd,
              note="O(T^2) memory"),
    ]
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        mask = create_block_mask(lambda b_, h_, qi, ki: ki <= qi, None, None, t, t, device=dev)
        flex: Any = torch.compile(flex_attention)
        rows.append(b.run("attention", f"FlexAttention + lse, T={t}",
                          lambda: flex(q, k, v, block_mask=mask, enable_gqa=True, return_lse=True), fwd))
    except Exception as exc:
        rows.append(Row("attention", f"FlexAttention + lse, T={t}", None, None, note=f"failed: {exc}"[:90]))
    for tm in s.t_memory:
        rows.append(b.run("attention memory", f"ours, T={tm}", _stats_at(dev, s, tm, dtype)))
    rows.append(_attention_accuracy(dev, s, dtype))
    return rows


def _stats_at(dev: str, s: Shapes, t: int, dtype: torch.dtype) -> Callable[[], Any]:
    qm, km, vm = _attention_inputs(dev, s, t, dtype)
    return lambda: attention_stats(qm, km, vm)


def _attention_accuracy(dev: str, s: Shapes, dtype: torch.dtype) -> Row:
    """Kernel statistics vs the eager fp32 pattern at T = t_check (target: within 1e-3)."""
    q, k, v = _attention_inputs(dev, s, s.t_check, dtype)
    got = attention_stats(q, k, v, n_sink=1)
    p, _ = _eager_pattern(q.float(), k.float(), v.float())
    want = {"max_prob": p.amax(-1), "entropy": -torch.special.xlogy(p, p).sum(-1), "sink": p[..., :1],
            "received": p.sum(-2)}
    errs = {n: (got[n] - w).abs().max().item() for n, w in want.items()}
    worst = max(errs.values())
    note = ", ".join(f"{n} {e:.1e}" for n, e in errs.items()) + (" OK" if worst <= 1e-3 else " ABOVE 1e-3")
    return Row("attention", f"check: max |ours - eager fp32 pattern|, T={s.t_check}", None, None, note=note)


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_table(rows: list[Row]) -> None:
    """Markdown table; 'vs ours' is (baseline time / our time) for the first 'ours' row of the group."""
    ours: dict[str, float] = {}
    for r in rows:
        if r.name.startswith("ours") and r.ms and r.group not in ours:
            ours[r.group] = r.ms
    print("| group | case | median ms | peak MiB | TFLOP/s | GB/s | roofline | ours faster by | note |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = None if (r.ms is None or r.group not in ours or r.name.startswith("ours")) else r.ms / ours[r.group]
        print(f"| {r.group} | {r.name} | {_fmt(r.ms, '.3f')} | {_fmt(r.peak_mib, '.0f')} | {_fmt(r.tflops, '.1f')} | "
              f"{_fmt(r.gbs, '.0f')} | {_fmt(None if r.roofline is None else 100 * r.roofline, '.0f')}"
              f"{'%' if r.roofline is not None else ''} | {_fmt(ratio, '.2f')}{'x' if ratio else ''} | {r.note} |")


def smoke_check() -> None:
    """Tiny CPU check of the public functions (torch references; kernels too under TRITON_INTERPRET=1)."""
    from probes.model.kernels.dispatch import interpreting

    x, W, bias = torch.randn(8, 32), torch.randn(32, 64), torch.randn(64)
    backends = ["torch", "triton"] if interpreting() else ["torch"]
    for backend in backends:
        vals, idx = topk_encode(x, W, bias, 4, backend=backend)
        ri = torch.topk(x @ W + bias, 4).indices
        assert all(set(a.tolist()) == set(c.tolist()) for a, c in zip(idx, ri, strict=True)), backend
        out = sparse_decode(vals, idx, W.T.contiguous(), None, backend=backend)
        dense = torch.zeros(8, 64).scatter_(1, idx, vals) @ W.T
        assert torch.allclose(out, dense, atol=1e-4), backend
        q, k, v = torch.randn(1, 2, 16, 16), torch.randn(1, 1, 16, 16), torch.randn(1, 1, 16, 16)
        st = attention_stats(q, k, v, backend=backend)
        p, _ = _eager_pattern(q, k, v)
        assert torch.allclose(st["entropy"], -torch.special.xlogy(p, p).sum(-1), atol=1e-4), backend
        print(f"smoke check passed ({backend} backend)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=["encode", "decode", "attention"],
                        default=["encode", "decode", "attention"])
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU: checks the script only")
    args = parser.parse_args(argv)
    if args.dry_run:
        bench, shapes, dtype = Bench("cpu"), TINY, torch.float32
        print("DRY RUN on the CPU at tiny shapes: the numbers mean nothing.")
    elif torch.cuda.is_available():
        bench, shapes, dtype = Bench("cuda"), Shapes(), torch.bfloat16
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
        set_peaks(torch.cuda.get_device_name())
        print(f"roofline: {PEAK_TFLOPS:.0f} TFLOP/s dense bf16, {PEAK_GBS:.0f} GB/s")
    else:
        print("benchmarks/kernels.py needs an NVIDIA GPU (CUDA): none here. Running a tiny CPU smoke check instead.")
        smoke_check()
        return 0
    print(f"shapes: {shapes}, dtype {dtype}")
    rows: list[Row] = []
    for part, fn in (("encode", bench_encode), ("decode", bench_decode), ("attention", bench_attention)):
        if part in args.only:
            with torch.no_grad():  # forward-only benchmarks (and torch.compile on CPU supports inference only)
                rows += fn(bench, shapes, dtype)
            if bench.device == "cuda":
                torch.cuda.empty_cache()
            if args.json:  # after every part: a run stopped at its time limit keeps the rows it has
                args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
            print(f"{part}: done", flush=True)
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
