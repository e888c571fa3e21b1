"""SAE configuration: the fields every architecture shares (docs/methods/saes.md, "Architectures").

Each architecture extends `SAEConfig` with its own dataclass (see saes/architectures/*). The
config is written into `cfg.json` beside the weights (SAELens layout, saes/saelens_io.py), so
every field must be JSON-ready.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from probes.errors import InputError

DECODER_NORMS = ("unit", "free")


@dataclass
class SAEConfig:
    """Shared SAE settings.

    - `d_in`, `d_sae`: activation width and number of features.
    - `hook_name`: the TransformerLens hook the SAE reads (e.g. "blocks.6.hook_resid_post").
    - `decoder_norm`: "unit" keeps every decoder row at unit L2 norm during training (rows are
      renormalised after each step and the gradient component parallel to each row is removed
      first); "free" leaves the rows free and puts the row norm into the sparsity penalty instead
      (standard ReLU: lambda * sum_j f_j ||W_dec[j]||).
    - `norm_scale`: activations are multiplied by this before encoding and reconstructions divided
      by it after decoding, so the SAE takes and returns raw activations ("normalization option
      recorded with the SAE"; the trainer sets it so that E||x * s|| = sqrt(d_in)).
    - `skip_first_position`: whether position 0 (an attention sink with a huge norm) was left out
      of training; CE splicing then leaves position 0 untouched too.
    """

    architecture: str = "standard"
    d_in: int = 576
    d_sae: int = 2304
    hook_name: str = "blocks.6.hook_resid_post"
    model_name: str = "smollm2-135m"
    decoder_norm: str = "unit"
    norm_scale: float = 1.0
    normalization: str = "expected_norm"  # "none" or "expected_norm" (E||x|| = sqrt(d_in))
    skip_first_position: bool = True
    dtype: str = "float32"
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.d_in < 1 or self.d_sae < 1:
            raise InputError(f"d_in and d_sae must be positive (got d_in={self.d_in}, d_sae={self.d_sae}).")
        if self.decoder_norm not in DECODER_NORMS:
            raise InputError(f"decoder_norm must be one of {DECODER_NORMS}, got '{self.decoder_norm}'.")
        if self.normalization not in ("none", "expected_norm"):
            raise InputError(f"normalization must be 'none' or 'expected_norm', got '{self.normalization}'.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def row_width(self) -> int:
        """The width of a training row (d_in; a transcoder's rows hold its input and its target)."""
        return self.d_in

    @property
    def hooks(self) -> list[str]:
        """The hooks a training row is read from, in row order (a transcoder's: input, then target)."""
        return [self.hook_name]

    def fit_normalization(self, sample: Tensor) -> None:
        """Set norm_scale from a sample of training rows (normalization "expected_norm")."""
        if self.normalization == "expected_norm":
            from saes.activation_store import estimate_norm_scale

            self.norm_scale = estimate_norm_scale(sample)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEConfig:
        """Build from a dict, ignoring keys this dataclass does not have (e.g. SAELens-only keys)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def adapt_scale(scale: Tensor, l0: float, target: float | None, rate: float, trace: Tensor | None = None,
                hold_speed: float = 0.01, clip: float = 0.25) -> None:
    """Steer a sparsity coefficient to a target L0 (Standard, JumpReLU; docs/saes.md), in place.

    With `target_l0` set in their config, the SAE keeps a buffer `sparsity_scale` (starting at 1,
    saved in checkpoints) that multiplies its coefficient, and after each training step with batch
    L0 `l0`:  log scale += rate * log(l0 / target), clamped to [1e-4, 1e4] (an integrating controller
    in log space: an L0 above the target raises the penalty). No-op without a target.

    With `trace` (a buffer [smoothed log L0, steps seen], also in checkpoints) the scale is held while
    the smoothed L0 (EMA, momentum 0.8) already moves toward the target by at least `hold_speed`
    (relative) per step. Under Adam an L0 falls at about the same speed whatever the coefficient, so
    raising it during that fall only winds the integrator up: on SmolLM2 layer 6 the plain controller
    took Standard from L0 1,143 to 0.2 in 64 steps (the scale kept rising until L0 crossed 32, then the
    features were dead). With a trace the error is also clipped to [-clip, clip] (at most a factor
    exp(rate * clip) per step, 1.25% at the defaults), so the integrator trims the coefficient
    rather than replacing it: the default coefficients are set so that the scale stays near 1 on the
    embedded model at `sae train`'s defaults (docs/saes.md, measured).
    """
    if target is None or target <= 0:
        return
    err = math.log(max(l0, 1e-3) / target)
    if trace is not None:
        x = math.log(max(l0, 1e-3))
        prev = float(trace[0]) if float(trace[1]) > 0 else x
        smooth = 0.8 * prev + 0.2 * x
        trace.copy_(torch.tensor([smooth, float(trace[1]) + 1], dtype=trace.dtype))
        err = smooth - math.log(target)
        slope = smooth - prev
        if slope * err < 0 and abs(slope) >= hold_speed:
            return
        err = max(-clip, min(clip, err))
    scale.copy_((scale.log() + rate * err).clamp(math.log(1e-4), math.log(1e4)).exp())


def default_missing_buffers(state_dict: dict[str, Any], prefix: str) -> None:
    """Fill the controller buffers of a state dict written before they existed (Standard, JumpReLU).

    Those checkpoints trained with a fixed coefficient: `sparsity_scale` 1 (their configs have no
    `target_l0`, so it stays 1) and an empty `l0_trace`. Called from `_load_from_state_dict` on
    torch's own copy of the dict.
    """
    state_dict.setdefault(prefix + "sparsity_scale", torch.ones(()))
    state_dict.setdefault(prefix + "l0_trace", torch.zeros(2))


def hook_layer(hook_name: str) -> int | None:
    """The layer number in a TransformerLens hook name ("blocks.6.hook_resid_post" -> 6)."""
    parts = hook_name.split(".")
    if len(parts) >= 2 and parts[0] == "blocks" and parts[1].isdigit():
        return int(parts[1])
    return None
