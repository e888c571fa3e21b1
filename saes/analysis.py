"""A small SAE as a declared analysis (probes.analysis): trained, evaluated on the corpus windows, its top features.

Spec: docs/methods/saes.md. One whole run (`compute`): a TopK SAE trained by saes.pipeline.train_sae (the
pipeline of `glasshouse sae train`) on `train_windows` prose and as many code windows (seed + 1, the windows'
length) for `train_tokens` tokens, then evaluated on the run's windows (reconstruction, CE loss recovered
against a zero ablation), and its most frequent features with the token where each fires most. Rows: "hook",
"d_sae", "l0", "fvu", "explained_variance", "dead_fraction", "ce_loss_recovered", "loss_clean",
"loss_spliced", "eval_tokens", and per rank "top_feature", "top_feature_density", "top_feature_max",
"top_feature_token". The `glasshouse sae` commands (eval, dashboard) stay their own; `sae train` shares only
the training pipeline. Declared here, not in probes/ (probes imports nothing above it); app/declared.py
brings it in. Light at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probes.analysis import Analysis, AtlasView, FigureSpec, RunContext, setting
from probes.rows import ProbeRows, Row, ranked, ranked_rows, scalar, scalar_rows

if TYPE_CHECKING:
    from torch import Tensor

    from probes.model.model_like import ModelLike


@dataclass(frozen=True)
class SmallSAESettings:
    layer: int = setting(-1, "resid_post layer (-1: the middle one)", minimum=-1)
    d_sae: int = setting(256, "features", minimum=1)
    k: int = setting(16, "active features", minimum=1)
    train_windows: int = setting(16, "training windows per domain (prose, code)", minimum=1)
    train_tokens: int = setting(16384, "training tokens (epochs over the windows)", minimum=1)
    sae_batch: int = setting(256, "activations per training step", minimum=1)
    top_features: int = setting(5, "features listed", minimum=1)


def sae_hook(model: ModelLike, layer: int) -> str:
    """The residual stream after `layer` (-1: the middle layer)."""
    n_layers = model.facts.n_layers
    return f"blocks.{n_layers // 2 if layer < 0 else min(layer, n_layers - 1)}.hook_resid_post"


def train_small_sae(model: Any, settings: SmallSAESettings, length: int, seed: int) -> Any:
    """The TopK SAE of the module docstring by saes.pipeline.train_sae (docs/methods/saes.md; no checkpoint kept)."""
    from saes.pipeline import SAESpec, train_sae

    hook = sae_hook(model, settings.layer)
    spec = SAESpec("topk", settings.d_sae, settings.k, hook, getattr(model, "spec", ""), seed)
    run = train_sae(lambda reporter: _training_activations(model, hook, settings.train_windows, length, seed), spec,
                    batch_size=settings.sae_batch, total_tokens=settings.train_tokens, lr=2e-3,
                    checkpoint_every=10**9, progress=False)
    return run.sae


def _training_activations(model: Any, hook: str, windows: int, length: int, seed: int) -> Tensor:
    """Activations at `hook` of `windows` prose then `windows` code windows of `length` tokens (seed + 1),
    position 0 left out."""
    import torch

    from probes.corpus import sample
    from saes.activation_store import window_activations

    ids = torch.cat([sample(d, windows, length, model.tokenizer, seed=seed + 1).ids for d in ("prose", "code")])
    return window_activations(model, hook, ids)


def compute(model: ModelLike, settings: SmallSAESettings, run: RunContext) -> dict[str, Any]:
    import torch

    from saes.activation_store import hook_activations
    from saes.dashboard import feature_activations
    from saes.evaluate import ce_loss_recovered, feature_density, fired_counts, reconstruction_metrics

    assert run.corpus is not None
    ids: Tensor = run.corpus.ids
    sae = train_small_sae(model, settings, int(ids.shape[1]), run.seed)
    run.reporter.update("sae: evaluating", 1, 2)
    acts = hook_activations(model, sae.cfg.hook_name, ids)[:, 1:].reshape(-1, sae.cfg.d_in)  # type: ignore[arg-type]
    rec = reconstruction_metrics(sae, acts)
    ce = ce_loss_recovered(model, sae, sae.cfg.hook_name, ids, ablation="zero")  # type: ignore[arg-type]
    f = feature_activations(model, sae, ids)[:, 1:]  # type: ignore[arg-type]  # [n, T-1, d_sae]
    density = feature_density(fired_counts(f), f.shape[0] * f.shape[1])
    top = torch.argsort(density, descending=True, stable=True)[: settings.top_features].tolist()
    tokens = [model.tokenizer.decode([int(ids[:, 1:].flatten()[int(f[..., j].flatten().argmax())])]) for j in top]
    run.reporter.update("sae: done", 2, 2)
    return {"metrics": {"hook": sae.cfg.hook_name, "d_sae": sae.cfg.d_sae, "l0": rec.l0, "fvu": rec.fvu,
                        "explained_variance": rec.explained_variance, "dead_fraction": rec.dead_fraction,
                        "ce_loss_recovered": ce.ce_loss_recovered, "loss_clean": ce.loss_clean,
                        "loss_spliced": ce.loss_spliced, "eval_tokens": rec.n_tokens},
            "top_feature": top, "top_feature_density": [float(density[j]) for j in top],
            "top_feature_max": [float(f[..., j].max()) for j in top], "top_feature_token": tokens}


def rows(result: dict[str, Any]) -> list[Row]:
    return (scalar_rows(result["metrics"]) + ranked_rows("top_feature", result["top_feature"])
            + ranked_rows("top_feature_density", result["top_feature_density"])
            + ranked_rows("top_feature_max", result["top_feature_max"])
            + ranked_rows("top_feature_token", result["top_feature_token"]))


def headline(rows: ProbeRows) -> dict[str, Any]:
    r = rows["sae"]
    out = {k: scalar(r, k) for k in ("hook", "l0", "fvu", "ce_loss_recovered", "dead_fraction")}
    features, tokens = ranked(r, "top_feature"), ranked(r, "top_feature_token")
    out["top_features"] = ", ".join(f"{f} {t!r}" for f, t in zip(features, tokens, strict=True))
    return out


def feature_bars(rows: ProbeRows) -> dict[str, Any]:
    r = rows["sae"]
    labels = [f"#{f} {t!r}" for f, t in zip(ranked(r, "top_feature"), ranked(r, "top_feature_token"), strict=True)]
    return {"series": [{"name": "", "x": labels, "y": ranked(r, "top_feature_density")}]}


SAE = Analysis(
    name="sae",
    description="a small TopK SAE: trained, evaluated (FVU, CE loss recovered) and its top features",
    method="docs/methods/saes.md", settings=SmallSAESettings, compute=compute, rows=rows,
    atlas=(AtlasView(
        name="sae", title="A small SAE (TopK, middle layer)", headline=headline,
        budgets={"small": {"d_sae": 256, "k": 16, "train_windows": 16, "train_tokens": 16384},
                 "standard": {"d_sae": 1024, "k": 32, "train_windows": 64, "train_tokens": 131072}},
        figure=FigureSpec("bars", "The SAE's most frequent features (density on the atlas windows)", feature_bars,
                          "feature and its top token", "density"),
        notes="trained on prose and code windows (seed + 1), evaluated on the atlas windows; ce_loss_recovered "
              "against a zero ablation."),),
)

DECLARED = (SAE,)
