"""Where training runs: `glasshouse bb train --device`, `glasshouse sae train` on the model's device, and the
SAE trainer's device and kernel-backend settings (checked before any work, CPU tests of the CUDA paths).
"""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch

import app.commands.sae as sae_cmd
import probes.bb.train as bb_train
import saes.trainer as trainer
from app.cli import main
from probes.errors import InputError, KernelUnavailableError
from saes.activation_store import CACHE_FORMAT, TensorSource
from saes.architectures.topk import TopKSAE
from saes.trainer import TrainConfig, train

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
BB_TINY = ["--steps", "2", "--batch", "4", "--d-model", "8", "--seq-len", "9", "--eval-every", "2",
           "--checkpoint-every", "2"]


def _spy(monkeypatch, module, name):
    """Record the calls of module.name while still running it."""
    real, calls = getattr(module, name), []

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


# --- bb train --device -----------------------------------------------------------------------------------
@no_gpu
def test_bb_train_cuda_without_gpu_is_refused_before_any_work(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["bb", "train", *BB_TINY, "--device", "cuda", "--out", str(run)]) == 1
    err = capsys.readouterr().err
    assert "--device cuda" in err and "no CUDA GPU" in err
    assert not run.exists()  # refused before the run folder was made
    with pytest.raises(InputError, match="no CUDA GPU"):
        bb_train.train(bb_train.TrainSettings(steps=1), tmp_path / "direct", device="cuda")
    assert not (tmp_path / "direct").exists()


def test_bb_train_device_reaches_the_trainer(tmp_path, monkeypatch):
    calls = _spy(monkeypatch, bb_train, "train")
    assert main(["bb", "train", *BB_TINY, "--device", "cpu", "--out", str(tmp_path / "cpu")]) == 0
    assert main(["bb", "train", *BB_TINY, "--out", str(tmp_path / "auto")]) == 0  # --device auto
    assert [c[1]["device"] for c in calls] == ["cpu", "cuda" if torch.cuda.is_available() else "cpu"]
    # same seed, same device: the same weights (auto ran on the same CPU here)
    if not torch.cuda.is_available():
        a = (tmp_path / "cpu" / "step_000002" / "model.safetensors").read_bytes()
        b = (tmp_path / "auto" / "step_000002" / "model.safetensors").read_bytes()
        assert a == b


def test_bb_train_device_names_checked_at_parse_time(capsys):
    assert main(["bb", "train", "--device", "tpu", "--steps", "1"]) == 2
    assert main(["bb", "train", "--device", "mps", "--steps", "1"]) == 2
    assert "auto, cpu, cuda" in capsys.readouterr().err


# --- the SAE trainer ---------------------------------------------------------------------------------------
def _cfg(tmp_path, **kw):
    sae = {"architecture": "topk", "d_in": 8, "d_sae": 32, "k": 4, "aux_k": 8, "seed": 1}
    return TrainConfig(sae=sae, total_tokens=64, batch_size=32, log_every=1, checkpoint_every=1, norm_batches=1,
                       calibrate_batches=0, progress=False, out_dir=str(tmp_path), **kw)


def _source():
    return TensorSource(torch.randn(256, 8, generator=torch.Generator().manual_seed(0)))


@no_gpu
def test_sae_trainer_cuda_without_gpu_is_refused_before_any_work(tmp_path):
    with pytest.raises(InputError, match="no CUDA GPU"):
        train(_cfg(tmp_path / "run", device="cuda"), _source())
    assert not (tmp_path / "run").exists()


def test_sae_trainer_bad_device_and_backend_names():
    with pytest.raises(InputError, match="cpu, cuda"):
        TrainConfig(device="mps")
    with pytest.raises(InputError, match="auto, triton or torch"):
        TrainConfig(backend="cuda")


