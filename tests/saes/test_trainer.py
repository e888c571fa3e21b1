"""Trainer: resume equals uninterrupted, NaN stops with the last good checkpoint kept, schedule, cache format."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from probes.errors import CheckpointError, InputError
from saes.activation_store import CachedActivations, TensorSource
from saes.trainer import TrainConfig, lr_factor, train


def data(n=2048, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(24, d, generator=g)
    codes = torch.rand(n, 24, generator=g) * (torch.rand(n, 24, generator=g) < 0.1)
    return codes @ basis + 0.01 * torch.randn(n, d, generator=g)


def cfg_for(tmp, arch="topk", **kw):
    return TrainConfig(sae={"architecture": arch, "d_in": 8, "d_sae": 32, "k": 3}, total_tokens=64 * 20, batch_size=64,
                       lr=3e-3, warmup_steps=3, dead_window_tokens=256, log_every=2, checkpoint_every=5,
                       out_dir=str(tmp), progress=False, **kw)


@pytest.mark.parametrize("arch", ["topk", "jumprelu", "feature_choice", "mutual_choice"])
def test_resume_equals_uninterrupted(tmp_path, arch):
    source = TensorSource(data())
    full = train(cfg_for(tmp_path / "full", arch), source)
    # "killed" after step 7: steps 6-7 were done but only the step-5 checkpoint exists
    first = train(cfg_for(tmp_path / "resumed", arch), source, stop_after=7)
    assert first.steps == 7
    resumed = train(cfg_for(tmp_path / "resumed", arch), source)
    assert resumed.resumed_from == 5
    for name, value in full.sae.state_dict().items():
        assert torch.equal(value, resumed.sae.state_dict()[name]), name
    lines_full = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    lines_res = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert lines_full == lines_res and len(lines_full) == 10
    saved = json.loads((tmp_path / "resumed" / "train_config.json").read_text())
    assert saved["batch_size"] == 64 and saved["sae"]["architecture"] == arch
    assert (tmp_path / "resumed" / "sae" / "cfg.json").exists()


def test_training_reduces_fvu_and_keeps_unit_rows(tmp_path):
    res = train(cfg_for(tmp_path), TensorSource(data()))
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["fvu"] < lines[0]["fvu"]
    assert torch.allclose(res.sae.W_dec.norm(dim=1), torch.ones(32), atol=1e-5)
    assert abs(res.sae.cfg.norm_scale * data().norm(dim=-1).mean() - 8**0.5) < 0.2


def test_nan_in_activations_stops_and_keeps_checkpoint(tmp_path):
    from saes.activation_store import _epoch_batches

    order = list(zip(range(13), _epoch_batches(2048, 64, 0, 0), strict=False))
    norm_rows = torch.cat([idx for _, idx in zip(range(4), _epoch_batches(2048, 64, 1, 0), strict=False)])
    row = next(int(i) for i in order[12][1] if int(i) not in set(norm_rows.tolist()))
    x = data()
    x[row, 2] = float("nan")  # first seen at step 12; the last checkpoint before it is step 10
    with pytest.raises(InputError, match="step 12 contain NaN or inf.*last good checkpoint"):
        train(cfg_for(tmp_path), TensorSource(x))
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 10
    assert all(torch.isfinite(v).all() for v in ckpt["sae_state"].values() if v.is_floating_point())


def test_corrupt_checkpoint_is_checkpoint_error(tmp_path):
    train(cfg_for(tmp_path), TensorSource(data()), stop_after=5)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="truncated or altered"):
        train(cfg_for(tmp_path), TensorSource(data()))


def test_lr_schedule_warmup_and_decay():
    cfg = TrainConfig(total_tokens=100, batch_size=1, warmup_steps=10, decay_fraction=0.2, lr=1.0)
    assert lr_factor(0, cfg) == pytest.approx(0.1) and lr_factor(9, cfg) == 1.0
    assert lr_factor(50, cfg) == 1.0 and lr_factor(80, cfg) == 1.0 and lr_factor(90, cfg) == pytest.approx(0.5)


def test_cached_activations_format_and_epochs(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    x = data(100).numpy()
    np.save(folder / "activations.npy", x)
    np.save(folder / "token_ids.npy", np.arange(100, dtype=np.int32))
    np.save(folder / "positions.npy", np.arange(100, dtype=np.int32))
    (folder / "meta.json").write_text(json.dumps({"format": "glasshouse-activations-v1", "hook_name": "blocks.0.hook_resid_post",
                                                   "d_in": 8, "n_tokens": 100, "model": "m"}))
    cached = CachedActivations(folder)
    a = list(zip(range(7), cached.iter_batches(30, seed=3), strict=False))
    b = list(zip(range(7), TensorSource(torch.from_numpy(x)).iter_batches(30, seed=3), strict=False))
    for (_, u), (_, v) in zip(a, b, strict=True):
        assert torch.equal(u, v)
    seen = torch.cat([u for _, u in a[:3]])  # one epoch = 3 batches of 30, without repeats
    assert len({tuple(r.tolist()) for r in seen}) == 90
    late = list(zip(range(2), cached.iter_batches(30, seed=3, start_step=5), strict=False))
    assert torch.equal(late[0][1], a[5][1])
    (folder / "meta.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(CheckpointError, match="format"):
        CachedActivations(folder)


@pytest.mark.parametrize("arch", ["batchtopk", "feature_choice"])
def test_thresholds_calibrated_from_final_weights(tmp_path, arch):
    source = TensorSource(data())
    res = train(cfg_for(tmp_path, arch, calibrate_batches=4), source)
    sae = res.sae
    batches = source.iter_batches(64, seed=2)  # the trainer's calibration stream: seed + 2
    xs = [next(batches) for _ in range(4)]
    with torch.no_grad():
        zs = [sae.pre_acts(x) for x in xs]
    if arch == "batchtopk":
        # independent: the (k*B)-th largest ReLU(z) of each batch by a full sort, averaged
        kth = [torch.relu(z).flatten().sort(descending=True).values[3 * 64 - 1] for z in zs]
        assert float(sae.threshold) == pytest.approx(float(torch.stack(kth).mean()), rel=1e-5)
    else:
        # independent: per column, the m-th largest ReLU(z) (m = round(k*B/F) = 6 here), averaged over batches
        j = int(torch.stack([(torch.relu(z) > 0).sum(0) for z in zs]).sum(0).argmax())
        mth = [torch.relu(z[:, j]).sort(descending=True).values[5] for z in zs]
        assert float(sae.threshold[j]) == pytest.approx(float(torch.stack(mth).mean()), rel=1e-5)
    sae.eval()
    with torch.no_grad():
        l0 = float(torch.cat([(sae.encode(x) > 0).sum(-1).float() for x in xs]).mean())
    assert 2.0 <= l0 <= 4.5  # calibrated on these batches: about k = 3 active per token at inference


def test_resume_refuses_changed_settings_and_counts_this_run(tmp_path):
    source = TensorSource(data())
    first = train(cfg_for(tmp_path), source, stop_after=7)
    assert first.steps_this_run == 7 and first.tokens_this_run == 7 * 64
    changed = cfg_for(tmp_path)
    changed.sae["d_sae"] = 48
    with pytest.raises(InputError, match=r"sae.d_sae \(--d-sae\) = 32, but this run asks for 48.*another --out"):
        train(changed, source)
    with pytest.raises(InputError, match=r"lr \(--lr\) = 0.003, but this run asks for 0.01"):
        train(_with(cfg_for(tmp_path), lr=1e-2), source)
    # checkpoint_every does not change the result: a resume may change it
    res = train(_with(cfg_for(tmp_path), checkpoint_every=3), source)
    assert res.resumed_from == 5 and res.steps_this_run == 15 and res.tokens_this_run == 15 * 64 and res.tokens == 20 * 64


def _with(cfg, **kw):
    import dataclasses

    return dataclasses.replace(cfg, **kw)


@pytest.mark.parametrize(("field", "value", "flag"), [("batch_size", 0, "--batch"), ("lr", float("nan"), "--lr"),
                                                      ("lr", -1.0, "--lr"), ("checkpoint_every", 0, "--checkpoint-every")])
def test_bad_train_settings_name_the_flag(tmp_path, field, value, flag):
    with pytest.raises(InputError, match=flag):
        _with(cfg_for(tmp_path), **{field: value})


def test_nan_loss_and_nan_weights_are_named(tmp_path, monkeypatch):
    # an optimizer step that leaves inf in W_enc (as a diverging run does): the weights are named
    import saes.trainer as trainer_mod

    real_make = trainer_mod.make_optimizer

    def poisoned_optimizer(sae, cfg):
        opt = real_make(sae, cfg)
        real_step = opt.step

        def step(*a, **kw):
            out = real_step(*a, **kw)
            if int(sae.stats_steps) == 3:
                sae.W_enc.data[0, 0] = float("inf")
            return out

        opt.step = step
        return opt

    monkeypatch.setattr(trainer_mod, "make_optimizer", poisoned_optimizer)
    with pytest.raises(InputError, match=r"weights became NaN or inf at step 3 \(W_enc\) while the activations and the loss"):
        train(cfg_for(tmp_path / "a"), TensorSource(data()))
    monkeypatch.setattr(trainer_mod, "make_optimizer", real_make)
    from saes.base import SAE

    real_loss = SAE.loss

    def poisoned(self, x, dead_mask=None):
        out = real_loss(self, x, dead_mask)
        out.terms["mse"] = out.terms["mse"] * float("inf")
        out.loss = out.loss * float("inf")
        return out

    monkeypatch.setattr(SAE, "loss", poisoned)
    with pytest.raises(InputError, match=r"loss at step 0 is NaN or inf \(term mse\) while the activations are finite"):
        train(cfg_for(tmp_path / "b", step="dense"), TensorSource(data()))


def test_adapt_scale_is_a_log_space_controller():
    from saes.config import adapt_scale

    scale = torch.ones(())
    adapt_scale(scale, 12.0, 3.0, 0.5)  # L0 4x the target: log scale += 0.5 log 4 -> scale 2
    assert float(scale) == pytest.approx(2.0)
    adapt_scale(scale, 1.5, 3.0, 0.5)  # half the target: back by sqrt(2)
    assert float(scale) == pytest.approx(2.0 / 2**0.5)
    adapt_scale(scale, 100.0, None, 0.5)
    assert float(scale) == pytest.approx(2.0 / 2**0.5)


def test_adapt_scale_holds_while_l0_falls_toward_the_target():
    import math

    from saes.config import adapt_scale

    scale, trace = torch.ones(()), torch.zeros(2)
    adapt_scale(scale, 400.0, 4.0, 0.1, trace)  # first step: smoothed log L0 = log 400, no slope yet -> integrate
    assert float(trace[0]) == pytest.approx(math.log(400.0)) and float(trace[1]) == 1
    assert float(scale) == pytest.approx(math.exp(0.1 * 0.25), rel=1e-5)  # log(400 / 4) clipped to 0.25
    before = float(scale)
    adapt_scale(scale, 100.0, 4.0, 0.1, trace)  # smoothed falls by 0.2 log 4 toward the target: held
    assert float(scale) == pytest.approx(before)
    smooth = 0.8 * math.log(400.0) + 0.2 * math.log(100.0)
    assert float(trace[0]) == pytest.approx(smooth, rel=1e-6)
    for _ in range(80):  # L0 stuck at 100: the smoothed value stops falling and the integrator takes over
        adapt_scale(scale, 100.0, 4.0, 0.1, trace)
    assert 2 * before < float(scale) < before * math.exp(0.1 * 0.25 * 80)


def test_jumprelu_starts_at_the_target_l0():
    from saes import registry

    x = data(256)
    sae = registry.build(registry.make_config("jumprelu", d_in=8, d_sae=32, target_l0=3.0))
    sae.train()
    with torch.no_grad():
        z = sae.pre_acts(x)
    out = sae.loss(x)
    theta = float(z.flatten().sort(descending=True).values[3 * 256 - 1])  # independent: the 768th largest by a sort
    assert torch.allclose(sae.threshold, torch.full((32,), theta))
    assert out.l0() == pytest.approx((3 * 256 - 1) / 256)  # strictly above the 768th largest: 767 entries
    sae.stats_steps.fill_(19)  # still within threshold_init_steps (20): set again from this batch
    sae.log_threshold.data.fill_(0.0)
    sae.loss(x)
    assert torch.allclose(sae.threshold, torch.full((32,), theta))
    sae.stats_steps.fill_(20)  # past it: the thresholds are left to the optimizer
    sae.log_threshold.data.fill_(0.0)
    sae.loss(x)
    assert torch.allclose(sae.threshold, torch.ones(32))
    fixed = registry.build(registry.make_config("jumprelu", d_in=8, d_sae=32, target_l0=3.0, initial_threshold=0.2))
    fixed.train()
    fixed.loss(x)
    assert torch.allclose(fixed.threshold, torch.full((32,), 0.2))


@pytest.mark.parametrize("arch", ["standard", "jumprelu"])
def test_target_l0_steers_toward_the_target(tmp_path, arch):
    def late_l0(folder):
        lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
        return sum(ln["l0"] for ln in lines[-10:]) / 10

    cfg = cfg_for(tmp_path / "target", arch)
    cfg.sae.update(target_l0=4.0, target_rate=0.1)
    res = train(_with(cfg, total_tokens=64 * 120), TensorSource(data(64 * 120)))
    fixed = train(_with(cfg_for(tmp_path / "fixed", arch), total_tokens=64 * 120), TensorSource(data(64 * 120)))
    steered, plain = late_l0(tmp_path / "target"), late_l0(tmp_path / "fixed")
    assert float(fixed.sae.sparsity_scale) == 1.0 and float(res.sae.sparsity_scale) != 1.0
    # the clipped controller trims the coefficient (JumpReLU also starts at the target): closer, within 2x
    assert abs(steered - 4.0) < abs(plain - 4.0) and 2.0 <= steered <= 8.0, (steered, plain)


@pytest.mark.parametrize("arch", ["standard", "jumprelu"])
def test_checkpoint_without_sparsity_scale_resumes(tmp_path, arch):
    # A run folder written before the sparsity_scale buffer (and target_l0 / target_rate) existed:
    # it resumes with the scale at 1 (the fixed coefficient it trained with) and ends as an uninterrupted run.
    source = TensorSource(data())
    full = train(cfg_for(tmp_path / "full", arch), source)
    train(cfg_for(tmp_path / "old", arch), source, stop_after=7)
    path = tmp_path / "old" / "checkpoint.pt"
    state = torch.load(path, weights_only=False)
    del state["sae_state"]["sparsity_scale"]
    for d in (state["sae_cfg"], state["train_config"]["sae"]):
        d.pop("target_l0", None)
        d.pop("target_rate", None)
    torch.save(state, path)
    resumed = train(cfg_for(tmp_path / "old", arch), source)
    assert resumed.resumed_from == 5 and float(resumed.sae.sparsity_scale) == 1.0
    for name, value in full.sae.state_dict().items():
        assert torch.equal(value, resumed.sae.state_dict()[name]), name
    # a bare state dict without the buffer loads too (strict); one with it keeps its value
    from saes import registry

    sae = registry.build(registry.make_config(arch, d_in=8, d_sae=32))
    sae.load_state_dict({k: v for k, v in full.sae.state_dict().items() if k != "sparsity_scale"})
    assert float(sae.sparsity_scale) == 1.0
    sae.load_state_dict({**full.sae.state_dict(), "sparsity_scale": torch.tensor(2.5)})
    assert float(sae.sparsity_scale) == 2.5


_SECOND_TRAINER = """
import json, sys, torch
from probes.errors import RunFolderError
from saes.activation_store import TensorSource
from saes.trainer import TrainConfig, train
cfg = TrainConfig(sae={"architecture": "topk", "d_in": 8, "d_sae": 32, "k": 3}, total_tokens=128, batch_size=64,
                  out_dir=sys.argv[1], progress=False)
