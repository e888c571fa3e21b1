"""Mutual Choice SAE (Ayonrinde 2024; docs/methods/saes.md) with an under-use auxiliary loss of our design.

Selection: keep the k*B largest entries of the whole B x F matrix ReLU(z) (functionally
BatchTopK; same global inference threshold, see batchtopk.py).

Under-use loss (our design; the paper's exact form is not recoverable):
1. Fit a Zipf curve to the running feature densities: sort density_ema descending, rank r = 1..F,
   least-squares fit of log d = a - alpha * log r over the features with d > 0
   (alpha clamped to [0, 3]; with fewer than 2 such features, alpha = 0).
2. A feature is under-used when its density is below `underuse_fraction` times the fitted
   curve at its rank, or it has been dead for the trainer's window (dead features have d = 0 and
   always qualify once stats exist).
3. Each under-used feature j gets a target count n_j = clamp(ceil(target_j * B), 1, B) with
   target_j = underuse_fraction * fitted_j (the density at which it stops counting as under-used).
   With t = the batch's selection value (the smallest kept entry, detached) and z_(1)j >= z_(2)j
   >= ... its pre-activations over the batch, sorted:
       L_under = underuse_coefficient * sum_{j under-used} (1/n_j) sum_{i <= n_j} relu(t - z_(i)j) / t
   This raises each under-used feature's n_j best pre-activations to the level where the batch
   selects them, after which the reconstruction loss trains the feature on those tokens.
It stays active while the feature is under-used: it is zero only once the feature would be selected
on at least n_j tokens of the batch (and the mask drops it once its density EMA reaches the target).
The first design (relu(t - max_b z_bj) only) went to zero as soon as a feature was selected on a
single token: at step 10 it was 7.8e-4 against an MSE of 317, and Mutual Choice trained exactly as
BatchTopK. The loss reaches b_dec, b_enc and W_enc columns of the under-used features only through z.
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
    underuse_coefficient: float = 0.05


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


def underuse_loss(
    z: Float[Tensor, "batch d_sae"], t: Tensor, under: Bool[Tensor, "*d_sae"], target: Float[Tensor, "*d_sae"]
) -> Tensor:
    """sum over under-used j of the mean over its n_j best tokens of relu(t - z) / t (module docstring, step 3)."""
    if not bool(under.any()):
        return z.new_zeros(())
    batch = z.shape[0]
    n = (target[under].double() * batch).ceil().clamp(1, batch).long()
    top = z[:, under].topk(int(n.max()), dim=0).values
    mask = torch.arange(top.shape[0], device=z.device)[:, None] < n[None, :]
    gap = torch.relu(t - top) * mask / t
    return (gap.sum(0) / n).sum()


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
        target = self.cfg.underuse_fraction * zipf_fit(self.density_ema)
        terms["underuse"] = self.cfg.underuse_coefficient * underuse_loss(z, t.detach(), under, target)
        return terms


register("mutual_choice", MutualChoiceSAE, MutualChoiceConfig, "top k*B of the batch matrix plus an under-use loss")
