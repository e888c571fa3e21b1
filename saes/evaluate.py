"""SAE evaluation (docs/methods/saes.md, "Metrics"; docs/saes.md). Every definition is stated here and tested.

On a set of activations X [n, d_in] with reconstructions X_hat and features F:
- L0: mean over tokens of the number of features with f > 0.
- MSE: mean over tokens and dimensions of (x - x_hat)^2, raw units.
- FVU = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2, mean(x) taken per dimension over the set
  (predicting the mean gives FVU 1); explained variance = 1 - FVU.
- cosine: mean over tokens of cos(x, x_hat).
- density of feature j: fraction of tokens with f_j > 0. Dead: density 0 on the evaluation set.
  Dense: density > `dense_threshold` (default 0.1). Histogram of log10(density) over the live features.
- CE loss recovered: the SAE's reconstruction is spliced into the model at its hook
  (run_with_hooks), and the next-token loss L_spliced is compared with the clean loss L_clean and
  the loss with the activation ablated, L_ablated: (L_ablated - L_spliced) / (L_ablated - L_clean).
  Ablation "zero" puts zeros at the hook; "mean" puts the per-dimension mean of the activation over
  the evaluation tokens. Positions the SAE was not trained on (position 0 when
  skip_first_position) are left as they are in all three runs. KL: mean over tokens of
  KL(p_clean || p_spliced) of the next-token distributions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from probes.errors import InputError
from saes.base import SAE


@dataclass
class ReconstructionMetrics:
    n_tokens: int
    l0: float
    mse: float
    fvu: float
    explained_variance: float
    cosine: float
    dead: int
    dense: int
    d_sae: int
    dead_fraction: float
    log10_density_hist: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fvu(x: Float[Tensor, "n d"], x_hat: Float[Tensor, "n d"]) -> float:
    """Fraction of variance unexplained, mean-centred (module docstring)."""
    x, x_hat = x.double(), x_hat.double()
    return float((x - x_hat).pow(2).sum() / (x - x.mean(0, keepdim=True)).pow(2).sum())


def feature_density(fired: Float[Tensor, " d_sae"], n_tokens: int) -> Float[Tensor, " d_sae"]:
    """Density of every feature: the fraction of the n_tokens tokens on which it fires (f_j > 0), from the
    per-feature count of firings (float64)."""
    return fired.double() / n_tokens


def fired_counts(f: Float[Tensor, "... d_sae"]) -> Float[Tensor, " d_sae"]:
    """How many of the tokens each feature fires on (f_j > 0), over every leading dimension (float64)."""
    return (f > 0).double().reshape(-1, f.shape[-1]).sum(0)


def reconstruction_metrics(
    sae: SAE, acts: Float[Tensor, "n d_in"], batch_size: int = 4096, dense_threshold: float = 0.1, bins: int = 30
) -> ReconstructionMetrics:
    """L0, MSE, FVU, explained variance, cosine, dead/dense counts and the log10 density histogram.
    For a transcoder `acts` are its rows [input | target] and the metrics compare its prediction with the target."""
    width = sae.cfg.row_width
    if acts.ndim != 2 or acts.shape[1] != width:
        what = "d_in" if width == sae.cfg.d_in else "d_in + d_out"
        raise InputError(f"acts must have shape [n, {what}={width}], got {tuple(acts.shape)}.")
    if acts.shape[0] < 2:
        raise InputError("Need at least 2 activations to measure variance.")
    finite = torch.isfinite(acts).all(dim=-1)
    if not bool(finite.all()):
        rows = (~finite).nonzero().flatten()
        raise InputError(
            f"acts hold NaN or inf in {rows.numel()} of {acts.shape[0]} rows (first: row {int(rows[0])}); the metrics "
            "would be NaN. Capture the activations in float32 or drop those rows first."
        )
    was_training = sae.training
    sae.eval()
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.float64)
    l0 = sq = cos = 0.0
    x_hats = []
    with torch.no_grad():
        for i in range(0, acts.shape[0], batch_size):
            x_in, x = sae.split(acts[i : i + batch_size].float())  # x: what is reconstructed (the target)
            f = sae.encode(x_in)
            x_hat = sae.decode_normalised(f, x_in) / sae.target_scale
            x_hats.append(x_hat)
            fired += fired_counts(f)
            l0 += float((f > 0).sum())
            sq += float((x - x_hat).double().pow(2).sum())
            cos += float(torch.nn.functional.cosine_similarity(x, x_hat, dim=-1).double().sum())
    sae.train(was_training)
    n = acts.shape[0]
    targets = sae.split(acts.float())[1]
    value = fvu(targets, torch.cat(x_hats))
    density = feature_density(fired, n)
    live = density[density > 0]
    counts, edges = np.histogram(np.log10(live.numpy()), bins=bins) if live.numel() else (np.zeros(0), np.zeros(0))
    return ReconstructionMetrics(
        n_tokens=n, l0=l0 / n, mse=sq / (n * targets.shape[1]), fvu=value, explained_variance=1 - value,
        cosine=cos / n, dead=int((density == 0).sum()), dense=int((density > dense_threshold).sum()),
        d_sae=sae.cfg.d_sae, dead_fraction=float((density == 0).double().mean()),
        log10_density_hist={"counts": counts.tolist(), "edges": edges.tolist()},
    )


@dataclass
class CEMetrics:
    hook_name: str
    ablation: str
    n_tokens: int
    loss_clean: float
    loss_spliced: float
    loss_ablated: float
    ce_loss_recovered: float
    kl_spliced: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ce_loss_recovered(
    model: Any,
    reconstruct: Callable[[Tensor], Tensor] | SAE,
    hook_name: str,
    ids: Int[Tensor, "batch pos"],
    ablation: str = "zero",
    skip_first_position: bool = True,
    batch_prompts: int = 8,
) -> CEMetrics:
    """Splice `reconstruct(activation)` in at `hook_name`; compare with clean and ablated (module docstring)."""
    if ablation not in ("zero", "mean"):
        raise InputError(f"ablation must be 'zero' or 'mean', got '{ablation}'.")
    if isinstance(reconstruct, SAE):
        reconstruct.eval()
        if skip_first_position != reconstruct.cfg.skip_first_position:
            skip_first_position = reconstruct.cfg.skip_first_position
    start = 1 if skip_first_position else 0
    sae_device = next(reconstruct.parameters()).device if isinstance(reconstruct, SAE) else None
    mean = _mean_activation(model, hook_name, ids, start, batch_prompts) if ablation == "mean" else None

    def splice(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor, Any], Tensor]:
        def hook(act: Tensor, hook: Any) -> Tensor:
            new = act.clone()
            # the SAE may live on another device than the model (a CPU SAE on a CUDA model)
            new[:, start:] = fn(act[:, start:].to(sae_device or act.device, torch.float32)).to(act.device, act.dtype)
            return new

        return hook

    def ablate(x: Tensor) -> Tensor:
        return torch.zeros_like(x) if mean is None else mean.to(x).expand_as(x)

    return _compare(model, ids, batch_prompts, hook_name, ablation,
                    lambda: [(hook_name, splice(reconstruct))], lambda: [(hook_name, splice(ablate))])


def _compare(model: Any, ids: Tensor, batch_prompts: int, name: str, ablation: str,
             spliced: Callable[[], list[Any]], ablated: Callable[[], list[Any]]) -> CEMetrics:
    """Clean, spliced and ablated next-token losses and KL(clean || spliced) over `ids` (module docstring);
    `spliced()` and `ablated()` give each batch's hooks."""
    sums = {"clean": 0.0, "spliced": 0.0, "ablated": 0.0, "kl": 0.0}
    count = 0
    with torch.no_grad():
        for i in range(0, ids.shape[0], batch_prompts):
            chunk = ids[i : i + batch_prompts]
            logits_clean = model.forward(chunk, attention="patterns")[:, :-1].float()  # as the hooked runs
            logits_spliced = model.run_with_hooks(chunk, fwd_hooks=spliced())[:, :-1].float()
            logits_ablated = model.run_with_hooks(chunk, fwd_hooks=ablated())[:, :-1].float()
            target = chunk[:, 1:].to(logits_clean.device)
            for key, logits in (("clean", logits_clean), ("spliced", logits_spliced), ("ablated", logits_ablated)):
                sums[key] += float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="sum"))
            lp_clean = logits_clean.log_softmax(-1)
            lp_spliced = logits_spliced.log_softmax(-1)
            sums["kl"] += float((lp_clean.exp() * (lp_clean - lp_spliced)).sum())
            count += target.numel()
    clean, spliced_loss, ablated_loss = sums["clean"] / count, sums["spliced"] / count, sums["ablated"] / count
    denom = ablated_loss - clean
    recovered = (ablated_loss - spliced_loss) / denom if abs(denom) > 1e-12 else float("nan")
    return CEMetrics(name, ablation, count, clean, spliced_loss, ablated_loss, recovered, sums["kl"] / count)


