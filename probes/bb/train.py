"""Training the BB model: softmax + AdamW, and the two mitigations (ReLU attention, SGD).

Spec: docs/methods/extreme-tokens.md, "The Bigram-Backcopy (BB) task", training.
- AdamW: lr 3e-4 with softmax attention, 3e-3 with ReLU attention; betas (0.9, 0.99), weight decay 1e-4.
- SGD: momentum 0.9, lr 0.03 (no weight decay). No schedule in any case.
- Each step's batch is generate(task, batch, seed, step): a function of (seed, step) only, so a run that
  is killed and resumed from its last checkpoint sees the same data and ends with the same weights as an
  uninterrupted run (the optimizer state is saved with every checkpoint).
- The model's initial weights come from torch.manual_seed(seed).
- Every `eval_every` steps (and at step 0 and the last step) the measures of probes/bb/measure.py are
  taken on a fixed evaluation batch (stream EVAL_STREAM, `eval_batch` sequences) and appended to
  metrics.jsonl; every `checkpoint_every` steps (and at the end) a checkpoint folder is written.

Device: `train(..., device=...)` trains on the CPU or a CUDA device (the model's initial weights are drawn
on the CPU and moved, so both start alike). Batches are generated on the CPU and moved; checkpoints and
measurements are taken from a CPU copy, so a checkpoint reads anywhere and a run may resume on another device.

Two presets (PRESETS; docs/bb_lab.md says what each shows):
- "spec": the spec's run, d = 256, 257-token sequences, batch 512, 10k steps (a GPU job);
- "cpu" (the default): d = 64, 65-token sequences, the spec's batch of 512, 2000 steps (about 11 minutes
  on the 2-core CPU machine; 15 on one core). The batch is what the sink needs: at batch 64 the sink weight stalls near 0.3
  after 10k steps, at batch 512 it passes 0.4 by step 2000 (docs/bb_lab.md).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from probes.bb import data
from probes.bb.checkpoint import (
    load_checkpoint,
    load_training_state,
    read_meta,
    save_checkpoint,
    write_latest,
)
from probes.bb.data import EVAL_STREAM, BBTask, prose_task, split
from probes.bb.measure import measure
from probes.bb.model import ATTENTIONS, BBConfig, BBModel
from probes.bb.options import DEFAULT_PRESET, OPTIMIZERS, PRESETS  # one definition, torch-free
from probes.errors import CheckpointError, InputError, cause
from probes.io import atomic_write
from probes.progress import Cancelled, Reporter, TqdmReporter

METRICS = "metrics.jsonl"


def default_lr(optimizer: str, attention: str) -> float:
    """The spec's learning rates: SGD 0.03; AdamW 3e-4 (softmax) or 3e-3 (ReLU attention)."""
    if optimizer == "sgd":
        return 0.03
    return 3e-3 if attention == "relu" else 3e-4


@dataclass(frozen=True)
class TrainSettings:
    """Everything that determines a BB training run (with the seed, the result is reproducible)."""

    layers: int = 1
    optimizer: str = "adamw"
    attention: str = "softmax"
    steps: int = PRESETS[DEFAULT_PRESET]["steps"]
    batch: int = PRESETS[DEFAULT_PRESET]["batch"]
    seq_len: int = PRESETS[DEFAULT_PRESET]["seq_len"]
    d_model: int = PRESETS[DEFAULT_PRESET]["d_model"]
    lr: float | None = None  # None: default_lr(optimizer, attention)
    seed: int = 0
    eval_every: int = PRESETS[DEFAULT_PRESET]["eval_every"]
    eval_batch: int = 64
    checkpoint_every: int = PRESETS[DEFAULT_PRESET]["checkpoint_every"]
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"Unknown optimizer '{self.optimizer}'. Use one of: {', '.join(OPTIMIZERS)}.")
        if self.attention not in ATTENTIONS:
            raise InputError(f"Unknown attention '{self.attention}'. Use one of: {', '.join(ATTENTIONS)}.")
        for name in ("layers", "steps", "batch", "d_model", "eval_every", "eval_batch", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1 (got {getattr(self, name)}).")
        if self.seq_len < 3:
            raise InputError(f"seq_len must be at least 3 (got {self.seq_len}).")

    @classmethod
    def from_preset(cls, preset: str = DEFAULT_PRESET, **overrides: Any) -> TrainSettings:
        """A preset's sizes ("cpu" or "spec"), with any field given (not None) in overrides replacing its value."""
        if preset not in PRESETS:
            raise InputError(f"Unknown preset '{preset}'. Use one of: {', '.join(PRESETS)}.")
        return cls(**{**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}})

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else default_lr(self.optimizer, self.attention)

    def model_config(self, task: BBTask) -> BBConfig:
        return BBConfig(vocab_size=task.vocab_size, d_model=self.d_model, n_layers=self.layers,
                        n_heads=1, n_ctx=self.seq_len - 1, attention=self.attention)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "learning_rate": self.learning_rate}


