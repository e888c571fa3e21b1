"""Choose between a Triton kernel and its torch reference (spec: docs/methods/kernels.md, docs/kernels.md).

backend="auto": the Triton kernel when the tensors are on CUDA and Triton imports, else the torch
reference. backend="torch": always the reference. backend="triton": the kernel, on CUDA tensors, or
on CPU tensors through Triton's interpreter when TRITON_INTERPRET=1 was set before triton was
imported (slow: ~1000x torch; meant for tests at tiny shapes). Anything else raises
KernelUnavailableError saying what to do.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Literal

import torch

from probes.errors import InputError, KernelUnavailableError

Backend = Literal["auto", "triton", "torch"]
BACKENDS = ("auto", "triton", "torch")


def interpreting() -> bool:
    """Whether Triton runs through its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_importable() -> bool:
    """Whether the triton package is installed (it is only on Linux x86_64)."""
    return importlib.util.find_spec("triton") is not None


def resolve_backend(backend: str, device: torch.device | str) -> Literal["triton", "torch"]:
    """The backend that will run for tensors on `device` (see the module docstring)."""
    if backend not in BACKENDS:
        raise InputError(f"backend={backend!r} is not known; choose one of {', '.join(BACKENDS)}.")
    device = torch.device(device)
    if backend == "torch":
        return "torch"
    on_cuda = device.type == "cuda" and torch.cuda.is_available()
    if backend == "auto":
        return "triton" if on_cuda and triton_importable() else "torch"
    if not triton_importable():
        raise KernelUnavailableError(
            "backend='triton' was asked for but the triton package is not installed (it ships for Linux "
            "x86_64 with CUDA builds of torch). Install triton, or use backend='auto' or 'torch'."
        )
    if on_cuda:
        return "triton"
    if device.type == "cpu" and interpreting():
        return "triton"
    raise KernelUnavailableError(
        f"backend='triton' needs CUDA tensors, but these are on {device} "
        f"(torch.cuda.is_available() = {torch.cuda.is_available()}). Move the model and inputs to a GPU, "
        "use backend='auto' or backend='torch' for the torch reference, or for testing set "
        "TRITON_INTERPRET=1 in the environment before triton is imported to run the kernel through "
        "Triton's CPU interpreter (about 1000x slower than torch)."
    )
