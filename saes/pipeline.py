"""Train an SAE on a model's activations, the pipeline defined once (docs/methods/saes.md; docs/saes.md).

`glasshouse sae train` (app/commands/sae.py), the SAE page's "Train here" (app/views/saes.py) and the
declared `sae` analysis (saes/analysis.py) all call `train_sae`:
1. the SAE fields of the saes.trainer.TrainConfig from an `SAESpec` (`sae_fields`): architecture, d_in
   (the activations' width), d_sae, k, hook_name, model_name, seed, and the sparsity rule (`sparsity_fields`):
   a given `sparsity` is the L1 coefficient of standard or the L0 coefficient of jumprelu (InputError for
   the TopK family, whose sparsity is k); without it standard, jumprelu and gated steer their coefficient to
   L0 = k (`target_l0`, saes/config.py adapt_scale) unless `steer_l0` is False (their fixed default
   coefficient);
2. the activations [n, d_in]: a tensor, or a callable that gathers them (given the first `gather_share` of
   the reporter, or None without one);
3. saes.trainer.train on them (a TensorSource) with the TrainConfig: `total_tokens` (default: every row),
   `batch_size`, the trainer's seed = the spec's seed, `out_dir` (default: a temporary folder, removed
   afterwards, so no checkpoint is kept) and any other TrainConfig field as given (lr, warmup_steps,
   log_every, checkpoint_every, device, progress, ...; the trainer's defaults otherwise).
Each caller keeps what is its own: the CLI its cache folder, resume and printing; the page its form, its
schedule and st.session_state; the analysis its windows, settings and evaluation.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probes.errors import InputError
from probes.progress import Reporter

if TYPE_CHECKING:
    from torch import Tensor

    from saes.base import SAE
    from saes.trainer import TrainConfig, TrainResult

# Gathers the activations [n, d_in]; gets a part of the pipeline's reporter (None without one).
Gather = Callable[[Reporter | None], "Tensor"]
# Architectures whose sparsity is a coefficient (steerable to a target L0); the others set theirs with k.
COEFFICIENT = {"standard": "l1_coefficient", "jumprelu": "l0_coefficient", "gated": "l1_coefficient",
               "jumprelu_transcoder": "l0_coefficient"}


@dataclass(frozen=True)
class SAESpec:
    """The SAE to train: architecture, size, hook, model and the sparsity rule (module docstring)."""

    architecture: str
    d_sae: int
    k: int
    hook_name: str
    model_name: str
    seed: int = 0
    sparsity: float | None = None  # the fixed coefficient of standard (L1) or jumprelu (L0)
    steer_l0: bool = True  # without `sparsity`: steer standard / jumprelu to L0 = k
    hook_name_out: str | None = None  # a transcoder's target hook (saes/architectures/transcoder.py)
    d_out: int | None = None  # its width: the activations are then rows [x | y] of width d_in + d_out
    skip: bool = False  # a transcoder's skip connection

    @property
    def is_transcoder(self) -> bool:
        return self.architecture.endswith("_transcoder")

    @property
    def hooks(self) -> list[str]:
        """The hooks a training row is read from, in row order (SAEConfig.hooks)."""
        return [self.hook_name] + ([self.hook_name_out] if self.hook_name_out else [])

    def check(self) -> None:
        """A transcoder names its target hook; an SAE does not."""
        if self.is_transcoder and not self.hook_name_out:
            raise InputError(f"A {self.architecture} reads one hook and predicts another: give the output hook "
                             "(hook_name_out, e.g. blocks.6.hook_mlp_out; --hook-out on the command line).")
        if not self.is_transcoder and (self.hook_name_out or self.skip):
            raise InputError(f"An output hook and a skip connection belong to transcoders, not to "
                             f"{self.architecture} (choose topk_transcoder or jumprelu_transcoder).")


@dataclass(frozen=True)
class TrainedSAE:
    """What `train_sae` ran (`config`) and what the trainer returned (`result`)."""

    config: TrainConfig
    result: TrainResult

    @property
    def sae(self) -> SAE:
        return self.result.sae


def no_coefficient(arch: str) -> str:
    """Why --sparsity does not apply to `arch` (the TopK family sets its sparsity with k)."""
    *first, last = sorted(COEFFICIENT)
    return f"--sparsity applies to {', '.join(first)} and {last}; {arch} sets its sparsity with --k."


def sparsity_fields(spec: SAESpec) -> dict[str, float]:
    """The SAE config's sparsity fields for `spec` (docs/methods/saes.md; rule in the module docstring).

    InputError when `sparsity` is given for an architecture that has no coefficient (the TopK family)."""
    arch = spec.architecture
    if spec.sparsity is not None:
        if arch not in COEFFICIENT:
            raise InputError(no_coefficient(arch))
        return {COEFFICIENT[arch]: spec.sparsity}
    if spec.steer_l0 and arch in COEFFICIENT:
        return {"target_l0": float(spec.k)}  # the coefficient is steered to L0 = k (saes/config.py adapt_scale)
    return {}


def sae_fields(spec: SAESpec, d_in: int) -> dict[str, Any]:
    """The `sae` dict of the TrainConfig for `spec` on activations of width `d_in` (docs/methods/saes.md);
    for a transcoder `d_in` is the rows' width, input and target side by side, and d_out is the spec's."""
    spec.check()
    fields = {"architecture": spec.architecture, "d_in": int(d_in), "d_sae": spec.d_sae, "k": spec.k,
              "hook_name": spec.hook_name, "model_name": spec.model_name, "seed": spec.seed,
              **sparsity_fields(spec)}
    if spec.is_transcoder:
        if spec.d_out is None or not 0 < spec.d_out < d_in:
            raise InputError(f"A transcoder's rows [x | y] need d_out (the output hook's width) below the rows' "
                             f"width {d_in}; got d_out={spec.d_out}.")
        fields.update(d_in=int(d_in) - spec.d_out, d_out=spec.d_out, hook_name_out=spec.hook_name_out,
                      skip=spec.skip)
    return fields


def train_sae(activations: Tensor | Gather, spec: SAESpec, *, batch_size: int, total_tokens: int | None = None,
              out_dir: str | os.PathLike[str] | None = None, reporter: Reporter | None = None,
              gather_share: float = 0.2, **train_fields: Any) -> TrainedSAE:
    """Train the SAE of `spec` on `activations` (docs/methods/saes.md; the steps in the module docstring).

    activations: a tensor [n, d_in], or a `Gather` run first under `reporter.part(0, gather_share)` (the
    training then gets the rest of the bar). total_tokens: default n. out_dir: where the trainer writes and
    resumes (default: a temporary folder). train_fields: other TrainConfig fields (lr, checkpoint_every, ...).
    reporter (probes.progress): None leaves the trainer's own terminal bar (cfg.progress)."""
    spec.check()  # a sparsity the architecture cannot take, or a transcoder without its output hook, is refused
    sparsity_fields(spec)  # before anything is gathered
    gather_rep, train_rep = _split(reporter, gather_share, gathers=callable(activations))
    acts = activations(gather_rep) if callable(activations) else activations
    if out_dir is not None:
        return _train(acts, spec, batch_size, total_tokens, str(out_dir), train_rep, train_fields)
    with tempfile.TemporaryDirectory(prefix="glasshouse-sae-") as tmp:
        return _train(acts, spec, batch_size, total_tokens, tmp, train_rep, train_fields)


def _split(reporter: Reporter | None, share: float, gathers: bool) -> tuple[Reporter | None, Reporter | None]:
    """The gathering's and the training's reporters: [0, share] and [share, 1] of `reporter` when gathering."""
    if reporter is None or not gathers:
        return None, reporter
    return reporter.part(0.0, share), reporter.part(share, 1.0)


def _train(acts: Tensor, spec: SAESpec, batch_size: int, total_tokens: int | None, out_dir: str,
           reporter: Reporter | None, train_fields: dict[str, Any]) -> TrainedSAE:
    from saes.activation_store import TensorSource
    from saes.trainer import TrainConfig, train

    cfg = TrainConfig(sae=sae_fields(spec, int(acts.shape[-1])),
                      total_tokens=int(acts.shape[0]) if total_tokens is None else total_tokens,
                      batch_size=batch_size, seed=spec.seed, out_dir=out_dir, **train_fields)
    return TrainedSAE(cfg, train(cfg, TensorSource(acts), reporter=reporter))