def make_optimizer(model: BBModel, settings: TrainSettings) -> torch.optim.Optimizer:
    """AdamW (betas (0.9, 0.99), weight decay 1e-4) or SGD (momentum 0.9), at settings.learning_rate."""
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, betas=(0.9, 0.99), weight_decay=1e-4)
    return torch.optim.SGD(model.parameters(), lr=settings.learning_rate, momentum=0.9)


@dataclass
class TrainResult:
    """Where a run lives and what it measured (one dict per evaluation step)."""

    run_dir: str
    settings: dict[str, Any]
    metrics: list[dict[str, Any]]
    final_checkpoint: str
    resumed_from: int | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "bb_train", **asdict(self)}


def read_metrics(run_dir: str | Path, up_to: int | None = None) -> list[dict[str, Any]]:
    """The metrics.jsonl rows of a run (only steps <= up_to when given; a torn last line is dropped)."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if up_to is None or row["step"] <= up_to:
            rows.append(row)
    return rows


def _write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    atomic_write(run_dir / METRICS, lambda tmp: tmp.write_text(text))


def _resume(run_dir: Path, settings: TrainSettings) -> tuple[BBModel, dict[str, Any], int] | None:
    """The model, optimizer state and step of the run's latest checkpoint, if any."""
    if not (run_dir / "latest").is_file():
        return None
    meta = read_meta(run_dir)
    saved = {k: v for k, v in meta["settings"].items() if k not in ("steps", "learning_rate")}
    wanted = {k: v for k, v in settings.to_dict().items() if k not in ("steps", "learning_rate")}
    if saved != wanted:
        raise CheckpointError(
            f"{run_dir} holds a run with other settings ({saved}); use another --out folder or the same settings."
        )
    model, _, _ = load_checkpoint(run_dir)
    state = load_training_state(run_dir)
    return model, state["optimizer"], int(state["step"])


def eval_batch(task: BBTask, settings: TrainSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed evaluation batch (inputs, targets): stream EVAL_STREAM, `eval_batch` sequences."""
    return split(data.generate(task, settings.eval_batch, settings.seed, 0, settings.seq_len, EVAL_STREAM))


def status_text(step: int, settings: TrainSettings, rows: list[dict[str, Any]]) -> str:
    """The progress line: the step and the last measurement."""
    if not rows:
        return f"step {step} / {settings.steps}"
    last = rows[-1]
    return (f"step {step} / {settings.steps}: attention on <s> non-trigger {last['attn_sink_nontrigger'][-1]:.3f}, "
            f"trigger {last['attn_sink_trigger'][-1]:.3f}, loss {last['loss']:.3f}")


def check_device(device: str | torch.device) -> torch.device:
    """The torch device to train on; InputError if it is not cpu/cuda[:N] or names a GPU this machine lacks."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"device {device!r} is not a torch device ({cause(exc)}); use cpu, cuda or cuda:N.") from exc
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"device {device!r}: BB training runs on cpu or cuda.")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {str(device)!r}: this machine has no CUDA GPU that torch can use "
                             "(torch.cuda.is_available() is False). Train on cpu.")
        if (dev.index or 0) >= torch.cuda.device_count():
            raise InputError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s).")
    return dev