def test_sae_trainer_triton_backend_where_it_cannot_run_is_refused_before_step_0(tmp_path, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("CPU-only refusal")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(KernelUnavailableError, match="TRITON_INTERPRET=1"):
        train(_cfg(tmp_path, backend="triton"), _source())
    assert not (tmp_path / "checkpoint.pt").exists()


def test_sae_trainer_dispatch(tmp_path):
    cpu = torch.device("cpu")
    cuda = torch.device("cuda")
    assert trainer.uses_sparse_step(_cfg(tmp_path), cpu)
    assert not trainer.uses_sparse_step(_cfg(tmp_path, step="dense"), cpu)
    assert trainer.uses_sparse_step(_cfg(tmp_path, step="sparse", backend="torch"), cuda)
    assert not trainer.uses_sparse_step(_cfg(tmp_path, backend="torch"), cuda)  # auto on CUDA without kernels: dense
    assert trainer.uses_sparse_step(_cfg(tmp_path), cuda) == trainer_triton()


def trainer_triton() -> bool:
    from probes.model.kernels.dispatch import triton_importable

    return triton_importable()


@pytest.mark.skipif(not (torch.cuda.is_available() or __import__("os").environ.get("TRITON_INTERPRET") == "1"),
                    reason="needs CUDA or TRITON_INTERPRET=1")
def test_sae_trainer_runs_the_kernel_step_and_matches_the_torch_step(tmp_path, monkeypatch):
    """backend triton (the interpreter here, CUDA on a GPU) trains to the same weights as the torch sparse step."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    calls = _spy(monkeypatch, TopKSAE, "_loss_sparse_kernels")
    ker = train(_cfg(tmp_path / "triton", backend="triton", device=device), _source())
    assert len(calls) == 2  # both steps went through the kernels
    ref = train(_cfg(tmp_path / "torch", backend="torch", device=device), _source())
    assert len(calls) == 2
    assert ker.sae.W_enc.device.type == device
    for name, p in ref.sae.named_parameters():
        assert torch.allclose(dict(ker.sae.named_parameters())[name], p, rtol=1e-4, atol=1e-5), name
    a = [json.loads(line)["loss"] for line in (tmp_path / "triton" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(line)["loss"] for line in (tmp_path / "torch" / "metrics.jsonl").read_text().splitlines()]
    assert a == pytest.approx(b, rel=1e-5)


# --- sae train: the model's device -------------------------------------------------------------------------
def _cache(folder, d_in=8, n=128):
    folder.mkdir(parents=True)
    np.save(folder / "activations.npy", np.random.default_rng(0).standard_normal((n, d_in)).astype(np.float32))
    meta = {"format": CACHE_FORMAT, "model": "smollm2-135m", "hook_name": "blocks.0.hook_resid_post", "d_in": d_in,
            "n_tokens": n}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def _sae_train_args(tmp_path):
    return ["sae", "train", "--model", "smollm2-135m", "--hook", "blocks.0.hook_resid_post", "--d-sae", "16",
            "--k", "2", "--tokens", "64", "--batch", "32", "--cache", str(_cache(tmp_path / "cache")),
            "--out", str(tmp_path / "out")]


def test_sae_train_trains_on_the_model_device(tmp_path, monkeypatch):
    fake = types.SimpleNamespace(spec="smollm2-135m", device=torch.device("cpu"))
    monkeypatch.setattr(sae_cmd, "load_from_args", lambda args: fake)
    calls = _spy(monkeypatch, trainer, "train")
    assert main(_sae_train_args(tmp_path)) == 0
    cfg = calls[0][0][0]
    assert cfg.device == "cpu"
    assert json.loads((tmp_path / "out" / "topk" / "train_config.json").read_text())["device"] == "cpu"


@no_gpu
def test_sae_train_on_a_cuda_model_without_gpu_names_the_device(tmp_path, monkeypatch, capsys):
    """A model reported on CUDA sends the SAE there; without a GPU the trainer refuses, naming it."""
    fake = types.SimpleNamespace(spec="smollm2-135m", device=torch.device("cuda:0"))
    monkeypatch.setattr(sae_cmd, "load_from_args", lambda args: fake)
    calls = _spy(monkeypatch, trainer, "train")
    assert main(_sae_train_args(tmp_path)) == 1
    assert calls[0][0][0].device == "cuda:0"
    assert "no CUDA GPU" in capsys.readouterr().err
