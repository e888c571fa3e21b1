"""TopK SAE with the AuxK loss (Gao et al. 2024; spec saes.md).

f = the k largest entries of ReLU(z) per token (ties broken by torch.topk). AuxK: the features
that have not fired for the trainer's dead window reconstruct the detached residual
e = x_n - x_n_hat from their own top `aux_k` pre-activations (no b_dec), and
aux_coefficient * ||e - e_hat||^2 (sum over dims, mean over tokens; the same units as mse) is
added. With no dead features the term is exactly zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from saes.base import SAE
from saes.config import SAEConfig
from saes.registry import register


@dataclass
class TopKConfig(SAEConfig):
    architecture: str = "topk"
    k: int = 32
    aux_k: int = 256
    aux_coefficient: float = 1 / 32


def topk_per_row(z: Float[Tensor, "batch d_sae"], k: int) -> Float[Tensor, "batch d_sae"]:
    """Keep the k largest of ReLU(z) in each row, zero elsewhere."""
    r = torch.relu(z)
    vals, idx = r.topk(min(k, r.shape[-1]), dim=-1)
    return torch.zeros_like(r).scatter(-1, idx, vals)


def auxk_term(
    x_n: Tensor, z: Tensor, x_n_hat: Tensor, W_dec: Tensor, dead_mask: Bool[Tensor, "*d_sae"] | None, aux_k: int
) -> Tensor:
    """||e - e_hat||^2 with e_hat from the dead features' top-aux_k pre-activations (0 if none dead)."""
    if dead_mask is None or not bool(dead_mask.any()):
        return z.new_zeros(())
    n_dead = int(dead_mask.sum())
    e = (x_n - x_n_hat).detach()
    masked = z.masked_fill(~dead_mask[None, :], float("-inf"))
    vals, idx = masked.topk(min(aux_k, n_dead), dim=-1)
    f_aux = torch.zeros_like(z).scatter(-1, idx, torch.relu(vals))
    e_hat = f_aux @ W_dec
    return (e_hat - e).pow(2).sum(-1).mean()


class TopKSAE(SAE):
    """k active features per token."""

    cfg: TopKConfig

    def activation(self, z: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        return topk_per_row(z, self.cfg.k)

    def encode_sparse(
        self, x: Float[Tensor, "batch d_in"], backend: str = "auto"
    ) -> tuple[Float[Tensor, "batch k"], Int[Tensor, "batch k"]]:
        """The k active features per token as (values, indices), without the batch x d_sae matrix.

        Uses the fused Triton encode (saes/kernels, spec kernels.md "SAE encode") on a CUDA device
        and the torch reference elsewhere (backend="auto"); values are ReLU'd as in `activation`.
        """
        from saes.kernels import topk_encode

        self._check_width(x)
        return topk_encode(x * self.cfg.norm_scale - self.b_dec, self.W_enc, self.b_enc, self.cfg.k, backend=backend)

    def decode_sparse(
        self, values: Float[Tensor, "batch k"], indices: Int[Tensor, "batch k"], backend: str = "auto"
    ) -> Float[Tensor, "batch d_in"]:
        """decode() of sparse codes by gathering k decoder rows per token (the sparse decode kernel on CUDA)."""
        from saes.kernels import sparse_decode

        return sparse_decode(values, indices, self.W_dec, self.b_dec, backend=backend) / self.cfg.norm_scale

    def encode(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_sae"]:
        """Dense codes; on CUDA the selection is fused into the encoder GEMM (no N x d_sae pre-activations)."""
        if not x.is_cuda:
            return super().encode(x)
        values, indices = self.encode_sparse(x)
        return torch.zeros(x.shape[0], self.cfg.d_sae, dtype=values.dtype, device=x.device).scatter(-1, indices, values)

    def sparsity_terms(self, x_n, z, f, x_n_hat, dead_mask) -> dict[str, Tensor]:  # type: ignore[no-untyped-def]
        aux = auxk_term(x_n, z, x_n_hat, self.W_dec, dead_mask, self.cfg.aux_k)
        return {"auxk": self.cfg.aux_coefficient * aux}

    def fold_decoder_norm(self) -> None:
        from probes.errors import InputError

        raise InputError("A TopK selection changes under per-feature rescaling; train it with decoder_norm='unit'.")


register("topk", TopKSAE, TopKConfig, "k largest ReLU pre-activations per token, AuxK for dead features")
