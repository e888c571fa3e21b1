"""Transcoders: a sparse layer that reads one hook and predicts another (Dunefsky et al. 2024; Ge et al. 2024;
docs/methods/saes.md, "Transcoders").

x in R^d_in at `hook_name` (e.g. the MLP's input), y in R^d_out at `hook_name_out` (the MLP's output):
    z     = (x * s) W_enc + b_enc                  no b_dec subtracted: b_dec lives in y's space
    f     = rule(z)                                TopK (k per token, AuxK) or JumpReLU (thresholds, L0)
    y_hat = (f W_dec + b_dec + [skip] (x * s) W_skip^T) / s_out
with s, s_out each set so that E||x s|| = sqrt(d_in) and E||y s_out|| = sqrt(d_out) on the training rows,
and W_skip [d_out, d_in] (SAELens's skip transcoder layout) starting at zero. The loss is the SAE loss with
y as the target: mse = mean over tokens of ||y s_out - y_hat s_out||^2 plus the rule's own terms (AuxK
reconstructs the residual in y's space from the dead features' decoder rows).

Training rows hold x and y side by side, [x | y] of width d_in + d_out, so every activation source and the
trainer carry them as they carry an SAE's rows (saes.multi.window_rows collects both hooks in one pass;
saes.pipeline.train_sae with a spec's hook_name_out). `split(rows)` takes them apart; `encode` and `forward`
take x alone (or rows, whose first d_in columns are read). TopK transcoders train with the dense step
(the sparse step assumes a target equal to the input).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn

from probes.errors import InputError
from saes.architectures.jumprelu import JumpReLUConfig, JumpReLUSAE
from saes.architectures.topk import TopKConfig, TopKSAE
from saes.base import SAE
from saes.registry import register


@dataclass
class TranscoderFields:
    """What a transcoder adds to its rule's config (SAELens names where SAELens has the field)."""

    d_out: int = 576
    hook_name_out: str = "blocks.6.hook_mlp_out"
    skip: bool = False
    out_norm_scale: float = 1.0

    @property
    def row_width(self) -> int:
        return self.d_in + self.d_out  # type: ignore[attr-defined]

    @property
    def hooks(self) -> list[str]:
        return [self.hook_name, self.hook_name_out]  # type: ignore[attr-defined]

    def fit_normalization(self, sample: Tensor) -> None:
        """norm_scale from the input columns, out_norm_scale from the target columns."""
        if self.normalization == "expected_norm":  # type: ignore[attr-defined]
            from saes.activation_store import estimate_norm_scale

            self.norm_scale = estimate_norm_scale(sample[:, : self.d_in])  # type: ignore[attr-defined]
            self.out_norm_scale = estimate_norm_scale(sample[:, self.d_in :])  # type: ignore[attr-defined]


@dataclass
class TopKTranscoderConfig(TranscoderFields, TopKConfig):
    architecture: str = "topk_transcoder"
    hook_name: str = "blocks.6.mlp.hook_in"


@dataclass
class JumpReLUTranscoderConfig(TranscoderFields, JumpReLUConfig):
    architecture: str = "jumprelu_transcoder"
    hook_name: str = "blocks.6.mlp.hook_in"


