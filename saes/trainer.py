"""Training an SAE from an activation source (docs/methods/saes.md; docs/saes.md).

- `TrainConfig` is saved as `train_config.json` beside the checkpoint (and inside it).
- Learning rate: linear warm-up over `warmup_steps`, constant, then linear decay to 0 over the
  last `decay_fraction` of the steps. Adam.
- Before step 0: with normalization "expected_norm" the norm scale s is estimated from the first
  `norm_batches` batches of a separate stream (seed + 1) so that E||x s|| = sqrt(d_in); b_dec
  starts at the mean of those (scaled) activations.
- Dead features: a feature is dead when it fired on none of the last `dead_window_tokens` training
  tokens (tracked in the SAE's `tokens_since_fired` buffer); the dead mask feeds AuxK / under-use losses.
- Every `log_every` steps one JSON line goes to `metrics.jsonl` (step, tokens, lr, loss terms, batch
  L0, batch FVU, dead fraction, under-used fraction: density EMA below 0.1x the Zipf fit at its rank). Every `checkpoint_every` steps and at the end, `checkpoint.pt`
  (SAE state and config, Adam and schedule state, step) is written atomically (probes.io).
- Resume: with a checkpoint in `out_dir`, training continues from its step; the source replays
  the same batches from that step (sources are seeded per step), metrics lines past the step are
  dropped, so a killed and resumed run ends with the same weights as an uninterrupted one.
- NaN or inf stop the run with InputError naming the step and which it was: the activations of a
  batch (checked before the step), the loss (the activations were finite: a learning rate too high
  or a diverged run), or the weights after the optimizer step (W_enc, ...). The last good
  checkpoint is left as it was.
- Resume refuses changed settings: the checkpoint's train_config is compared field by field with
  the new one (all fields but out_dir, progress and checkpoint_every, which do not change the
  result); a difference raises InputError naming the setting (and its CLI flag) with both values,
  and saying how to start fresh (another --out, or delete the checkpoint).
- Device (`device`): the SAE, the optimizer state and every batch live there (the source yields CPU
  batches; each is moved before its step). A checkpoint is read onto the CPU and moved, so a run may
  resume on another device. "cuda" without a GPU is refused before anything is built.
- Step (`step`, `backend`): "auto" takes TopK's sparse step (`loss_sparse`) on the CPU (torch
  gather / index_add / embedding_bag) and on CUDA when Triton is installed (the Triton kernels of
  saes/kernels; `backend` forces "torch" or "triton"), else the dense step; the others have only
  the dense step.
- `TrainResult` counts what this call did (`steps_this_run`, `tokens_this_run`) beside the totals.
- At the end, batch-level rules (BatchTopK, Matryoshka, Mutual Choice, Feature Choice) re-estimate their
  inference thresholds from the final weights on `calibrate_batches` batches of a separate stream
  (seed + 2); the checkpoint keeps the training-time values, so a resumed run calibrates the same.
  Then the SAE is written in the SAELens layout to `out_dir/sae/`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from probes.errors import CheckpointError, InputError, advice, cause
from probes.io import atomic_write, write_json
from probes.model.kernels.dispatch import BACKENDS
from probes.progress import Cancelled, Reporter, TqdmReporter
from saes import registry
from saes.base import SAE
from saes.config import SAEConfig


class ActivationSource(Protocol):
    d_in: int

    def iter_batches(self, batch_size: int, seed: int = 0, start_step: int = 0) -> Any: ...


# CLI flags of `glasshouse sae train` for the settings, so messages name what the user typed.
FLAGS = {"batch_size": "--batch", "total_tokens": "--tokens", "lr": "--lr", "seed": "--seed",
         "checkpoint_every": "--checkpoint-every", "sae.d_sae": "--d-sae", "sae.k": "--k",
         "sae.architecture": "--arch", "sae.hook_name": "--hook", "sae.model_name": "--model",
         "sae.l1_coefficient": "--sparsity", "sae.l0_coefficient": "--sparsity"}
_RULES = {"batch_size": "it must be at least 1", "total_tokens": "it must be at least the batch size",
          "lr": "the learning rate must be a finite number above 0", "checkpoint_every": "it must be at least 1 step",
          "log_every": "it must be at least 1 step", "warmup_steps": "it must be 0 or more",
          "decay_fraction": "it must lie in [0, 1]", "norm_batches": "it must be at least 1",
          "step": "it must be auto, dense or sparse", "backend": "it must be auto, triton or torch",
    "device": "it must be cpu, cuda or cuda:N"}
# Settings that do not change what a run computes (beyond float rounding); a resume may change them.
_RESUMABLE = ("out_dir", "progress", "checkpoint_every", "device", "backend")


@dataclass
class TrainConfig:
    """Everything that fixes a training run (saved beside every checkpoint)."""

    sae: dict[str, Any] = field(default_factory=dict)  # an SAEConfig as a dict (architecture + its fields)
    total_tokens: int = 300_000
    batch_size: int = 1024
    lr: float = 1e-3
    warmup_steps: int = 20
    decay_fraction: float = 0.2
    adam_betas: tuple[float, float] = (0.9, 0.999)
    seed: int = 0
    dead_window_tokens: int = 100_000
    norm_batches: int = 4
    log_every: int = 10
    checkpoint_every: int = 100
    calibrate_batches: int = 8
    step: str = "auto"  # auto | dense | sparse: TopK's sparse step through (values, indices) (module docstring)
    backend: str = "auto"  # the sparse step's kernels: auto (Triton on CUDA, torch on CPU) | triton | torch
    device: str = "cpu"  # where the SAE trains: cpu, cuda or cuda:N
    out_dir: str = "runs/sae"
    progress: bool = True

    def __post_init__(self) -> None:
        checks = {"batch_size": self.batch_size >= 1, "total_tokens": self.total_tokens >= self.batch_size,
                  "lr": math.isfinite(self.lr) and self.lr > 0, "checkpoint_every": self.checkpoint_every >= 1,
                  "log_every": self.log_every >= 1, "warmup_steps": self.warmup_steps >= 0,
                  "decay_fraction": 0 <= self.decay_fraction <= 1, "norm_batches": self.norm_batches >= 1,
                  "step": self.step in ("auto", "dense", "sparse"), "backend": self.backend in BACKENDS,
                  "device": _device_ok(self.device)}
        for name, ok in checks.items():
            if not ok:
                flag = FLAGS.get(name, name)
                raise InputError(f"{flag}={getattr(self, name)} is not allowed: {_RULES[name]}.")

    def check_device(self) -> None:
        """InputError if `device` names a CUDA device this machine does not have (before any work)."""
        dev = torch.device(self.device)
        if dev.type != "cuda":
            return
        if not torch.cuda.is_available():
            raise InputError(f"device={self.device!r}: this machine has no CUDA GPU that torch can use "
                             "(torch.cuda.is_available() is False). Train on device='cpu'.")
        if (dev.index or 0) >= torch.cuda.device_count():
            raise InputError(f"device={self.device!r}: this machine has {torch.cuda.device_count()} CUDA device(s).")

    @property
    def steps(self) -> int:
        return self.total_tokens // self.batch_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in names}
        if "adam_betas" in fields:
            fields["adam_betas"] = tuple(fields["adam_betas"])
        return cls(**fields)


def _device_ok(device: str) -> bool:
    try:
        return torch.device(device).type in ("cpu", "cuda")
    except (RuntimeError, TypeError):
        return False


@dataclass
class TrainResult:
    sae: SAE
    steps: int
    tokens: int
    out_dir: Path
    seconds: float
    resumed_from: int
    tokens_this_run: int = 0

    @property
    def steps_this_run(self) -> int:
        return self.steps - self.resumed_from


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Warm-up, constant, linear decay (see module docstring)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    decay_start = int(cfg.steps * (1 - cfg.decay_fraction))
    if step >= decay_start and cfg.decay_fraction > 0:
        return max(0.0, (cfg.steps - step) / max(1, cfg.steps - decay_start))
    return 1.0


def _checkpoint_path(cfg: TrainConfig) -> Path:
    return Path(cfg.out_dir) / "checkpoint.pt"


def _save_checkpoint(cfg: TrainConfig, sae: SAE, opt: torch.optim.Optimizer, step: int) -> Path:
    state = {"step": step, "sae_cfg": sae.cfg.to_dict(), "sae_state": sae.state_dict(),
             "optimizer": opt.state_dict(), "train_config": cfg.to_dict()}
    write_json(Path(cfg.out_dir) / "train_config.json", cfg.to_dict())
    return atomic_write(_checkpoint_path(cfg), lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a trainer checkpoint (CheckpointError if it cannot be read)."""
    try:
        return dict(torch.load(path, map_location="cpu", weights_only=False))
    except Exception as exc:
        raise CheckpointError(f"{path} cannot be read ({cause(exc)}). " + advice(
            exc, damaged="It is truncated or altered: delete it to restart.",
            other="It is truncated, altered or written by another version: delete it to restart.")) from exc