def _cpu_copy(model: BBModel) -> BBModel:
    """The model itself on the CPU, else a CPU copy (checkpoints and measurements are taken on the CPU)."""
    if next(model.parameters()).device.type == "cpu":
        return model
    copy = BBModel(model.cfg)
    copy.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    copy.train(model.training)
    return copy


def _to_cpu(obj: Any) -> Any:
    """An optimizer state dict with every tensor on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def train(
    settings: TrainSettings, run_dir: str | Path, task: BBTask | None = None, progress: bool = True,
    reporter: Reporter | None = None, device: str | torch.device = "cpu",
) -> TrainResult:
    """Train (or resume) a BB model in run_dir on `device`; return its metrics (spec: BB task, training).

    reporter (probes.progress): updated after every step (done = steps finished, partial = the metric
    rows when a new one was measured) and checked for a cancel before every step; on a cancel the
    current step is checkpointed (so a later call resumes there) and Cancelled is raised. Default: a
    terminal bar, unless progress=False.
    """
    dev = check_device(device)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    task = task or prose_task()
    started = time.time()
    resumed = _resume(run_dir, settings)
    if resumed is None:
        torch.manual_seed(settings.seed)
        model = BBModel(settings.model_config(task)).to(dev)
        optimizer = make_optimizer(model, settings)
        start, rows = 0, []
    else:
        model, opt_state, start = resumed
        model = model.to(dev)
        optimizer = make_optimizer(model, settings)
        optimizer.load_state_dict(opt_state)
        # rows on the evaluation grid only: a shorter run's final-step row is not part of the longer run
        rows = [r for r in read_metrics(run_dir, up_to=start) if r["step"] % settings.eval_every == 0]
    resumed_from = None if resumed is None else start
    rep = reporter or TqdmReporter(f"bb {settings.attention}+{settings.optimizer}", disable=not progress)
    eval_x, eval_y = eval_batch(task, settings)
    model.train()
    rep.update(status_text(start, settings, rows), start, settings.steps)
    checkpoint = run_dir / f"step_{start:06d}"
    for step in range(start, settings.steps + 1):
        try:
            rep.check()
        except Cancelled:
            if step > start and not (run_dir / f"step_{step:06d}").is_dir():
                write_latest(run_dir, save_checkpoint(run_dir / f"step_{step:06d}", _cpu_copy(model), task, step,
                                                      settings.to_dict(), _to_cpu(optimizer.state_dict())))
            raise
        measured = False
        if step % settings.eval_every == 0 or step == settings.steps:
            if not rows or rows[-1]["step"] < step:
                rows.append({"step": step, **measure(_cpu_copy(model), task, eval_x, eval_y).to_dict()})
                _write_metrics(run_dir, rows)
                measured = True
        if step > start and (step % settings.checkpoint_every == 0 or step == settings.steps):
            checkpoint = save_checkpoint(run_dir / f"step_{step:06d}", _cpu_copy(model), task, step, settings.to_dict(),
                                         _to_cpu(optimizer.state_dict()))
            write_latest(run_dir, checkpoint)
        if step == settings.steps:
            rep.update(status_text(step, settings, rows), step, settings.steps, rows if measured else None)
            break
        x, y = split(data.generate(task, settings.batch, settings.seed, step, settings.seq_len))
        x, y = x.to(dev), y.to(dev)
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        rep.update(status_text(step + 1, settings, rows), step + 1, settings.steps, rows if measured else None)
    rep.close()
    return TrainResult(str(run_dir), settings.to_dict(), rows, str(checkpoint), resumed_from, time.time() - started)
