"""Feature Choice SAE (Ayonrinde 2024; docs/methods/saes.md).

Training (`sae.train()`): each feature j keeps at most m_j tokens of the batch: the m_j largest
positive entries of its column of ReLU(z). The budget is exact: sum_j m_j = k * B (when
k * B <= F * B). Capacities start as real quotas q_j with sum_j q_j = k * B and q_j <= B:
- "uniform": q_j = k * B / F for every feature (the baseline; fractional when k*B/F is not whole);
- "zipf": q_j proportional to rank_j^(-zipf_alpha) (the paper's Zipf-shaped capacities), where
  rank_j is feature j's rank by its running firing density (density_ema; ties by index); when
  k * B >= F every feature first gets 1 and the remaining k*B - F follow the Zipf shape; quotas
  above B are clipped to B and the excess is shared among the others in proportion (water-filling).
Then m_j = floor(q_j), and the r = k*B - sum_j floor(q_j) slots left over go to the r columns whose
next candidate (the (m_j+1)-th largest entry of the column) is largest, so fractional quotas are
honoured by value rather than by feature index. (Before: m = max(1, round(k*B/F)) overshot the
budget 16x at B=64, F=4096, k=4 and undershot it at B=100, F=300, k=7.)
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
from jaxtyping import Float
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
) -> Float[Tensor, "*d_sae"]:
    """Real quotas q_j (float64) summing to min(k * B, F * B), each in [0, B] (module docstring)."""
    total = float(min(k * batch, d_sae * batch))
    if kind == "uniform" or density is None:
        return torch.full((d_sae,), total / d_sae, dtype=torch.float64)
    order = torch.argsort(-density, stable=True)
    rank = torch.empty(d_sae, dtype=torch.long)
    rank[order] = torch.arange(1, d_sae + 1)
    shape = rank.double().pow(-alpha)
    floor = torch.ones(d_sae, dtype=torch.float64) if total >= d_sae else torch.zeros(d_sae, dtype=torch.float64)
    return floor + _water_fill(shape, total - float(floor.sum()), batch - floor)


def _water_fill(shape: Tensor, total: float, cap: Tensor) -> Tensor:
    """q proportional to `shape`, sum q = total, q <= cap: clipped entries' excess shared by the rest."""
    q = torch.zeros_like(shape)
    free = torch.ones_like(shape, dtype=torch.bool)
    left = total
    for _ in range(shape.numel()):
        share = torch.where(free, shape, torch.zeros_like(shape))
        q_free = share / share.sum() * left
        over = free & (q_free > cap)
        if not bool(over.any()):
            return torch.where(free, q_free, q)
        q[over] = cap[over]
        free &= ~over
        left = total - float(q[~free].sum())
    return q


def choose_per_column(r: Float[Tensor, "batch d_sae"], quota: Tensor) -> Float[Tensor, "batch d_sae"]:
    """Keep the m_j largest entries of each column j of r (r >= 0), zero elsewhere.

    `quota` is either integer capacities m_j, or real quotas q_j: then m_j = floor(q_j) and the
    round(sum q) - sum floor(q) leftover slots go to the columns with the largest next entry.
    """
    batch = r.shape[0]
    if quota.is_floating_point():
        m = quota.floor().long().clamp(0, batch)
        extra = int(round(float(quota.sum()))) - int(m.sum())
    else:
        m, extra = quota.long().clamp(0, batch), 0
    depth = min(int(m.max()) + (1 if extra > 0 else 0), batch)
    if depth == 0:
        return torch.zeros_like(r)
    vals, idx = r.topk(depth, dim=0)
    if extra > 0:
        has_next = m < batch
        nxt = vals.gather(0, m.clamp(max=depth - 1)[None, :]).squeeze(0)
        nxt = torch.where(has_next, nxt, torch.full_like(nxt, -float("inf")))
        m = m + torch.zeros_like(m).scatter(0, nxt.topk(min(extra, int(has_next.sum()))).indices, 1)
    keep = torch.arange(depth, device=r.device)[:, None] < m[None, :]
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

    def capacities(self, batch: int) -> Float[Tensor, "*d_sae"]:
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