def _initial_sae(cfg: TrainConfig, source: ActivationSource) -> SAE:
    sae_cfg: SAEConfig = registry.make_config(cfg.sae.get("architecture", "standard"), **cfg.sae)
    if sae_cfg.row_width != source.d_in:
        what = "d_in" if sae_cfg.row_width == sae_cfg.d_in else "rows (input and target side by side) of width"
        raise InputError(f"The SAE config takes {what}={sae_cfg.row_width} but the activations have width "
                         f"{source.d_in}.")
    batches = source.iter_batches(cfg.batch_size, seed=cfg.seed + 1)
    sample = torch.cat([next(batches) for _ in range(cfg.norm_batches)])
    _check_finite(sample, -1, None)
    sae_cfg.fit_normalization(sample)
    sae = registry.build(sae_cfg)
    sae.init_decoder_bias(sample)
    return sae


def _kept(checkpoint: Path | None) -> str:
    if checkpoint and checkpoint.exists():
        return f"The last good checkpoint is kept at {checkpoint}."
    return "No checkpoint was written yet."


def _check_finite(x: torch.Tensor, step: int, checkpoint: Path | None) -> None:
    """InputError if a batch of activations holds NaN or inf."""
    if torch.isfinite(x).all():
        return
    where = "before training" if step < 0 else f"at step {step}"
    raise InputError(
        f"The activations {where} contain NaN or inf values; training stopped. {_kept(checkpoint)} "
        "Check the model's dtype (use float32) and the hook, or rebuild the activation cache."
    )