try:
    train(cfg, TensorSource(torch.randn(256, 8)))
    print(json.dumps({"refused": False}))
except RunFolderError as exc:
    print(json.dumps({"refused": True, "message": str(exc)}))
"""


def test_second_trainer_on_one_folder_is_refused(tmp_path):
    # The API trainer holds its out_dir as the CLI does: a second trainer (another process) is refused, naming the first.
    import os
    import subprocess
    import sys

    from probes.progress import Reporter

    seen: dict = {}

    class SecondTrainerAtStep3(Reporter):
        def update(self, text, done, total, partial=None):
            super().update(text, done, total, partial)
            if done == 3 and not seen:
                env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
                out = subprocess.run([sys.executable, "-c", _SECOND_TRAINER, str(tmp_path / "run")], capture_output=True,
                                     text=True, env=env, timeout=300)
                seen.update(json.loads(out.stdout.strip().splitlines()[-1]))

    first = train(cfg_for(tmp_path / "run"), TensorSource(data()), reporter=SecondTrainerAtStep3())
    assert first.steps == 20
    assert seen["refused"], seen
    assert "is in use by another run" in seen["message"] and f"pid {os.getpid()}" in seen["message"]
    assert "saes.trainer.train, topk" in seen["message"]
    assert not (tmp_path / "run" / ".glasshouse.lock").exists()  # released at the end
    assert train(cfg_for(tmp_path / "run"), TensorSource(data())).resumed_from == 20  # the folder is free again
