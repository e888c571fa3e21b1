"""Matryoshka BatchTopK SAE (Bussmann et al. 2025; Nabeshima 2024; docs/methods/saes.md).

A BatchTopK SAE (batchtopk.py: the k*B selection over the whole dictionary, the inference threshold
EMA, `calibrate_thresholds`, AuxK) whose features are ordered into nested prefixes
m_1 < m_2 < ... < m_P = d_sae. Every prefix must reconstruct the input on its own:

    x_n_hat_m = f[:, :m] W_dec[:m] + b_dec
    loss      = sum_{m in prefixes} mean_tokens ||x_n - x_n_hat_m||^2  +  aux_coefficient * AuxK

(normalised space, sum over dims, mean over tokens, as `SAE.loss`). The prefix terms are **summed**,
not averaged, as SAELens 6's MatryoshkaBatchTopKTrainingSAE does (its outer MSE plus one
`inner_mse_loss_{width}` per inner width) and as the paper writes it. Term names: "mse" is the whole
dictionary's (so it means what it means for every other architecture), "mse_prefix_{m}" each inner
prefix's, "auxk" AuxK. The reconstructions are built group by group (b_dec + f[:, :m_1] W_dec[:m_1], then
+ f[:, m_1:m_2] W_dec[m_1:m_2], ...), so all P of them cost one decode; the features of the first prefix
appear in every term and get gradient from all P, those past m_{P-1} only from the last.

The selection is BatchTopK's over all d_sae features (not per prefix); with prefixes (d_sae,) the SAE is
exactly BatchTopK. AuxK is BatchTopK's: the dead features reconstruct the residual of the whole
dictionary (SAELens's default use_matryoshka_aux_loss=False). Inference (`sae.eval()`): the learned
global threshold, f = z * 1[z > theta]; the SAELens export writes it as a "jumprelu" SAE, as for
BatchTopK (and as SAELens saves a Matryoshka BatchTopK SAE for inference); the prefixes are kept in
cfg.json for our own round trip. A SAELens 6 training folder (architecture "matryoshka_batchtopk",
`matryoshka_widths`, `topk_threshold`) is read too (saes/saelens_io.py).

Defaults. SAELens 6 has no default widths (`matryoshka_widths` must be given: empty is an error, a last
width below d_sae gets d_sae appended with a warning, widths must strictly increase); its other defaults
are k=100, topk_threshold_lr=0.01 (the same EMA as our threshold_momentum=0.99), aux_loss_coefficient=1
with its own AuxK (k_aux = d_in/2, scaled by min(n_dead/k_aux, 1)), rescale_acts_by_decoder_norm=True
(equivalent to our unit decoder rows) and use_matryoshka_aux_loss=False. Here k, aux_k=256,
aux_coefficient=1/32 and threshold_momentum=0.99 are BatchTopK's (batchtopk.py; `sae train` passes --k),
so that the two train alike apart from the prefix terms. `glasshouse sae train` has no flag for the
prefixes, so an empty `prefixes` means the default `default_prefixes(d_sae)`: the nesting of the authors'
released training script (groups d/16, d/16, d/8, d/4, d/2: prefixes d/16, d/8, d/4, d/2, d, each twice the
last; sizes rounded down, those below 1 and repeats dropped, so d_sae=2304 gives 144, 288, 576, 1152, 2304
and d_sae=8 gives 1, 2, 4, 8). Given prefixes must be whole numbers >= 1, strictly increasing, and end at d_sae
(InputError saying how to fix them; unlike SAELens, a missing d_sae is not appended silently).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from probes.errors import InputError
from saes.architectures.batchtopk import BatchTopKConfig, BatchTopKSAE
from saes.base import SAEOutput
from saes.registry import register

DEFAULT_LEVELS = 5  # prefixes d/16, d/8, d/4, d/2, d


def default_prefixes(d_sae: int) -> tuple[int, ...]:
    """d_sae/16, d_sae/8, d_sae/4, d_sae/2, d_sae (rounded down; sizes below 1 and repeats dropped)."""
    return tuple(sorted({d_sae // 2**i for i in range(DEFAULT_LEVELS)} - {0}))


def _whole(p: Any) -> bool:
    return not isinstance(p, bool) and (isinstance(p, int) or (isinstance(p, float) and p.is_integer()))


def check_prefixes(prefixes: Sequence[Any], d_sae: int) -> tuple[int, ...]:
    """The prefixes as a tuple of ints, or InputError: whole numbers >= 1, strictly increasing, last == d_sae."""
    given = list(prefixes)
    example = f"e.g. prefixes={default_prefixes(d_sae)} (the default when prefixes is left empty)"
    if not given:
        raise InputError(f"Matryoshka prefixes are empty. Give increasing prefix sizes ending at d_sae={d_sae}, "
                         f"{example}.")
    if any(not _whole(p) for p in given):
        raise InputError(f"Matryoshka prefixes must be whole numbers of features, got {given}. "
                         f"Give increasing prefix sizes ending at d_sae={d_sae}, {example}.")
    sizes = tuple(int(p) for p in given)
    if min(sizes) < 1:
        raise InputError(f"Matryoshka prefixes must be at least 1 feature each, got {list(sizes)}. "
                         f"Drop the sizes below 1; {example}.")
    if any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)):
        raise InputError(f"Matryoshka prefixes must be strictly increasing (each prefix holds the one before it), "
                         f"got {list(sizes)}. Sort them and drop repeats, ending at d_sae={d_sae}; {example}.")
    if sizes[-1] != d_sae:
        fix = (f"append {d_sae} (the whole dictionary)" if sizes[-1] < d_sae
               else f"drop the sizes above {d_sae} or raise d_sae to {sizes[-1]}")
        raise InputError(f"The last Matryoshka prefix must be d_sae={d_sae} (the whole dictionary), "
                         f"got {list(sizes)}: {fix}.")
    return sizes


@dataclass
class MatryoshkaConfig(BatchTopKConfig):
    """BatchTopK's settings plus `prefixes`, the nested dictionary sizes (module docstring for the defaults).

    `prefixes` empty (the default) becomes `default_prefixes(d_sae)` at construction, so the config (and
    cfg.json) always holds the sizes it trains with.
    """

    architecture: str = "matryoshka_batchtopk"
    prefixes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        given = () if self.prefixes is None else self.prefixes
        if isinstance(given, str | bytes) or not isinstance(given, Sequence):
            raise InputError(f"Matryoshka prefixes must be a list of feature counts, got {given!r}; "
                             f"e.g. prefixes={default_prefixes(self.d_sae)}.")
        self.prefixes = check_prefixes(given, self.d_sae) if len(given) else default_prefixes(self.d_sae)


def prefix_reconstructions(
    f: Float[Tensor, "batch d_sae"],
    W_dec: Float[Tensor, "d_sae d_in"],
    b_dec: Float[Tensor, " d_in"],
    prefixes: Sequence[int],
) -> list[Float[Tensor, "batch d_in"]]:
    """f[:, :m] W_dec[:m] + b_dec for every prefix m, built group by group (one decode in all)."""
    out: list[Tensor] = []
    acc: Tensor = b_dec
    start = 0
    for m in prefixes:
        acc = f[:, start:m] @ W_dec[start:m] + acc
        out.append(acc)
        start = m
    return out


class MatryoshkaSAE(BatchTopKSAE):
    """BatchTopK with a reconstruction term for every nested prefix of the dictionary."""

    cfg: MatryoshkaConfig

    def loss(self, x: Float[Tensor, "batch d_in"], dead_mask: Bool[Tensor, "*d_sae"] | None = None) -> SAEOutput:
        """Sum over prefixes of the prefix's MSE (normalised space), plus AuxK (module docstring)."""
        self._check_width(x)
        x_n = x * self.cfg.norm_scale
        z = self.pre_acts(x)
        f = self.activation(z)
        recs = prefix_reconstructions(f, self.W_dec, self.b_dec, self.cfg.prefixes)
        x_n_hat = recs[-1]
        terms = {"mse": (x_n_hat - x_n).pow(2).sum(-1).mean()}
        for m, rec in zip(self.cfg.prefixes[:-1], recs[:-1], strict=True):
            terms[f"mse_prefix_{m}"] = (rec - x_n).pow(2).sum(-1).mean()
        terms.update(self.sparsity_terms(x_n, z, f, x_n_hat, dead_mask))
        total = torch.stack(list(terms.values())).sum()
        return SAEOutput(x_hat=x_n_hat / self.cfg.norm_scale, feature_acts=f, loss=total, terms=terms)


register("matryoshka_batchtopk", MatryoshkaSAE, MatryoshkaConfig,
         "BatchTopK whose nested feature prefixes each reconstruct the input; global threshold at inference")