def _check_loss(loss: torch.Tensor, terms: dict[str, torch.Tensor], step: int, checkpoint: Path) -> None:
    """InputError if the loss is NaN or inf (the activations were already checked finite)."""
    if math.isfinite(float(loss.detach())):
        return
    bad = [k for k, v in terms.items() if not math.isfinite(float(v.detach()))]
    raise InputError(
        f"The loss at step {step} is NaN or inf (term{'s' if len(bad) > 1 else ''} {', '.join(bad) or 'total'}) while the "
        f"activations are finite: the run diverged; training stopped. {_kept(checkpoint)} "
        "Lower --lr (or the sparsity coefficient) and start fresh in another --out."
    )


def _check_weights(sae: SAE, step: int, checkpoint: Path) -> None:
    """InputError if an optimizer step left NaN or inf in any parameter."""
    bad = [name for name, p in sae.named_parameters() if not torch.isfinite(p.detach()).all()]
    if bad:
        raise InputError(
            f"The SAE weights became NaN or inf at step {step} ({', '.join(bad)}) while the activations and the loss "
            f"were finite; training stopped. {_kept(checkpoint)} Lower --lr and start fresh in another --out."
        )


def check_resume(saved: dict[str, Any], cfg: TrainConfig, ckpt: Path) -> None:
    """InputError naming the first setting in which `cfg` differs from the checkpoint's train_config."""
    new = cfg.to_dict()
    for key in sorted(set(saved) | set(new)):
        if key in _RESUMABLE or key not in saved:  # a setting added after the checkpoint was written
            continue
        old_v, new_v = saved.get(key), new.get(key)
        if key == "sae":
            old_d, new_d = dict(old_v or {}), dict(new_v or {})
            for sub in sorted(set(old_d) | set(new_d)):
                if _norm(old_d.get(sub)) != _norm(new_d.get(sub)):  # a list from JSON equals the tuple
                    _refuse(f"sae.{sub}", old_d.get(sub), new_d.get(sub), ckpt)
        elif _norm(old_v) != _norm(new_v):
            _refuse(key, old_v, new_v, ckpt)


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, tuple | list) else v