class Transcoder(SAE):
    """The transcoder part, placed before its rule's SAE class (TopKSAE, JumpReLUSAE) in the MRO."""

    cfg: TopKTranscoderConfig | JumpReLUTranscoderConfig

    def __init__(self, cfg: TopKTranscoderConfig | JumpReLUTranscoderConfig) -> None:
        super().__init__(cfg)
        if cfg.d_out < 1:
            raise InputError(f"d_out must be positive (got {cfg.d_out}).")
        gen = torch.Generator().manual_seed(cfg.seed)
        w_dec = torch.randn(cfg.d_sae, cfg.d_out, generator=gen)
        w_enc = torch.randn(cfg.d_in, cfg.d_sae, generator=gen)
        self.W_dec = nn.Parameter(w_dec / w_dec.norm(dim=1, keepdim=True))
        self.W_enc = nn.Parameter(w_enc / w_enc.norm(dim=0, keepdim=True))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_out))
        self.W_skip = nn.Parameter(torch.zeros(cfg.d_out, cfg.d_in)) if cfg.skip else None

    def split(self, rows: Float[Tensor, "batch width"]) -> tuple[Tensor, Tensor]:
        if rows.shape[-1] != self.cfg.row_width:
            raise InputError(f"A transcoder's training rows hold its input and its target side by side: width "
                             f"{self.cfg.d_in} + {self.cfg.d_out} = {self.cfg.row_width}, got {rows.shape[-1]}.")
        return rows[..., : self.cfg.d_in], rows[..., self.cfg.d_in :]

    @property
    def target_scale(self) -> float:
        return self.cfg.out_norm_scale

    def _input(self, x: Tensor) -> Tensor:
        return x[..., : self.cfg.d_in] if x.shape[-1] == self.cfg.row_width else x

    def pre_acts(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_sae"]:
        """z = (x * s) W_enc + b_enc (rows [x | y] are read for their x)."""
        x = self._input(x)
        self._check_width(x)
        return (x * self.cfg.norm_scale) @ self.W_enc + self.b_enc

    def encode(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_sae"]:
        return self.activation(self.pre_acts(x))

    def decode_normalised(self, f: Float[Tensor, "batch d_sae"], x: Float[Tensor, "batch d_in"]
                          ) -> Float[Tensor, "batch d_out"]:
        out = f @ self.W_dec + self.b_dec
        if self.W_skip is not None:
            out = out + (self._input(x) * self.cfg.norm_scale) @ self.W_skip.T
        return out

    def decode(self, f: Float[Tensor, "batch d_sae"], x: Tensor | None = None) -> Float[Tensor, "batch d_out"]:
        """y_hat in raw units; a skip transcoder needs its input x too."""
        if self.W_skip is not None and x is None:
            raise InputError("A skip transcoder's output needs its input: call decode(f, x) or forward(x).")
        if x is None:
            return (f @ self.W_dec + self.b_dec) / self.cfg.out_norm_scale
        return self.decode_normalised(f, x) / self.cfg.out_norm_scale

    def forward(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_out"]:
        """y_hat = decode(encode(x), x); any leading shape is flattened and restored."""
        lead = x.shape[:-1]
        flat = self._input(x.reshape(-1, x.shape[-1]))
        return self.decode(self.encode(flat), flat).reshape(*lead, self.cfg.d_out)

    def weights(self) -> dict[str, Tensor]:
        out = super().weights()
        if self.W_skip is not None:
            out["W_skip"] = self.W_skip.detach()
        return out

    def load_weights(self, tensors: dict[str, Tensor]) -> None:
        super().load_weights(tensors)
        if self.W_skip is not None:
            with torch.no_grad():
                self.W_skip.data.copy_(tensors["W_skip"])


class TopKTranscoder(Transcoder, TopKSAE):  # type: ignore[misc]  # cfg: a config of both bases' kinds
    """k active features per token; the dense training step."""

    cfg: TopKTranscoderConfig

    loss_sparse = None  # type: ignore[assignment]  # the trainer takes the dense loss


class JumpReLUTranscoder(Transcoder, JumpReLUSAE):  # type: ignore[misc]  # cfg: a config of both bases' kinds
    """Per-feature thresholds (straight-through), L0 penalty."""

    cfg: JumpReLUTranscoderConfig


register("topk_transcoder", TopKTranscoder, TopKTranscoderConfig,
         "transcoder (input hook -> output hook), k features per token, optional skip connection")
register("jumprelu_transcoder", JumpReLUTranscoder, JumpReLUTranscoderConfig,
         "transcoder (input hook -> output hook), JumpReLU thresholds, optional skip connection")
