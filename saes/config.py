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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEConfig:
        """Build from a dict, ignoring keys this dataclass does not have (e.g. SAELens-only keys)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def adapt_scale(scale: Tensor, l0: float, target: float | None, rate: float) -> None:
    """Steer a sparsity coefficient to a target L0 (Standard, JumpReLU; docs/saes.md), in place.

    With `target_l0` set in their config, the SAE keeps a buffer `sparsity_scale` (starting at 1,
    saved in checkpoints) that multiplies its coefficient, and after each training step with batch
    L0 `l0`:  log scale += rate * log(l0 / target), clamped to [1e-4, 1e4] (a proportional
    controller in log space: an L0 above the target raises the penalty). No-op without a target.
    """
    if target is None or target <= 0:
        return
    step = rate * math.log(max(l0, 1e-3) / target)
    scale.copy_((scale.log() + step).clamp(math.log(1e-4), math.log(1e4)).exp())


def default_missing_scale(state_dict: dict[str, Any], prefix: str) -> None:
    """Give a state dict written before the `sparsity_scale` buffer existed (Standard, JumpReLU) the value 1.

    Those checkpoints trained with a fixed coefficient, which is a scale of 1 (and their configs have no
    `target_l0`, so the scale stays 1). Called from `_load_from_state_dict`; the dict is torch's own copy.
    """
    import torch

    state_dict.setdefault(prefix + "sparsity_scale", torch.ones(()))


def hook_layer(hook_name: str) -> int | None:
    """The layer number in a TransformerLens hook name ("blocks.6.hook_resid_post" -> 6)."""
    parts = hook_name.split(".")
    if len(parts) >= 2 and parts[0] == "blocks" and parts[1].isdigit():
        return int(parts[1])
    return None