def _refuse(key: str, old: Any, new: Any, ckpt: Path) -> None:
    flag = FLAGS.get(key)
    name = f"{key} ({flag})" if flag else key
    raise InputError(
        f"{ckpt.parent} holds a run with {name} = {old!r}, but this run asks for {new!r}; a resume must keep every "
        f"setting. Resume with {old!r}, or start fresh: pass another --out, or delete {ckpt} to retrain there."
    )


def _truncate_metrics(path: Path, step: int) -> None:
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    text = "".join(ln + "\n" for ln in lines)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def train(cfg: TrainConfig, source: ActivationSource, stop_after: int | None = None,
          reporter: Reporter | None = None) -> TrainResult:
    """Train (or resume) an SAE; `stop_after` ends this call after that many total steps (to test resumes).

    reporter (probes.progress): updated after every step, checked for a cancel before every step; on a
    cancel the current step is checkpointed (a later call resumes there) and Cancelled is raised.
    Default: a terminal bar unless cfg.progress is False.
    The run holds `cfg.out_dir` (probes.runfolder.hold, as the CLI does): a second trainer on the same
    folder, in another process, is refused with a RunFolderError naming the running one.
    """
    from probes.runfolder import hold

    cfg.check_device()
    command = f"{' '.join(sys.argv)} [saes.trainer.train, {cfg.sae.get('architecture', 'standard')}]"
    with hold(cfg.out_dir, "out_dir", command=command):
        return _train_held(cfg, source, stop_after, reporter)


