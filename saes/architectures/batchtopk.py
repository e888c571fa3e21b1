"""BatchTopK SAE (Bussmann et al. 2024; docs/methods/saes.md).

Training (`sae.train()`): keep the k*B largest entries of ReLU(z) over the whole batch of B
tokens (so tokens get a varying number of features, k on average). Each training batch updates
an inference threshold theta: an exponential moving average (momentum `threshold_momentum`,
first batch taken as is) of the smallest kept positive activation; at the end of training the
trainer re-estimates theta from the final weights (`calibrate_thresholds`: the mean over a few
batches of the smallest kept activation), since after a short run the EMA still remembers the
thresholds of early weights (64 steps left it at twice the calibrated value: held-out L0 15, not 32). Inference (`sae.eval()`):
f = z * 1[z > theta], a JumpReLU with one threshold shared by all features; that threshold is
what the SAELens export writes (expanded to d_sae). AuxK for dead features as in TopK.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from saes.architectures.topk import auxk_term
from saes.base import SAE
from saes.config import SAEConfig
from saes.registry import register


@dataclass
class BatchTopKConfig(SAEConfig):
    architecture: str = "batchtopk"
    k: int = 32
    aux_k: int = 256
    aux_coefficient: float = 1 / 32
    threshold_momentum: float = 0.99


def topk_per_batch(z: Float[Tensor, "batch d_sae"], k: int) -> tuple[Tensor, Tensor]:
    """Keep the k*B largest entries of ReLU(z) over the whole batch; also return the smallest kept."""
    r = torch.relu(z)
    flat = r.reshape(-1)
    n_keep = min(k * r.shape[0], flat.numel())
    vals, idx = flat.topk(n_keep)
    out = torch.zeros_like(flat).scatter(0, idx, vals).reshape(r.shape)
    positive = vals[vals > 0]
    smallest = positive.min() if positive.numel() else r.new_zeros(())
    return out, smallest.detach()


class BatchTopKSAE(SAE):
    """k*B active entries per batch in training; a learned global threshold at inference."""

    cfg: BatchTopKConfig
    threshold: Tensor
    threshold_set: Tensor

    def __init__(self, cfg: BatchTopKConfig) -> None:
        super().__init__(cfg)
        self.register_buffer("threshold", torch.zeros(()))
        self.register_buffer("threshold_set", torch.zeros((), dtype=torch.bool))
        self._last_selection_value: Tensor | None = None

    def activation(self, z: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        if not self.training:
            return z * (z > self.threshold)
        f, smallest = topk_per_batch(z, self.cfg.k)
        self._last_selection_value = smallest
        self._update_threshold(smallest)
        return f

    @torch.no_grad()
    def _update_threshold(self, smallest: Tensor) -> None:
        if not bool(self.threshold_set):
            self.threshold.copy_(smallest)
            self.threshold_set.fill_(True)
        else:
            m = self.cfg.threshold_momentum
            self.threshold.mul_(m).add_(smallest, alpha=1 - m)

    def sparsity_terms(self, x_n, z, f, x_n_hat, dead_mask) -> dict[str, Tensor]:  # type: ignore[no-untyped-def]
        aux = auxk_term(x_n, z, x_n_hat, self.W_dec, dead_mask, self.cfg.aux_k)
        return {"auxk": self.cfg.aux_coefficient * aux}

    def inference_threshold(self) -> Tensor | None:
        return self.threshold.expand(self.cfg.d_sae).clone()

    @torch.no_grad()
    def calibrate_thresholds(self, batches: list[Float[Tensor, "batch d_in"]]) -> None:
        """theta = mean over `batches` of the smallest kept activation of the k*B selection (final weights)."""
        if not batches:
            return
        values = [topk_per_batch(self.pre_acts(x), self.cfg.k)[1] for x in batches]
        self.threshold.copy_(torch.stack(values).mean())
        self.threshold_set.fill_(True)

    def _load_threshold(self, threshold: Tensor) -> None:
        self.threshold.fill_(float(threshold.float().mean()))
        self.threshold_set.fill_(True)

    def fold_decoder_norm(self) -> None:
        from probes.errors import InputError

        raise InputError("A BatchTopK selection changes under per-feature rescaling; use decoder_norm='unit'.")


register("batchtopk", BatchTopKSAE, BatchTopKConfig, "k*B largest entries per batch; global threshold at inference")
