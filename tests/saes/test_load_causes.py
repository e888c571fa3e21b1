"""Loading a saved SAE folder or a trainer checkpoint names the real cause of a failure (probes.errors.cause)
and gives the advice it calls for: an ImportError, a MemoryError and a damaged file each name their own.

Each test fails against the code before the causes were named (its comment says how).
"""

from __future__ import annotations

import json

import pytest
import torch

from probes.errors import CheckpointError
from saes import registry
from saes.saelens_io import load_sae, save_sae
from saes.trainer import load_checkpoint

SHADOWED = "cannot import name 'CUDAProperties' from 'kernels' (/x/benchmarks/kernels.py)"


# ---- trainer checkpoints (saes.trainer.load_checkpoint: catches every Exception) ------------------------------


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"step": 3}, path)
    return path


def _checkpoint_error(path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    return str(info.value)


def _raise_on_torch_load(monkeypatch, exc: BaseException) -> None:
    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(torch, "load", fail)


def test_checkpoint_import_error_is_named(checkpoint, monkeypatch):
    # old: "cannot be read (cannot import name ...); it is truncated or altered. Delete it to restart."
    _raise_on_torch_load(monkeypatch, ImportError(SHADOWED))
    msg = _checkpoint_error(checkpoint)
    assert f"(ImportError: {SHADOWED})" in msg and "shadowing the installed package 'kernels'" in msg
    assert "truncated" not in msg and "Delete it" not in msg


def test_checkpoint_memory_error_is_named(checkpoint, monkeypatch):
    # old: "cannot be read (); it is truncated or altered" (a bare MemoryError has no text)
    _raise_on_torch_load(monkeypatch, MemoryError())
    msg = _checkpoint_error(checkpoint)
    assert "(MemoryError)" in msg and "not enough memory" in msg and "truncated" not in msg


def test_checkpoint_corrupt_file_is_named(checkpoint):
    # old: the exception's text without its type
    checkpoint.write_bytes(b"not a checkpoint")
    msg = _checkpoint_error(checkpoint)
    inner = None
    try:
        torch.load(checkpoint, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - whatever torch raises for this file is what must be named
        inner = type(exc).__name__
    assert inner is not None and f"({inner}: " in msg
    assert "truncated or altered" in msg


# ---- saved SAE folders (saes.saelens_io.load_sae) -------------------------------------------------------------


@pytest.fixture
def sae_folder(tmp_path):
    sae = registry.build(registry.make_config("topk", d_in=8, d_sae=16, k=3))
    folder = save_sae(sae, tmp_path / "sae")
    cfg = json.loads((folder / "cfg.json").read_text())
    del cfg["weights_sha256"]  # as SAELens writes it: the reader itself meets the bytes
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


def _sae_error(folder) -> str:
    with pytest.raises(CheckpointError) as info:
        load_sae(folder)
    return str(info.value)


def test_sae_corrupt_weights_name_the_error(sae_folder):
    # old: "cannot be read as safetensors (Error while deserializing header: ...)" without "SafetensorError"
    path = sae_folder / "sae_weights.safetensors"
    path.write_bytes(b"\xff" * 64 + path.read_bytes()[64:])
    msg = _sae_error(sae_folder)
    assert "(SafetensorError: Error while deserializing header" in msg and "truncated or corrupted" in msg


@pytest.mark.parametrize("exc, named, advised", [
    # old: torch.OutOfMemoryError (a RuntimeError) gave "the file is truncated or corrupted"
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "OutOfMemoryError: CUDA out of memory",
     "not enough memory"),
    # old: a PermissionError gave "the file is truncated or corrupted"
    (PermissionError(13, "Permission denied", "sae_weights.safetensors"), "PermissionError: [Errno 13] Permission denied",
     "permissions"),
], ids=["out_of_memory", "unreadable"])
def test_sae_read_failure_is_not_called_corruption(sae_folder, monkeypatch, exc, named, advised):
    import saes.saelens_io as io

    def fail(path):
        raise exc

    monkeypatch.setattr(io, "load_file", fail)
    msg = _sae_error(sae_folder)
    assert named in msg and advised in msg
    assert "corrupted" not in msg


def test_sae_import_error_is_not_hidden(sae_folder, monkeypatch):
    # unchanged (this site never caught it): the ImportError propagates as itself, naming its own cause
    import saes.saelens_io as io

    def fail(path):
        raise ImportError(SHADOWED)

    monkeypatch.setattr(io, "load_file", fail)
    with pytest.raises(ImportError, match="CUDAProperties"):
        load_sae(sae_folder)


def test_sae_binary_cfg_is_a_checkpoint_error(sae_folder):
    # old: the UnicodeDecodeError of a binary cfg.json escaped unwrapped
    (sae_folder / "cfg.json").write_bytes(b"\xff\xfe\x00garbage")
    msg = _sae_error(sae_folder)
    assert "is not valid JSON (UnicodeDecodeError: " in msg and "truncated or altered" in msg


# ---- activation caches (saes.activation_store.CachedActivations) ----------------------------------------------


def test_activation_cache_damaged_files_are_named(tmp_path):
    # old: the exception's text without its type
    from saes.activation_store import CACHE_FORMAT, CachedActivations

    (tmp_path / "meta.json").write_bytes(b"{\xff")
    with pytest.raises(CheckpointError, match=r"meta.json cannot be read as JSON \(UnicodeDecodeError: .*cache is damaged"):
        CachedActivations(tmp_path)
    meta = {"format": CACHE_FORMAT, "n_tokens": 4, "d_in": 2, "hook_name": "blocks.0.hook_resid_post"}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    (tmp_path / "activations.npy").write_bytes(b"not an npy file")
    with pytest.raises(CheckpointError, match=r"activations.npy cannot be read \(ValueError: .*Rebuild the cache"):
        CachedActivations(tmp_path)
