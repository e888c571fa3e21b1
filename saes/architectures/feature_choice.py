"""Feature Choice SAE (Ayonrinde 2024; spec saes.md).

Training (`sae.train()`): each feature j keeps at most m_j tokens of the batch: the m_j largest
positive entries of its column of ReLU(z). Capacities:
- "uniform": m_j = max(1, round(k * B / F)) for every feature (the baseline);
- "zipf": m_j proportional to rank_j^(-zipf_alpha), scaled so that sum_j m_j ~= k * B and clipped to
  [1, B], where rank_j is feature j's rank by its running firing density (density_ema; ties by index).
Inference (`sae.eval()`): a per-feature JumpReLU whose threshold theta_j is an EMA (momentum
`threshold_momentum`) of the smallest positive activation column j kept in training batches
(features that never kept one keep threshold 0, i.e. plain ReLU); at the end of training the
trainer re-estimates it from the final weights (`calibrate_thresholds`, mean over a few batches). No auxiliary loss: a feature is
selected on its best tokens whenever any pre-activation is positive, which is why Feature
Choice leaves (almost) no dead features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from probes.errors import InputError
from saes.base import SAE
from saes.config import SAEConfig
from saes.registry import register


@dataclass
class FeatureChoiceConfig(SAEConfig):
    architecture: str = "feature_choice"
    k: int = 32
    capacities: str = "uniform"  # uniform | zipf
    zipf_alpha: float = 1.0
    threshold_momentum: float = 0.99

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.capacities not in ("uniform", "zipf"):
            raise InputError(f"capacities must be 'uniform' or 'zipf', got '{self.capacities}'.")


def column_capacities(
    batch: int, d_sae: int, k: int, kind: str, density: Tensor | None = None, alpha: float = 1.0
) -> Int[Tensor, "*d_sae"]:
    """m_j for every feature (see module docstring)."""
    if kind == "uniform" or density is None:
        return torch.full((d_sae,), max(1, round(k * batch / d_sae)), dtype=torch.long)
    order = torch.argsort(-density, stable=True)
    rank = torch.empty(d_sae, dtype=torch.long)
    rank[order] = torch.arange(1, d_sae + 1)
    shape = rank.double().pow(-alpha)
    m = (shape / shape.sum() * k * batch).round().long()
    return m.clamp(1, batch)


def choose_per_column(r: Float[Tensor, "batch d_sae"], m: Int[Tensor, "*d_sae"]) -> Float[Tensor, "batch d_sae"]:
    """Keep the m_j largest entries of each column j of r (r >= 0), zero elsewhere."""
    m_max = int(m.max())
    vals, idx = r.topk(min(m_max, r.shape[0]), dim=0)
    keep = torch.arange(vals.shape[0])[:, None] < m[None, :]
    return torch.zeros_like(r).scatter(0, idx, vals * keep)


class FeatureChoiceSAE(SAE):
    """Each feature picks its top-m tokens in the batch."""

    cfg: FeatureChoiceConfig
    threshold: Tensor
    threshold_seen: Tensor

    def __init__(self, cfg: FeatureChoiceConfig) -> None:
        super().__init__(cfg)
        self.register_buffer("threshold", torch.zeros(cfg.d_sae))
        self.register_buffer("threshold_seen", torch.zeros(cfg.d_sae, dtype=torch.bool))

    def capacities(self, batch: int) -> Int[Tensor, "*d_sae"]:
        density = self.density_ema if int(self.stats_steps) > 0 else None
        return column_capacities(batch, self.cfg.d_sae, self.cfg.k, self.cfg.capacities, density, self.cfg.zipf_alpha)

    def activation(self, z: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        if not self.training:
            return z * (z > self.threshold)
        f = choose_per_column(torch.relu(z), self.capacities(z.shape[0]))
        self._update_threshold(f)
        return f

    @torch.no_grad()
    def _update_threshold(self, f: Tensor) -> None:
        kept = f > 0
        has = kept.any(dim=0)
        smallest = torch.where(kept, f, torch.full_like(f, float("inf"))).min(dim=0).values
        m = self.cfg.threshold_momentum
        first = has & ~self.threshold_seen
        later = has & self.threshold_seen
        self.threshold[first] = smallest[first]
        self.threshold[later] = m * self.threshold[later] + (1 - m) * smallest[later]
        self.threshold_seen |= has

    def inference_threshold(self) -> Tensor | None:
        return self.threshold.detach().clone()

    @torch.no_grad()
    def calibrate_thresholds(self, batches: list[Float[Tensor, "batch d_in"]]) -> None:
        """theta_j = mean over `batches` (where column j kept any) of its smallest kept value (final weights)."""
        total = torch.zeros(self.cfg.d_sae)
        count = torch.zeros(self.cfg.d_sae)
        for x in batches:
            f = choose_per_column(torch.relu(self.pre_acts(x)), self.capacities(x.shape[0]))
            kept = f > 0
            smallest = torch.where(kept, f, torch.full_like(f, float("inf"))).min(dim=0).values
            has = kept.any(dim=0)
            total[has] += smallest[has]
            count[has] += 1
        seen = count > 0
        self.threshold[seen] = total[seen] / count[seen]
        self.threshold_seen |= seen

    def _load_threshold(self, threshold: Tensor) -> None:
        self.threshold.copy_(threshold)
        self.threshold_seen.fill_(True)

    def fold_decoder_norm(self) -> None:
        raise InputError("A Feature Choice selection changes under per-feature rescaling; use decoder_norm='unit'.")


register("feature_choice", FeatureChoiceSAE, FeatureChoiceConfig, "each feature keeps its top-m tokens of the batch")
