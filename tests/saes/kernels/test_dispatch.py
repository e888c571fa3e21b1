"""Backend dispatch: auto falls back to torch without CUDA; explicit triton without a way to run it fails clearly."""

from __future__ import annotations

import pytest
import torch

from probes.errors import InputError, KernelUnavailableError
from probes.model.kernels.dispatch import resolve_backend
from saes.kernels import topk_encode


def test_auto_and_torch_resolve_to_torch_on_cpu():
    assert resolve_backend("torch", "cpu") == "torch"
    if not torch.cuda.is_available():
        assert resolve_backend("auto", "cpu") == "torch"


def test_triton_on_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(KernelUnavailableError, match="TRITON_INTERPRET=1"):
        resolve_backend("triton", "cpu")
    x = torch.randn(3, 4)
    with pytest.raises(KernelUnavailableError, match="backend='auto'"):
        topk_encode(x, torch.randn(4, 8), None, k=2, backend="triton")


def test_triton_on_cpu_with_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_backend("triton", "cpu") == "triton"


def test_unknown_backend():
    with pytest.raises(InputError, match="choose one of"):
        resolve_backend("cuda", "cpu")
