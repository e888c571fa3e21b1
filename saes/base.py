"""The one SAE interface every architecture implements (docs/methods/saes.md, "Architectures").

x in R^d_in (raw activation at a hook), F = d_sae features:
    x_n   = x * s                          (s = cfg.norm_scale, recorded with the SAE)
    z     = (x_n - b_dec) W_enc + b_enc     pre-activations              `pre_acts`
    f     = rule(z)                         the architecture's sparsity  `activation`
    x_hat = (f W_dec + b_dec) / s           reconstruction, raw units    `decode`
Losses are computed in the normalised space x_n: mse = mean over tokens of sum over dims of
(x_n_hat - x_n)^2, plus each architecture's own terms (`sparsity_terms`).

Batch-level rules (BatchTopK, Matryoshka, Feature Choice, Mutual Choice) select over the batch while the
module is in training mode (`sae.train()`) and switch to learned thresholds in `sae.eval()`.

Decoder norms (explicit): with cfg.decoder_norm == "unit" the trainer calls
`remove_parallel_decoder_grad()` before each optimizer step and `normalize_decoder()` after it,
so every W_dec row has unit norm; with "free" the rows are not constrained and the standard
architecture puts ||W_dec[j]|| into its L1 term. `fold_decoder_norm()` rescales a free SAE to
unit decoder rows without changing what it computes (ReLU, JumpReLU and Gated only; a top-k selection
is not invariant to per-feature scaling).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from probes.errors import InputError
from saes.config import SAEConfig, adapt_scale, default_missing_buffers


@dataclass
class SAEOutput:
    """What `SAE.loss` returns: the reconstruction (raw units), the features, and the loss terms."""

    x_hat: Float[Tensor, "batch d_in"]
    feature_acts: Float[Tensor, "batch d_sae"] | None
    loss: Float[Tensor, ""]
    terms: dict[str, Tensor] = field(default_factory=dict)
    # The sparse step (TopK `loss_sparse`) gives the codes as (values, indices) [batch, k] and no dense matrix.
    codes: tuple[Tensor, Tensor] | None = None

    def l0(self) -> float:
        """Mean number of active features per token in this batch."""
        if self.codes is not None:
            return float((self.codes[0] > 0).sum(-1).float().mean())
        assert self.feature_acts is not None
        return float((self.feature_acts > 0).sum(-1).float().mean())


class SAE(nn.Module):
    """Base class: parameters, encode/decode/forward, the MSE term, decoder-norm handling, firing stats."""

    cfg: SAEConfig
    tokens_since_fired: Tensor
    density_ema: Tensor
    stats_steps: Tensor

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        gen = torch.Generator().manual_seed(cfg.seed)
        w_dec = torch.randn(cfg.d_sae, cfg.d_in, generator=gen)
        w_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.T.clone().contiguous())
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))
        # Firing statistics (training state, saved in checkpoints, not in the SAELens export).
        self.register_buffer("tokens_since_fired", torch.zeros(cfg.d_sae, dtype=torch.long))
        self.register_buffer("density_ema", torch.zeros(cfg.d_sae))
        self.register_buffer("stats_steps", torch.zeros((), dtype=torch.long))

    # --- the interface ---------------------------------------------------------------------
    def pre_acts(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_sae"]:
        """z = (x * s - b_dec) W_enc + b_enc (plain torch; saes/kernels/ may provide a faster one)."""
        self._check_width(x)
        return (x * self.cfg.norm_scale - self.b_dec) @ self.W_enc + self.b_enc

    def activation(self, z: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        """The architecture's sparsity rule, applied to pre-activations."""
        raise NotImplementedError

    def encode(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_sae"]:
        """Feature activations f of raw activations x."""
        return self.activation(self.pre_acts(x))

    def decode(self, f: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_in"]:
        """Reconstruction in raw units: (f W_dec + b_dec) / s."""
        return (f @ self.W_dec + self.b_dec) / self.cfg.norm_scale

    def forward(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_in"]:
        """x_hat = decode(encode(x)); any leading shape is flattened and restored."""
        lead = x.shape[:-1]
        flat = x.reshape(-1, x.shape[-1])
        return self.decode(self.encode(flat)).reshape(*lead, self.cfg.d_in)

    def loss(self, x: Float[Tensor, "batch d_in"], dead_mask: Bool[Tensor, "*d_sae"] | None = None) -> SAEOutput:
        """The training loss: mse (normalised space) plus the architecture's terms. `x` is a training row: the
        activation itself, or for a transcoder the input and the target side by side (`split`)."""
        x_in, target = self.split(x)
        self._check_width(x_in)
        t_n = target * self.target_scale
        z = self.pre_acts(x_in)
        f = self.activation(z)
        t_n_hat = self.decode_normalised(f, x_in)
        terms = {"mse": (t_n_hat - t_n).pow(2).sum(-1).mean()}
        terms.update(self.sparsity_terms(t_n, z, f, t_n_hat, dead_mask))
        total = torch.stack(list(terms.values())).sum()
        return SAEOutput(x_hat=t_n_hat / self.target_scale, feature_acts=f, loss=total, terms=terms)

    # --- what a training row holds (an SAE reconstructs its input; a transcoder predicts another hook) ----
    def split(self, rows: Float[Tensor, "batch width"]) -> tuple[Tensor, Tensor]:
        """(the encoder's input, the reconstruction target) of training rows; both `rows` for an SAE."""
        return rows, rows

    @property
    def target_scale(self) -> float:
        """The factor the target is multiplied by before the loss (an SAE's norm_scale)."""
        return self.cfg.norm_scale

    def decode_normalised(self, f: Float[Tensor, "batch d_sae"], x: Float[Tensor, "batch d_in"]
                          ) -> Float[Tensor, "batch d_out"]:
        """The reconstruction in the normalised space, f W_dec + b_dec (x: the raw input, for a skip path)."""
        return f @ self.W_dec + self.b_dec

    @torch.no_grad()
    def init_decoder_bias(self, sample: Float[Tensor, "n width"]) -> None:
        """b_dec = the mean normalised target over a sample of training rows (the trainer's start)."""
        self.b_dec.copy_((self.split(sample)[1] * self.target_scale).mean(0))

    def sparsity_terms(
        self,
        x_n: Float[Tensor, "batch d_in"],
        z: Float[Tensor, "batch d_sae"],
        f: Float[Tensor, "batch d_sae"],
        x_n_hat: Float[Tensor, "batch d_in"],
        dead_mask: Bool[Tensor, "*d_sae"] | None,
    ) -> dict[str, Tensor]:
        """Architecture-specific loss terms (L1, L0, AuxK, ...), already weighted."""
        return {}

    # --- decoder norms ---------------------------------------------------------------------
    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Set every W_dec row to unit norm (only when cfg.decoder_norm == "unit")."""
        if self.cfg.decoder_norm == "unit":
            self.W_dec.data /= self.W_dec.data.norm(dim=1, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def remove_parallel_decoder_grad(self) -> None:
        """Project out the gradient component parallel to each (unit) decoder row."""
        if self.cfg.decoder_norm != "unit" or self.W_dec.grad is None:
            return
        rows = self.W_dec.data / self.W_dec.data.norm(dim=1, keepdim=True).clamp_min(1e-8)
        parallel = (self.W_dec.grad * rows).sum(dim=1, keepdim=True)
        self.W_dec.grad -= parallel * rows

    @torch.no_grad()
    def fold_decoder_norm(self) -> None:
        """Move the decoder row norms into the encoder (f_j -> f_j * n_j, W_dec[j] -> W_dec[j] / n_j).

        Leaves x_hat unchanged for rules that commute with positive per-feature scaling
        (ReLU; JumpReLU with its threshold scaled too). Subclasses that cannot fold raise.
        """
        norms = self.W_dec.data.norm(dim=1).clamp_min(1e-8)
        self.W_enc.data *= norms[None, :]
        self.b_enc.data *= norms
        self.W_dec.data /= norms[:, None]
        self._scale_thresholds(norms)

    def _scale_thresholds(self, norms: Tensor) -> None:
        return None

    # --- firing statistics ---------------------------------------------------------------
    @torch.no_grad()
    def update_stats(self, f: Float[Tensor, "batch d_sae"] | SAEOutput, momentum: float = 0.99) -> None:
        """Count tokens since each feature last fired, and an EMA of each feature's firing density.

        Takes the dense codes, or a loss output (dense or sparse codes: the counts are the same).
        """
        if isinstance(f, SAEOutput):
            if f.codes is None:
                assert f.feature_acts is not None
                return self.update_stats(f.feature_acts.detach(), momentum)
            values, indices = f.codes
            counts = torch.bincount(indices[values > 0], minlength=self.cfg.d_sae).float()
            n_tokens = values.shape[0]
        else:
            counts = (f > 0).float().sum(dim=0)
            n_tokens = f.shape[0]
        fired = counts > 0
        self.tokens_since_fired += n_tokens
        self.tokens_since_fired[fired] = 0
        density = counts / n_tokens
        if int(self.stats_steps) == 0:
            self.density_ema.copy_(density)
        else:
            self.density_ema.mul_(momentum).add_(density, alpha=1 - momentum)
        self.stats_steps += 1

    @torch.no_grad()
    def adapt_sparsity(self, l0: float) -> None:
        """After a training step with batch L0 `l0`: steer the sparsity coefficient to a target L0 (no-op here)."""
        return None

    def dead_mask(self, window_tokens: int) -> Bool[Tensor, "*d_sae"]:
        """Features that have not fired on any of the last `window_tokens` training tokens."""
        return self.tokens_since_fired >= window_tokens

    # --- helpers -------------------------------------------------------------------------
    def _check_width(self, x: Tensor) -> None:
        if x.shape[-1] != self.cfg.d_in:
            raise InputError(
                f"The SAE takes activations of width d_in={self.cfg.d_in} but got width {x.shape[-1]}. "
                f"Use an SAE trained at a hook of that width (this one reads {self.cfg.hook_name})."
            )

    def weights(self) -> dict[str, Tensor]:
        """The tensors of the SAELens layout (W_enc, b_enc, W_dec, b_dec, and threshold where used)."""
        out = {name: getattr(self, name).detach() for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
        threshold = self.inference_threshold()
        if threshold is not None:
            out["threshold"] = threshold.detach()
        return out

    def inference_threshold(self) -> Tensor | None:
        """A per-feature threshold used at inference (JumpReLU-style), or None."""
        return None

    def calibrate_thresholds(self, batches: list[Float[Tensor, "batch d_in"]]) -> None:
        """Re-estimate a batch-level rule's inference thresholds from the final weights (no-op here).

        The training-time EMA (momentum 0.99) still carries the thresholds of early weights after a
        short run; the trainer calls this once at the end (TrainConfig.calibrate_batches).
        """
        return None

    def load_weights(self, tensors: dict[str, Tensor]) -> None:
        """Load SAELens-layout tensors (shapes checked by the caller)."""
        with torch.no_grad():
            for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
                getattr(self, name).data.copy_(tensors[name])
            if "threshold" in tensors:
                self._load_threshold(tensors["threshold"])

    def _load_threshold(self, threshold: Tensor) -> None:
        return None


class SteeredCoefficient(SAE):
    """An SAE whose sparsity coefficient is steered to `cfg.target_l0` (Standard, JumpReLU, Gated): the buffers
    `sparsity_scale` (multiplies the coefficient, starts at 1) and `l0_trace` (smoothed log L0, steps), both in
    checkpoints, moved after each step by saes/config.py adapt_scale. `legacy_buffers`: the architecture had
    checkpoints before the buffers existed, and those load with the buffers' starting values."""

    sparsity_scale: Tensor
    l0_trace: Tensor
    legacy_buffers = False

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)
        self.register_buffer("sparsity_scale", torch.ones(()))
        self.register_buffer("l0_trace", torch.zeros(2))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.legacy_buffers:
            default_missing_buffers(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def adapt_sparsity(self, l0: float) -> None:
        adapt_scale(self.sparsity_scale, l0, self.cfg.target_l0, self.cfg.target_rate,  # type: ignore[attr-defined]
                    self.l0_trace)

