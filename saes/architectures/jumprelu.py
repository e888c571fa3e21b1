"""JumpReLU SAE (Rajamanoharan et al. 2024; docs/methods/saes.md).

f = z * 1[z > theta_j], theta_j = exp(log_threshold_j) > 0. The thresholds get gradients through
straight-through estimators with a rectangle kernel K(u) = 1[|u| < 1/2] of width `bandwidth` eps:
    d f / d theta_j     = -(theta_j / eps) K((z - theta_j) / eps)      (JumpReLU's pseudo-derivative)
    d H(z-theta) / d theta_j = -(1 / eps) K((z - theta_j) / eps)       (the L0 term's)
(the L0 term passes no gradient to z). Loss = mse + l0_coefficient * mean_tokens sum_j H(z_j - theta_j).

Initial threshold: `initial_threshold` (normalised units) when given. The default (None) with a
`target_l0` sets every theta_j, at each training-mode loss during the first `threshold_init_steps`
training steps (counted by the firing statistics; 20, the trainer's default learning-rate warm-up), to
the (target_l0 * B)-th largest pre-activation of that batch (a BatchTopK selection), and lets the
thresholds learn from there. Adam moves log theta by about lr per step whatever the coefficient, so
from a fixed 0.1 (L0 ~ 1,000 of 2,304 on SmolLM2 layer 6) 64 steps ended at L0 602, and set once at
step 0 the encoder's first steps took L0 from 32 to 20 faster than the thresholds could follow
(docs/saes.md, measured). Without a target, None means 0.1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from saes.base import SAEOutput, SteeredCoefficient
from saes.config import SAEConfig
from saes.registry import register

DEFAULT_THRESHOLD = 0.1


@dataclass
class JumpReLUConfig(SAEConfig):
    architecture: str = "jumprelu"
    l0_coefficient: float = 1.0
    bandwidth: float = 0.05
    initial_threshold: float | None = None  # None: from the batches at L0 = target_l0 (else 0.1); see above
    threshold_init_steps: int = 20
    target_l0: float | None = None  # steer l0_coefficient to this L0 (saes/config.py adapt_scale)
    target_rate: float = 0.05


def _rectangle(u: Tensor) -> Tensor:
    return (u.abs() < 0.5).to(u.dtype)


class _JumpReLUFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: Tensor, theta: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return z * (z > theta)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        z, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_z = grad * (z > theta)
        grad_theta = (-(theta / eps) * _rectangle((z - theta) / eps) * grad).sum(0)
        return grad_z, grad_theta, None


class _StepFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: Tensor, theta: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, None]:
        z, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_theta = (-(1.0 / eps) * _rectangle((z - theta) / eps) * grad).sum(0)
        return None, grad_theta, None


def jumprelu(z: Tensor, theta: Tensor, bandwidth: float) -> Tensor:
    """z * 1[z > theta] with the straight-through gradient for theta."""
    return _JumpReLUFn.apply(z, theta, bandwidth)  # type: ignore[no-any-return]


def step(z: Tensor, theta: Tensor, bandwidth: float) -> Tensor:
    """1[z > theta] with the straight-through gradient for theta."""
    return _StepFn.apply(z, theta, bandwidth)  # type: ignore[no-any-return]


class JumpReLUSAE(SteeredCoefficient):
    """Per-feature learned thresholds, L0 penalty."""

    cfg: JumpReLUConfig
    legacy_buffers = True  # checkpoints from before the steering buffers existed

    def __init__(self, cfg: JumpReLUConfig) -> None:
        super().__init__(cfg)
        start = DEFAULT_THRESHOLD if cfg.initial_threshold is None else cfg.initial_threshold
        self.log_threshold = nn.Parameter(torch.full((cfg.d_sae,), math.log(start)))

    @property
    def threshold(self) -> Tensor:
        return self.log_threshold.exp()

    def activation(self, z: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        return jumprelu(z, self.threshold, self.cfg.bandwidth)

    def loss(self, x: Float[Tensor, "batch d_in"], dead_mask: Tensor | None = None) -> SAEOutput:
        target, from_batch = self.cfg.target_l0, self.cfg.initial_threshold is None
        if self.training and from_batch and target and int(self.stats_steps) < max(1, self.cfg.threshold_init_steps):
            self.threshold_at_l0(x, target)
        return super().loss(x, dead_mask)

    @torch.no_grad()
    def threshold_at_l0(self, x: Float[Tensor, "batch d_in"], l0: float) -> None:
        """Set every threshold to the (l0 * B)-th largest pre-activation of `x`: the batch's L0 becomes ~l0."""
        z = self.pre_acts(x).flatten()
        n = min(z.numel(), max(1, round(l0 * x.shape[0])))
        self.log_threshold.data.fill_(math.log(max(float(z.topk(n).values[-1]), 1e-3)))

    def sparsity_terms(self, x_n, z, f, x_n_hat, dead_mask) -> dict[str, Tensor]:  # type: ignore[no-untyped-def]
        l0 = step(z, self.threshold, self.cfg.bandwidth).sum(-1).mean()
        return {"l0": self.cfg.l0_coefficient * self.sparsity_scale * l0}

    def inference_threshold(self) -> Tensor | None:
        return self.threshold.detach().clone()

    def _load_threshold(self, threshold: Tensor) -> None:
        self.log_threshold.data.copy_(threshold.clamp_min(1e-12).log())

    def _scale_thresholds(self, norms: Tensor) -> None:
        self.log_threshold.data += norms.log()


register("jumprelu", JumpReLUSAE, JumpReLUConfig, "per-feature thresholds by straight-through estimation, L0 penalty")