def _train_held(cfg: TrainConfig, source: ActivationSource, stop_after: int | None,
                reporter: Reporter | None) -> TrainResult:
    device = torch.device(cfg.device)
    out = Path(cfg.out_dir)
    ckpt_path = _checkpoint_path(cfg)
    start = 0
    if ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        check_resume(state.get("train_config", {}), cfg, ckpt_path)
        sae = registry.build(registry.make_config(state["sae_cfg"]["architecture"], **state["sae_cfg"]))
        sae.load_state_dict(state["sae_state"])
        start = int(state["step"])
    else:
        sae = _initial_sae(cfg, source)
    sae.to(device)
    if getattr(sae, "loss_sparse", None) is not None and uses_sparse_step(cfg, device):
        from probes.model.kernels.dispatch import resolve_backend

        resolve_backend(cfg.backend, device)  # backend="triton" where it cannot run: refused before step 0
    opt = make_optimizer(sae, cfg)
    if start:
        opt.load_state_dict(state["optimizer"])
    metrics_path = out / "metrics.jsonl"
    _truncate_metrics(metrics_path, start) if start else metrics_path.unlink(missing_ok=True)
    t0 = time.time()
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    batches = source.iter_batches(cfg.batch_size, seed=cfg.seed, start_step=start)
    rep = reporter or TqdmReporter(f"train {sae.cfg.architecture}", disable=not cfg.progress)
    text = f"training {sae.cfg.architecture} SAE ({sae.cfg.d_sae} features): step {{}} / {cfg.steps}"
    rep.update(text.format(start), start, cfg.steps)
    sae.train()
    for step in range(start, end):
        try:
            rep.check()
        except Cancelled:
            if step > start:
                _save_checkpoint(cfg, sae, opt, step)
            raise
        x = next(batches).to(device, non_blocking=True)
        _check_finite(x, step, ckpt_path)
        out_ = _train_step(sae, opt, x, step, cfg, ckpt_path)
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            record = _metrics(sae, out_, x, step + 1, cfg)
            with open(metrics_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            text = (f"training {sae.cfg.architecture} SAE ({sae.cfg.d_sae} features): step {{}} / {cfg.steps}, "
                    f"loss {record['loss']:.3g}, L0 {record['l0']:.1f}, FVU {record['fvu']:.3f}")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            _save_checkpoint(cfg, sae, opt, step + 1)
        rep.update(text.format(step + 1), step + 1, cfg.steps)
    rep.close()
    sae.eval()
    if end == cfg.steps:
        from saes.saelens_io import save_sae

        _calibrate(sae, source, cfg)
        save_sae(sae, out / "sae")
    return TrainResult(sae, end, end * cfg.batch_size, out, time.time() - t0, start, max(0, end - start) * cfg.batch_size)


def make_optimizer(sae: SAE, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam; the fused implementation on CPU and CUDA (the same update, one kernel: 8x faster than the
    per-parameter loop on CPU at d_in 576, d_sae 4608, where the loop cost as much as the sparse step's GEMM)."""
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for p in sae.parameters())
    return torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=cfg.adam_betas, fused=fused)


def _calibrate(sae: SAE, source: ActivationSource, cfg: TrainConfig) -> None:
    """Batch-level rules: inference thresholds from the final weights on `calibrate_batches` batches."""
    if cfg.calibrate_batches <= 0 or type(sae).calibrate_thresholds is SAE.calibrate_thresholds:
        return
    batches = source.iter_batches(cfg.batch_size, seed=cfg.seed + 2)
    device = sae.W_enc.device
    sae.calibrate_thresholds([next(batches).to(device) for _ in range(cfg.calibrate_batches)])


def _train_step(sae: SAE, opt: torch.optim.Optimizer, x: torch.Tensor, step: int, cfg: TrainConfig, ckpt: Path) -> Any:
    for group in opt.param_groups:
        group["lr"] = cfg.lr * lr_factor(step, cfg)
    dead = sae.dead_mask(cfg.dead_window_tokens)
    out = _loss(sae, x, dead, cfg)
    _check_loss(out.loss, out.terms, step, ckpt)
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    sae.remove_parallel_decoder_grad()
    opt.step()
    sae.normalize_decoder()
    _check_weights(sae, step, ckpt)
    sae.update_stats(out)
    sae.adapt_sparsity(out.l0())
    return out


def _loss(sae: SAE, x: torch.Tensor, dead: torch.Tensor, cfg: TrainConfig) -> Any:
    """The dense loss, or TopK's sparse step (`step` "sparse"; "auto": see `uses_sparse_step`)."""
    sparse = getattr(sae, "loss_sparse", None)
    if sparse is not None and uses_sparse_step(cfg, x.device):
        return sparse(x, dead_mask=dead, backend=cfg.backend)
    return sae.loss(x, dead_mask=dead)


def uses_sparse_step(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether an SAE with a sparse step takes it: always for step "sparse"; for "auto" on the CPU, and on
    CUDA unless the Triton kernels cannot run there (no triton package, or backend "torch")."""
    from probes.model.kernels.dispatch import triton_importable

    if cfg.step != "auto":
        return cfg.step == "sparse"
    if device.type != "cuda":
        return True
    return cfg.backend != "torch" and triton_importable()


def _metrics(sae: SAE, out: Any, x: torch.Tensor, step: int, cfg: TrainConfig) -> dict[str, Any]:
    with torch.no_grad():
        target = sae.split(x)[1]
        resid = (target - out.x_hat).pow(2).sum()
        var = (target - target.mean(0)).pow(2).sum()
        return {
            "step": step, "tokens": step * cfg.batch_size, "lr": cfg.lr * lr_factor(step - 1, cfg),
            "loss": float(out.loss), **{k: float(v) for k, v in out.terms.items()},
            "l0": out.l0(), "fvu": float(resid / var),
            "dead_fraction": float(sae.dead_mask(cfg.dead_window_tokens).float().mean()),
            "underused_fraction": _underused_fraction(sae),
        }


def _underused_fraction(sae: SAE) -> float:
    """Fraction of features whose density EMA is below 0.1x the Zipf fit at their rank (mutual_choice.py)."""
    from saes.architectures.mutual_choice import underused

    if int(sae.stats_steps) == 0:
        return 0.0
    return float(underused(sae.density_ema, 0.1, None).float().mean())
