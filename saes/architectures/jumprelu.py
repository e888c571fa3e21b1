"""JumpReLU SAE (Rajamanoharan et al. 2024; docs/methods/saes.md).

f = z * 1[z > theta_j], theta_j = exp(log_threshold_j) > 0. The thresholds get gradients through
straight-through estimators with a rectangle kernel K(u) = 1[|u| < 1/2] of width `bandwidth` eps:
    d f / d theta_j     = -(theta_j / eps) K((z - theta_j) / eps)      (JumpReLU's pseudo-derivative)
    d H(z-theta) / d theta_j = -(1 / eps) K((z - theta_j) / eps)       (the L0 term's)
(the L0 term passes no gradient to z). Loss = mse + l0_coefficient * mean_tokens sum_j H(z_j - theta_j).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from saes.base import SAE
from saes.config import SAEConfig, adapt_scale, default_missing_scale
from saes.registry import register


@dataclass
class JumpReLUConfig(SAEConfig):
    architecture: str = "jumprelu"
    l0_coefficient: float = 1.0
    bandwidth: float = 0.05
    initial_threshold: float = 0.1
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


class JumpReLUSAE(SAE):
    """Per-feature learned thresholds, L0 penalty."""

    cfg: JumpReLUConfig
    sparsity_scale: Tensor

    def __init__(self, cfg: JumpReLUConfig) -> None:
        super().__init__(cfg)
        self.log_threshold = nn.Parameter(torch.full((cfg.d_sae,), math.log(cfg.initial_threshold)))
        self.register_buffer("sparsity_scale", torch.ones(()))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        default_missing_scale(state_dict, prefix)  # checkpoints from before the buffer existed
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def adapt_sparsity(self, l0: float) -> None:
        adapt_scale(self.sparsity_scale, l0, self.cfg.target_l0, self.cfg.target_rate)

    @property
    def threshold(self) -> Tensor:
        return self.log_threshold.exp()

    def activation(self, z: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        return jumprelu(z, self.threshold, self.cfg.bandwidth)

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
