"""Standard SAE: f = ReLU(z); loss = mse + lambda * sum_j f_j ||W_dec[j]|| (docs/methods/saes.md).

The L1 term weights each feature by its decoder row norm, so the penalty cannot be dodged by
shrinking f and growing W_dec; with decoder_norm "unit" the norms are 1 and it is plain L1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from saes.base import SteeredCoefficient
from saes.config import SAEConfig
from saes.registry import register


@dataclass
class StandardConfig(SAEConfig):
    architecture: str = "standard"
    decoder_norm: str = "free"
    l1_coefficient: float = 2.5  # with target_l0 (the CLI default) it lands near L0 32 at its defaults (docs/saes.md)
    target_l0: float | None = None  # steer l1_coefficient to this L0 (saes/config.py adapt_scale)
    target_rate: float = 0.05


class StandardSAE(SteeredCoefficient):
    """ReLU + decoder-norm-weighted L1."""

    cfg: StandardConfig
    legacy_buffers = True  # checkpoints from before the steering buffers existed

    def activation(self, z: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        return torch.relu(z)

    def sparsity_terms(self, x_n, z, f, x_n_hat, dead_mask) -> dict[str, Tensor]:  # type: ignore[no-untyped-def]
        l1 = (f * self.W_dec.norm(dim=1)).sum(-1).mean()
        return {"l1": self.cfg.l1_coefficient * self.sparsity_scale * l1}


register("standard", StandardSAE, StandardConfig, "ReLU with an L1 penalty weighted by decoder norms")
