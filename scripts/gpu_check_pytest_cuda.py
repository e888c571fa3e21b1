"""pytest plugin for scripts/gpu_check.sh step b: the kernel tests on real CUDA, not the interpreter (benchmarks/RESULTS.md).

The kernel tests build their inputs and references on the CPU (seeded CPU generators) and call the
kernels with backend="triton". Loaded with `-p gpu_check_pytest_cuda` (scripts/ on PYTHONPATH), this
plugin wraps the public kernel functions so that a call with backend="triton" on CPU tensors moves every
tensor argument to GLASSHOUSE_KERNEL_TEST_DEVICE (default cuda), runs the kernel there and moves the
results back: the tests' CPU references then check the CUDA kernels. Moves are differentiable, so the
backward tests check the CUDA backward kernels too. With the device "cpu" (the dry run) the wrappers
change nothing and the interpreter runs as usual. Tests that assert the CPU-without-interpreter
error are deselected by gpu_check.sh (they cannot hold once CPU calls are redirected).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import torch

WRAPPED: list[str] = []


def target_device() -> str:
    return os.environ.get("GLASSHOUSE_KERNEL_TEST_DEVICE", "cuda")


def _move(obj: Any, device: str) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, tuple):
        return tuple(_move(o, device) for o in obj)
    if isinstance(obj, list):
        return [_move(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: _move(v, device) for k, v in obj.items()}
    return obj


def _on_cpu(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
    return bool(tensors) and all(t.device.type == "cpu" for t in tensors)


def redirect(fn: Callable[..., Any], device: str | None = None) -> Callable[..., Any]:
    """fn, but a backend='triton' call on CPU tensors runs on `device` and returns CPU results."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        dev = device or target_device()
        if kwargs.get("backend") != "triton" or dev == "cpu" or not _on_cpu(args, kwargs):
            return fn(*args, **kwargs)
        return _move(fn(*_move(args, dev), **_move(kwargs, dev)), "cpu")

    wrapper.__wrapped_for_gpu_check__ = True  # type: ignore[attr-defined]
    return wrapper


def install() -> list[str]:
    """Wrap the kernel entry points where the tests and the library look them up; return their names."""
    import probes.attention_stats as stats_mod
    import probes.model.kernels.attention as attn_mod
    import saes.kernels as kernels_pkg
    import saes.kernels.api as api_mod

    names = []
    for mod, attrs in ((api_mod, ("topk_encode", "relu_encode", "jumprelu_encode", "sparse_decode")),
                       (kernels_pkg, ("topk_encode", "relu_encode", "jumprelu_encode", "sparse_decode")),
                       (attn_mod, ("attention_stats",)), (stats_mod, ("attention_stats",))):
        for attr in attrs:
            fn = getattr(mod, attr)
            if not getattr(fn, "__wrapped_for_gpu_check__", False):
                setattr(mod, attr, redirect(fn))
            names.append(f"{mod.__name__}.{attr}")
    return names


def pytest_configure(config: Any) -> None:
    if target_device() != "cpu" and not torch.cuda.is_available():
        raise RuntimeError("gpu_check_pytest_cuda: GLASSHOUSE_KERNEL_TEST_DEVICE is "
                           f"{target_device()!r} but torch sees no CUDA device")
    WRAPPED[:] = install()
    print(f"gpu_check: kernel calls with backend='triton' on CPU tensors run on {target_device()} "
          f"({len(WRAPPED)} entry points wrapped)", flush=True)
