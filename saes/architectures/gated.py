"""Gated SAE (Rajamanoharan et al. 2024, "Improving Dictionary Learning with Gated Sparse Autoencoders";
docs/methods/saes.md, "Gated SAE"; docs/saes.md).

Which features fire and how strongly they fire are two paths through one shared encoder matrix W_enc.
With x_n = x * s (the norm scale, saes/base.py) and x_c = x_n - b_dec:
    pi_gate = x_c W_enc + b_gate                        the gate path        (`pre_acts`)
    pi_mag  = x_c (W_enc * exp(r_mag)) + b_mag          the magnitude path   (`magnitude_pre_acts`)
    f       = 1[pi_gate > 0] * ReLU(pi_mag)
    x_hat   = (f W_dec + b_dec) / s
exp(r_mag) rescales each column of W_enc, so pi_mag is computed as (x_c W_enc) * exp(r_mag) + b_mag: one
encoder GEMM feeds both paths (the same numbers up to float rounding).

The Heaviside gate passes no gradient, so the gate path learns from two terms of its own. Loss (sum over
dims, mean over tokens, in the normalised space like every architecture here):
    mse = ||x_n - (f W_dec + b_dec)||^2
    l1  = lambda * sum_j ReLU(pi_gate)_j sg(||W_dec[j]||)
    aux = ||x_n - (ReLU(pi_gate) sg(W_dec) + sg(b_dec))||^2          (sg: stop-gradient, a frozen decoder copy)
Where each term's gradient goes: mse reaches W_enc (magnitude path), r_mag, b_mag, W_dec and b_dec, never
b_gate; l1 and aux reach W_enc, b_gate and b_dec through the gate path only (b_dec through x_c, as in the
paper's pseudo-code: the frozen copy is the decoder's), never W_dec, r_mag or b_mag. The row norms are 1
under decoder_norm "unit" (the paper's setting); under "free" they weight the L1 term as values only, since
the decoder is frozen in the auxiliary term too (the paper's authors, on combining the Gated loss with the
norm-weighted penalty: freeze the decoder in both places or in neither). SAELens 6.54's GatedTrainingSAE
uses the live decoder in both; we follow the paper.

Defaults (docs/saes.md): `l1_coefficient` 1.0 (SAELens 6's GatedTrainingSAEConfig; the paper sweeps lambda);
b_gate = b_mag = r_mag = 0 at initialisation (the paper and SAELens 6's `_init_weights_gated`), W_enc =
W_dec^T with unit rows (saes/base.py); decoder_norm "unit" (the paper keeps decoder rows at unit norm; with
"free" the norms weight the L1 term, as SAELens 6 writes it, without a gradient). With `target_l0` the
coefficient is steered to that L0 as Standard's is (saes/config.py adapt_scale; `glasshouse sae train` sets
it to --k unless --sparsity is given).

Parameters as SAELens 6 names them for its "gated" architecture: W_enc, W_dec, b_dec, b_gate, b_mag,
r_mag, and no b_enc, so the SAELens 6 folder round-trips (saes/saelens_io.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from saes.base import SAEOutput, SteeredCoefficient
from saes.config import SAEConfig
from saes.registry import register

GATED_TENSORS = ("W_enc", "W_dec", "b_dec", "b_gate", "b_mag", "r_mag")


@dataclass
class GatedConfig(SAEConfig):
    """Gated SAE settings: lambda (`l1_coefficient`, 1.0 as in SAELens 6) on ReLU(pi_gate), unit decoder rows."""

    architecture: str = "gated"
    decoder_norm: str = "unit"
    l1_coefficient: float = 1.0
    target_l0: float | None = None  # steer l1_coefficient to this L0 (saes/config.py adapt_scale)
    target_rate: float = 0.05


class GatedSAE(SteeredCoefficient):
    """Gate path decides which features fire, magnitude path (shared W_enc, rescaled by exp(r_mag)) how much."""

    cfg: GatedConfig

    def __init__(self, cfg: GatedConfig) -> None:
        super().__init__(cfg)
        del self.b_enc  # the two paths have their own biases (SAELens 6: b_enc is None for "gated")
        self.b_gate = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_mag = nn.Parameter(torch.zeros(cfg.d_sae))
        self.r_mag = nn.Parameter(torch.zeros(cfg.d_sae))

    # --- the two paths ---------------------------------------------------------------------
    def paths(self, x: Float[Tensor, "batch d_in"]) -> tuple[Float[Tensor, "batch d_sae"], Float[Tensor, "batch d_sae"]]:
        """(pi_gate, pi_mag) of raw activations x, from one encoder GEMM (module docstring)."""
        self._check_width(x)
        h = (x * self.cfg.norm_scale - self.b_dec) @ self.W_enc
        return h + self.b_gate, h * self.r_mag.exp() + self.b_mag

    def pre_acts(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_sae"]:
        """The gate pre-activations pi_gate = (x * s - b_dec) W_enc + b_gate (a feature fires only where > 0)."""
        self._check_width(x)
        return (x * self.cfg.norm_scale - self.b_dec) @ self.W_enc + self.b_gate

    def magnitude_pre_acts(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_sae"]:
        """The magnitude pre-activations pi_mag = (x * s - b_dec) (W_enc * exp(r_mag)) + b_mag."""
        return self.paths(x)[1]

    @staticmethod
    def gate(pi_gate: Float[Tensor, "batch d_sae"], pi_mag: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        """f = 1[pi_gate > 0] * ReLU(pi_mag) (the indicator passes no gradient)."""
        return (pi_gate > 0).to(pi_mag.dtype) * torch.relu(pi_mag)

    def activation(self, z: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        raise NotImplementedError("The gated rule needs both pre-activations (gate and magnitude): use encode(x), "
                                  "or gate(pi_gate, pi_mag) with paths(x).")

    def encode(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_sae"]:
        return self.gate(*self.paths(x))

    # --- the loss ------------------------------------------------------------------------
    def loss(self, x: Float[Tensor, "batch d_in"], dead_mask: Bool[Tensor, "*d_sae"] | None = None) -> SAEOutput:
        """mse + l1 + aux (module docstring); `dead_mask` is not used (no resampling term)."""
        x_n = x * self.cfg.norm_scale
        pi_gate, pi_mag = self.paths(x)
        f = self.gate(pi_gate, pi_mag)
        x_n_hat = f @ self.W_dec + self.b_dec
        gate_acts = torch.relu(pi_gate)
        l1 = (gate_acts * self.W_dec.detach().norm(dim=1)).sum(-1).mean()
        x_n_frozen = gate_acts @ self.W_dec.detach() + self.b_dec.detach()
        terms = {"mse": (x_n_hat - x_n).pow(2).sum(-1).mean(),
                 "l1": self.cfg.l1_coefficient * self.sparsity_scale * l1,
                 "aux": (x_n_frozen - x_n).pow(2).sum(-1).mean()}
        total = torch.stack(list(terms.values())).sum()
        return SAEOutput(x_hat=x_n_hat / self.cfg.norm_scale, feature_acts=f, loss=total, terms=terms)

    # --- decoder norms, weights --------------------------------------------------------------
    @torch.no_grad()
    def fold_decoder_norm(self) -> None:
        """W_dec[j] -> W_dec[j] / n_j, W_enc[:, j], b_gate[j], b_mag[j] -> * n_j: both paths scale by n_j
        (the gate's sign is kept, r_mag is unchanged), f_j -> f_j n_j, and x_hat is unchanged."""
        norms = self.W_dec.data.norm(dim=1).clamp_min(1e-8)
        self.W_enc.data *= norms[None, :]
        self.b_gate.data *= norms
        self.b_mag.data *= norms
        self.W_dec.data /= norms[:, None]

    def weights(self) -> dict[str, Tensor]:
        """The tensors of SAELens 6's gated layout: W_enc, W_dec, b_dec, b_gate, b_mag, r_mag."""
        return {name: getattr(self, name).detach() for name in GATED_TENSORS}

    def load_weights(self, tensors: dict[str, Tensor]) -> None:
        with torch.no_grad():
            for name in GATED_TENSORS:
                getattr(self, name).data.copy_(tensors[name])


register("gated", GatedSAE, GatedConfig, "gate path (which features fire) and magnitude path sharing W_enc; "
         "L1 on the gate, auxiliary reconstruction through a frozen decoder")
