"""TopK SAE with the AuxK loss (Gao et al. 2024; docs/methods/saes.md).

f = the k largest entries of ReLU(z) per token (ties broken by torch.topk). AuxK: the features
that have not fired for the trainer's dead window reconstruct the detached residual
e = x_n - x_n_hat from their own top `aux_k` pre-activations (no b_dec), and
aux_coefficient * ||e - e_hat||^2 (sum over dims, mean over tokens; the same units as mse) is
added. With no dead features the term is exactly zero.

Sparse training step (`loss_sparse`, docs/saes.md; the trainer's default on the CPU): the same loss
and gradients as `loss` without any batch x d_sae matrix beyond the one encoder GEMM's output z.
The selection runs on z (no grad); the selected pre-activations get their gradients through
`_SelectedPreacts`: db_enc = index_add of dz, dW_enc = (S^T x_c)^T with S the sparse [batch, d_sae]
matrix of dz (torch.sparse.mm, batch*k*d_in multiply-adds), db_dec += -W_enc db_enc (since
x_c = x_n - b_dec and only sum_b dx_c[b] is needed). The decode is F.embedding_bag over the k rows
of W_dec per token (its backward: a gather-dot for the values and an index_add for W_dec). AuxK
decodes its aux_k rows the same way. Dense GEMMs per step: one (the encoder forward), against
six for the dense step.

On CUDA (`backend` "auto" with CUDA tensors, or "triton" under TRITON_INTERPRET=1 on CPU) the
same step runs through the Triton kernels of saes/kernels (`_loss_sparse_kernels`): the fused
TopK encode (GEMM + selection, z never written) with its sparse backward (dx_c = the sparse
decode of dvalues with W_enc^T, dW_enc = atomic scatter of dvalues x x_c, db_enc = index_add), and
the sparse decode with its backward (dvalues = gather-dot of dout with W_dec rows, dW_dec =
atomic scatter of values x dout). AuxK runs the fused encode on the dead features' columns of
W_enc only (top aux_k among them) and decodes those rows the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from saes.base import SAE, SAEOutput
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


class _SelectedPreacts(torch.autograd.Function):
    """z[b, idx[b, i]] with z = (x_n - b_dec) W_enc + b_enc given (values computed under no_grad)."""

    @staticmethod
    def forward(ctx: Any, x_c: Tensor, b_dec: Tensor, W_enc: Tensor, b_enc: Tensor, idx: Tensor, vals: Tensor) -> Tensor:
        ctx.save_for_backward(x_c, W_enc, idx)
        return vals.clone()

    @staticmethod
    def backward(ctx: Any, dvals: Tensor) -> tuple[Tensor | None, ...]:
        x_c, W_enc, idx = ctx.saved_tensors
        n, k = idx.shape
        d_sae = W_enc.shape[1]
        flat = idx.reshape(-1)
        db_enc = torch.zeros(d_sae, dtype=dvals.dtype, device=dvals.device).index_add_(0, flat, dvals.reshape(-1))
        rows = torch.arange(n, device=idx.device).repeat_interleave(k)
        s_t = torch.sparse_coo_tensor(torch.stack([flat, rows]), dvals.reshape(-1), (d_sae, n), check_invariants=False)
        dW_enc = torch.sparse.mm(s_t, x_c).T
        db_dec = -(W_enc @ db_enc)
        return None, db_dec, dW_enc, db_enc, None, None


def sparse_decode_rows(values: Tensor, indices: Tensor, W_dec: Tensor) -> Tensor:
    """sum_i values[b, i] W_dec[indices[b, i]] per token (embedding_bag; differentiable in values and W_dec)."""
    return torch.nn.functional.embedding_bag(indices, W_dec, per_sample_weights=values, mode="sum")


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

    def loss_sparse(
        self, x: Float[Tensor, "batch d_in"], dead_mask: Bool[Tensor, "*d_sae"] | None = None, backend: str = "auto"
    ) -> SAEOutput:
        """`loss` through (values, indices): same terms and gradients, one dense GEMM (module docstring).

        backend (probes.model.kernels.dispatch): "auto" runs the Triton kernels for CUDA tensors and
        torch (gather / index_add / embedding_bag) elsewhere; "torch" or "triton" force one.
        """
        from probes.model.kernels.dispatch import resolve_backend

        self._check_width(x)
        if resolve_backend(backend, x.device) == "triton":
            return self._loss_sparse_kernels(x, dead_mask)
        x_n = x * self.cfg.norm_scale
        with torch.no_grad():
            x_c = x_n - self.b_dec
            z = torch.addmm(self.b_enc, x_c, self.W_enc)
            top, idx = z.topk(min(self.cfg.k, self.cfg.d_sae), dim=-1, sorted=False)
        pre = _SelectedPreacts.apply(x_c, self.b_dec, self.W_enc, self.b_enc, idx, top)
        values = torch.relu(pre)
        x_n_hat = sparse_decode_rows(values, idx, self.W_dec) + self.b_dec
        terms = {"mse": (x_n_hat - x_n).pow(2).sum(-1).mean()}
        aux = x_n.new_zeros(())
        if dead_mask is not None and bool(dead_mask.any()):
            e = (x_n - x_n_hat).detach()
            with torch.no_grad():
                aux_top, aux_idx = z.masked_fill(~dead_mask[None, :], float("-inf")).topk(
                    min(self.cfg.aux_k, int(dead_mask.sum())), dim=-1, sorted=False)
            aux_pre = _SelectedPreacts.apply(x_c, self.b_dec, self.W_enc, self.b_enc, aux_idx, aux_top)
            e_hat = sparse_decode_rows(torch.relu(aux_pre), aux_idx, self.W_dec)
            aux = (e_hat - e).pow(2).sum(-1).mean()
        terms["auxk"] = self.cfg.aux_coefficient * aux
        total = terms["mse"] + terms["auxk"]
        return SAEOutput(x_hat=x_n_hat / self.cfg.norm_scale, feature_acts=None, loss=total, terms=terms,
                         codes=(values.detach(), idx))

    def _loss_sparse_kernels(self, x: Float[Tensor, "batch d_in"], dead_mask: Bool[Tensor, "*d_sae"] | None) -> SAEOutput:
        """`loss_sparse` through the Triton kernels (fused TopK encode, sparse decode; module docstring)."""
        from saes.kernels import sparse_decode, topk_encode

        x_n = x * self.cfg.norm_scale
        x_c = x_n - self.b_dec
        values, idx = topk_encode(x_c, self.W_enc, self.b_enc, min(self.cfg.k, self.cfg.d_sae), backend="triton")
        x_n_hat = sparse_decode(values, idx, self.W_dec, self.b_dec, backend="triton")
        terms = {"mse": (x_n_hat - x_n).pow(2).sum(-1).mean()}
        aux = x_n.new_zeros(())
        if dead_mask is not None and bool(dead_mask.any()):
            e = (x_n - x_n_hat).detach()
            dead = dead_mask.nonzero().squeeze(1)
            aux_vals, aux_sub = topk_encode(x_c, self.W_enc[:, dead], self.b_enc[dead],
                                            min(self.cfg.aux_k, dead.numel()), backend="triton")
            e_hat = sparse_decode(aux_vals, dead[aux_sub], self.W_dec, None, backend="triton")
            aux = (e_hat - e).pow(2).sum(-1).mean()
        terms["auxk"] = self.cfg.aux_coefficient * aux
        total = terms["mse"] + terms["auxk"]
        return SAEOutput(x_hat=x_n_hat / self.cfg.norm_scale, feature_acts=None, loss=total, terms=terms,
                         codes=(values.detach(), idx))

    def fold_decoder_norm(self) -> None:
        from probes.errors import InputError

        raise InputError("A TopK selection changes under per-feature rescaling; train it with decoder_norm='unit'.")


register("topk", TopKSAE, TopKConfig, "k largest ReLU pre-activations per token, AuxK for dead features")