def transcoder_loss_change(model: Any, tc: SAE, ids: Int[Tensor, "batch pos"], ablation: str = "zero",
                           batch_prompts: int = 8) -> CEMetrics:
    """A transcoder in place of what it predicts (docs/methods/saes.md, "Transcoders"): the output hook's
    activation is replaced by tc(input hook's activation) at every position it was trained on, and the
    next-token loss compared with the clean run and with the output ablated (zeros, or its mean over the
    evaluation tokens), as ce_loss_recovered does for an SAE. `hook_name` of the result reads "in -> out"."""
    out_hook = getattr(tc.cfg, "hook_name_out", None)
    if not out_hook:
        raise InputError(f"{tc.cfg.architecture} is not a transcoder: use ce_loss_recovered for an SAE.")
    if ablation not in ("zero", "mean"):
        raise InputError(f"ablation must be 'zero' or 'mean', got '{ablation}'.")
    tc.eval()
    start = 1 if tc.cfg.skip_first_position else 0
    device = next(tc.parameters()).device
    mean = _mean_activation(model, out_hook, ids, start, batch_prompts) if ablation == "mean" else None

    def spliced() -> list[Any]:
        seen: dict[str, Tensor] = {}

        def keep(act: Tensor, hook: Any) -> None:
            seen["x"] = act[:, start:].to(device, torch.float32)

        def replace(act: Tensor, hook: Any) -> Tensor:
            if "x" not in seen:
                raise InputError(f"The transcoder's input hook {tc.cfg.hook_name} runs after its output hook "
                                 f"{out_hook}: a transcoder predicts a later activation from an earlier one.")
            new = act.clone()
            new[:, start:] = tc(seen["x"]).to(act.device, act.dtype)
            return new

        return [(tc.cfg.hook_name, keep), (out_hook, replace)]

    def ablated() -> list[Any]:
        def replace(act: Tensor, hook: Any) -> Tensor:
            new = act.clone()
            new[:, start:] = 0.0 if mean is None else mean.to(act)
            return new

        return [(out_hook, replace)]

    return _compare(model, ids, batch_prompts, f"{tc.cfg.hook_name} -> {out_hook}", ablation, spliced, ablated)


def _mean_activation(model: Any, hook_name: str, ids: Tensor, start: int, batch_prompts: int) -> Tensor:
    from saes.activation_store import hook_activations

    parts = [hook_activations(model, hook_name, ids[i : i + batch_prompts])[:, start:] for i in range(0, ids.shape[0], batch_prompts)]
    return torch.cat([p.reshape(-1, p.shape[-1]) for p in parts]).mean(0)
