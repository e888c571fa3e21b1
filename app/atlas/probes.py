"""The batch probes the atlas adds that are not declared analyses yet (also usable in `glasshouse batch`
plans); spec: docs/atlas.md. (extreme_tokens, hidden_sinks and dormant_heads are declared: probes/analyses/.)

Each wraps one library function on the unit's corpus windows (or the model alone) and turns its
result into rows with `tensor_rows` / `ranked_rows`:
- peak_ablation (probes.extreme.peak_ablation on the first `n` windows, default layers, as
  `glasshouse extreme` does): clean_sink, clean_rest_max (layer), measure_layer, and per zeroed
  (component, layer) ablated_sink_<component> / ablated_rest_max_<component> (layer = the zeroed layer).
- successor_in_context (probes.successor.in_context.in_context_scores): mean_dla and
  mean_rank_accuracy (layer, head; means over tasks), task, chance, model_task_accuracy (position = task).
- circuit (circuits.discover.discover, one task): faithfulness (position = edge count), area,
  edges_to_80, clean_metric, empty_metric, examples, circuit_edges, circuit_nodes; for a model that
  circuits/ refuses (circuits.forward.refusal, e.g. Gemma 3) one row "unsupported" with the reason.
- sae (saes.trainer.train, saes.evaluate, saes.dashboard): a small TopK SAE trained on prose and code
  windows, evaluated on the unit's windows: l0, fvu, ce_loss_recovered, dead_fraction, ..., and its
  top features by density: top_feature, top_feature_density, top_feature_max, top_feature_token (rank).
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch
from torch import Tensor

from app.batch.builtin import BATCH, BOS, corpus_ids
from app.batch.registry import ProbeEntry, Row, Setting, register
from probes.corpus import CorpusSample, sample
from probes.rows import ranked_rows, scalar_rows, tensor_rows


def unit_ids(model: Any, settings: dict[str, Any], corpus: CorpusSample) -> Tensor:
    return corpus_ids(model.tokenizer, corpus, settings["prepend_bos"])


def run_peak_ablation(model: Any, settings: dict[str, Any], corpus: CorpusSample, seed: int) -> list[Row]:
    """probes.extreme.peak_ablation on the first n windows with its default layers (as `glasshouse extreme`)."""
    from probes.extreme import peak_ablation

    ids = unit_ids(model, settings, corpus)[: settings["n"]]
    res = peak_ablation(model, ids, batch_size=settings["batch_size"])
    rows = (tensor_rows("clean_sink", res.clean_sink, ("layer",))
            + tensor_rows("clean_rest_max", res.clean_rest_max, ("layer",))
            + scalar_rows({"measure_layer": res.measure_layer}))
    for r in res.rows:
        for key in ("sink", "rest_max"):
            rows.append({"metric": f"ablated_{key}_{r['component']}", "value": r[key], "layer": r["layer"],
                         "head": None, "position": None})
    return rows


def run_in_context(model: Any, settings: dict[str, Any], corpus: CorpusSample, seed: int) -> list[Row]:
    """The in-context successor view (DLA to the correct successor) on every task (the corpus is not used)."""
    from probes.successor.in_context import in_context_scores

    ic = in_context_scores(model, max_prompts=settings["max_prompts"])
    return (tensor_rows("mean_dla", ic.overall) + tensor_rows("mean_rank_accuracy", ic.rank_accuracy.mean(dim=0))
            + ranked_rows("task", ic.task_names) + ranked_rows("chance", ic.chance)
            + ranked_rows("model_task_accuracy", ic.model_task_accuracy))


def run_circuit(model: Any, settings: dict[str, Any], corpus: CorpusSample, seed: int) -> list[Row]:
    """circuits.discover.discover on one task: the faithfulness curve of one kind of circuit and its drawn circuit."""
    from circuits.discover import discover
    from circuits.forward import refusal

    reason = refusal(model)
    if reason:  # e.g. Gemma 3: a model circuits/ cannot decompose gives one row saying why, not a failed atlas
        return scalar_rows({"unsupported": reason})
    counts = sorted({int(c) for c in settings["counts"].split(",")})
    res = discover(model, settings["task"], n=settings["n"], method=settings["method"], which=settings["which"],
                   counts=counts, seed=seed, progress=False, extend_to=None)
    (curve,) = res.curves
    drawn = res.circuits[curve.label]
    return ([{"metric": "faithfulness", "value": float(v), "layer": None, "head": None, "position": int(e)}
             for e, v in zip(curve.edges, curve.faithfulness, strict=True)]
            + scalar_rows({"area": curve.area, "edges_to_80": curve.edges_to_80, "clean_metric": float(res.base.clean),
                           "empty_metric": float(res.base.baseline), "examples": len(res.task),
                           "circuit_edges": len(drawn["edges"]), "circuit_nodes": len(drawn["nodes"])}))


def sae_hook(model: Any, layer: int) -> str:
    """The residual stream after `layer` (-1: the middle layer)."""
    n_layers = model.facts.n_layers
    return f"blocks.{n_layers // 2 if layer < 0 else min(layer, n_layers - 1)}.hook_resid_post"


def train_small_sae(model: Any, settings: dict[str, Any], seed: int) -> Any:
    """A TopK SAE trained by saes.trainer.train on `train_windows` prose and as many code windows
    (seed + 1, the unit's length), for `train_tokens` tokens (several epochs); no checkpoint is kept."""
    from saes.activation_store import TensorSource, hook_activations
    from saes.trainer import TrainConfig, train

    hook = sae_hook(model, settings["layer"])
    ids = torch.cat([sample(d, settings["train_windows"], settings["length"], model.tokenizer, seed=seed + 1).ids
                     for d in ("prose", "code")])
    acts = torch.cat([hook_activations(model, hook, ids[i : i + 8])[:, 1:].reshape(-1, model.facts.d_model)
                      for i in range(0, ids.shape[0], 8)])
    fields = {"architecture": "topk", "d_in": int(acts.shape[1]), "d_sae": settings["d_sae"], "k": settings["k"],
              "hook_name": hook, "model_name": getattr(model, "spec", ""), "seed": seed}
    with tempfile.TemporaryDirectory(prefix="atlas-sae-") as tmp:
        cfg = TrainConfig(sae=fields, total_tokens=settings["train_tokens"], batch_size=settings["sae_batch"],
                          lr=2e-3, seed=seed, out_dir=tmp, checkpoint_every=10**9, progress=False)
        return train(cfg, TensorSource(acts)).sae


def run_sae(model: Any, settings: dict[str, Any], corpus: CorpusSample, seed: int) -> list[Row]:
    """Train a small SAE, evaluate it on the unit's windows (reconstruction, CE loss recovered with a zero
    ablation) and list its most frequent features with the token where each fires most."""
    from saes.activation_store import hook_activations
    from saes.dashboard import feature_activations
    from saes.evaluate import ce_loss_recovered, reconstruction_metrics

    sae = train_small_sae(model, {**settings, "length": int(corpus.ids.shape[1])}, seed)
    ids = corpus.ids
    acts = hook_activations(model, sae.cfg.hook_name, ids)[:, 1:].reshape(-1, sae.cfg.d_in)
    rec = reconstruction_metrics(sae, acts)
    ce = ce_loss_recovered(model, sae, sae.cfg.hook_name, ids, ablation="zero")
    f = feature_activations(model, sae, ids)[:, 1:]  # [n, T-1, d_sae]
    density = (f > 0).double().mean(dim=(0, 1))
    top = torch.argsort(density, descending=True, stable=True)[: settings["top_features"]].tolist()
    tokens = [model.tokenizer.decode([int(ids[:, 1:].flatten()[int(f[..., j].flatten().argmax())])]) for j in top]
    return (scalar_rows({"hook": sae.cfg.hook_name, "d_sae": sae.cfg.d_sae, "l0": rec.l0, "fvu": rec.fvu,
                         "explained_variance": rec.explained_variance, "dead_fraction": rec.dead_fraction,
                         "ce_loss_recovered": ce.ce_loss_recovered, "loss_clean": ce.loss_clean,
                         "loss_spliced": ce.loss_spliced, "eval_tokens": rec.n_tokens})
            + ranked_rows("top_feature", top) + ranked_rows("top_feature_density", [float(density[j]) for j in top])
            + ranked_rows("top_feature_max", [float(f[..., j].max()) for j in top])
            + ranked_rows("top_feature_token", tokens))


def _circuit_tasks() -> tuple[str, ...]:
    from circuits.tasks import TASKS

    return tuple(TASKS)


for _entry in (
    ProbeEntry("peak_ablation", "extreme tokens: the sink's residual norm with one layer's MLP / attention zeroed",
               run_peak_ablation, {"prepend_bos": BOS, "batch_size": BATCH,
                                   "n": Setting(int, 4, "windows ablated (the first n)", minimum=1)}),
    ProbeEntry("successor_in_context", "successor heads, in-context view: DLA to the correct successor",
               run_in_context, {"max_prompts": Setting(int, 20, "prompts per task", minimum=1)}),
    ProbeEntry("circuit", "a position-aware (or agnostic) circuit for one generated task (circuits.discover)",
               run_circuit, {"task": Setting(str, "ioi", "the generated task", choices=_circuit_tasks()),
                             "n": Setting(int, 16, "examples", minimum=1),
                             "method": Setting(str, "eap", "edge scores", choices=("eap", "eap-ig")),
                             "which": Setting(str, "aware", "which circuit", choices=("aware", "agnostic")),
                             "counts": Setting(str, "10,30,100,300,1000", "edge counts of the curve (comma separated)")}),
    ProbeEntry("sae", "a small TopK SAE: trained, evaluated (FVU, CE loss recovered) and its top features", run_sae,
               {"layer": Setting(int, -1, "resid_post layer (-1: the middle one)", minimum=-1),
                "d_sae": Setting(int, 256, "features", minimum=1), "k": Setting(int, 16, "active features", minimum=1),
                "train_windows": Setting(int, 16, "training windows per domain (prose, code)", minimum=1),
                "train_tokens": Setting(int, 16384, "training tokens (epochs over the windows)", minimum=1),
                "sae_batch": Setting(int, 256, "activations per training step", minimum=1),
                "top_features": Setting(int, 5, "features listed", minimum=1)}),
):
    register(_entry, replace=True)
