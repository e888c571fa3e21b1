"""Mutual Choice SAE (Ayonrinde 2024; spec saes.md) with an under-use auxiliary loss of our design.

Selection: keep the k*B largest entries of the whole B x F matrix ReLU(z) (functionally
BatchTopK; same global inference threshold, see batchtopk.py).

Under-use loss (our design; the paper's exact form is not recoverable):
1. Fit a Zipf curve to the running feature densities: sort density_ema descending, rank r = 1..F,
   least-squares fit of log d = a - alpha * log r over the features with d > 0
   (alpha clamped to [0, 3]; with fewer than 2 such features, alpha = 0).
2. A feature is under-used when its density is below `underuse_fraction` times the fitted
   curve at its rank, or it has been dead for the trainer's window (dead features have d = 0 and
   always qualify once stats exist).
3. For under-used features, with t = the batch's selection value (the smallest kept entry,
   detached) and M_j = max over the batch of z_bj:
       L_under = underuse_coefficient * sum_j relu(t - M_j) / t
   This raises each under-used feature's best pre-activation to the level where the batch would
   select it, after which the reconstruction loss trains it; it is zero once M_j >= t.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from saes.architectures.batchtopk import BatchTopKConfig, BatchTopKSAE
from saes.registry import register


@dataclass
class MutualChoiceConfig(BatchTopKConfig):
    architecture: str = "mutual_choice"
    aux_coefficient: float = 0.0  # no AuxK; the under-use loss below replaces it
    underuse_fraction: float = 0.1
    underuse_coefficient: float = 0.01


def zipf_fit(density: Float[Tensor, "*d_sae"]) -> Float[Tensor, "*d_sae"]:
    """The fitted Zipf density at each feature's rank (see module docstring, step 1)."""
    order = torch.argsort(-density, stable=True)
    sorted_d = density[order].double()
    ranks = torch.arange(1, density.numel() + 1, dtype=torch.float64)
    live = sorted_d > 0
    if int(live.sum()) < 2:
        fitted_sorted = torch.full_like(sorted_d, float(sorted_d.max()))
    else:
        x, y = ranks[live].log(), sorted_d[live].log()
        slope = ((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).pow(2).sum()
        alpha = float((-slope).clamp(0, 3))
        a = float(y.mean() + alpha * x.mean())
        fitted_sorted = torch.exp(a - alpha * ranks.log())
    fitted = torch.empty_like(fitted_sorted)
    fitted[order] = fitted_sorted
    return fitted.to(density.dtype)


def underused(density: Tensor, fraction: float, dead_mask: Bool[Tensor, "*d_sae"] | None) -> Bool[Tensor, "*d_sae"]:
    """Features below `fraction` of the fitted Zipf density, or dead."""
    mask = density < fraction * zipf_fit(density)
    return mask | dead_mask if dead_mask is not None else mask


class MutualChoiceSAE(BatchTopKSAE):
    """Top k*B of the B x F matrix, plus the under-use loss."""

    cfg: MutualChoiceConfig

    def sparsity_terms(self, x_n, z, f, x_n_hat, dead_mask) -> dict[str, Tensor]:  # type: ignore[no-untyped-def]
        terms = super().sparsity_terms(x_n, z, f, x_n_hat, dead_mask)
        t = self._last_selection_value
        if t is None or float(t) <= 0 or int(self.stats_steps) == 0:
            terms["underuse"] = z.new_zeros(())
            return terms
        under = underused(self.density_ema, self.cfg.underuse_fraction, dead_mask)
        best = z.max(dim=0).values
        gap = torch.relu(t - best[under]).sum() / t
        terms["underuse"] = self.cfg.underuse_coefficient * gap
        return terms


register("mutual_choice", MutualChoiceSAE, MutualChoiceConfig, "top k*B of the batch matrix plus an under-use loss")
