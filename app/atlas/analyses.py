"""The atlas's analyses: one `register_atlas` entry each (docs/atlas.md).

Each entry names its batch probe(s) and settings per budget, a headline-number extractor and a
figure (FigureSpec: its look and the data drawn from one model's rows). The probes are the batch
registry's (app/batch/) and the atlas's own (app/atlas/probes.py). One circuit entry per task of the
circuits task registry.
"""

from __future__ import annotations

from typing import Any

import app.atlas.probes  # noqa: F401  (registers the atlas's batch probes)
from app.atlas.registry import AtlasEntry, every_budget, per_budget, register_atlas
from probes.analysis import FigureSpec
from probes.rows import (
    ProbeRows,
    Row,
    by_head,
    by_key,
    head_name,
    heads_figure,
    line,
    mean,
    pick,
    ranked,
    scalar,
    top_head,
)

BATCH = {"batch_size": 8}
Head = tuple[int, int]


# --- headline numbers (one model's rows) -------------------------------------------------------------

def successor_headline(rows: ProbeRows) -> dict[str, Any]:
    scores = by_head(rows["successor_score"], "successor_score")
    top = top_head(scores)
    return {"max_successor_score": scores[top], "best_head": head_name(top)}


def in_context_headline(rows: ProbeRows) -> dict[str, Any]:
    r = rows["successor_in_context"]
    dla, acc = by_head(r, "mean_dla"), by_head(r, "mean_rank_accuracy")
    top = top_head(dla)
    return {"best_head": head_name(top), "best_mean_dla": dla[top], "best_rank_accuracy": acc[top],
            "chance": mean(ranked(r, "chance")), "model_task_accuracy": mean(ranked(r, "model_task_accuracy"))}


def ablated(rows: list[Row]) -> dict[tuple[str, int], float]:
    """{(component, zeroed layer): the sink's norm at the measure layer}."""
    prefix = "ablated_sink_"
    return {(r["metric"][len(prefix):], int(r["layer"])): r["value"] for r in rows if r["metric"].startswith(prefix)}


def peak_ablation_headline(rows: ProbeRows) -> dict[str, Any]:
    r = rows["peak_ablation"]
    at = int(scalar(r, "measure_layer"))
    clean = by_key(r, "clean_sink", "layer")[at]
    after = ablated(r)
    worst = min(sorted(after), key=lambda k: after[k])
    return {"measure_layer": at, "clean_sink_norm": clean, "strongest_ablation": f"{worst[0]} L{worst[1]}",
            "sink_norm_after": after[worst], "sink_norm_kept": after[worst] / clean}


def circuit_headline(rows: ProbeRows) -> dict[str, Any]:
    r = rows["circuit"]
    if pick(r, "unsupported"):
        return {"unsupported": scalar(r, "unsupported").split(":")[-1].strip()}
    curve = by_key(r, "faithfulness", "position")
    return {"edges_to_80": scalar(r, "edges_to_80"), "area": scalar(r, "area"),
            f"faithfulness_at_{max(curve)}": curve[max(curve)], "clean_metric": scalar(r, "clean_metric"),
            "empty_metric": scalar(r, "empty_metric"), "circuit_edges": scalar(r, "circuit_edges")}


def sae_headline(rows: ProbeRows) -> dict[str, Any]:
    r = rows["sae"]
    out = {k: scalar(r, k) for k in ("hook", "l0", "fvu", "ce_loss_recovered", "dead_fraction")}
    features, tokens = ranked(r, "top_feature"), ranked(r, "top_feature_token")
    out["top_features"] = ", ".join(f"{f} {t!r}" for f, t in zip(features, tokens, strict=True))
    return out


# --- figure data that needs more than one metric -----------------------------------------------------

def peak_ablation_data(rows: ProbeRows) -> dict[str, Any]:
    after = ablated(rows["peak_ablation"])
    clean = by_key(rows["peak_ablation"], "clean_sink", "layer")[int(scalar(rows["peak_ablation"], "measure_layer"))]
    keys = sorted(after)
    return {"series": [{"name": "", "x": [f"zero {c} L{la}" for c, la in keys] + ["clean"],
                        "y": [after[k] for k in keys] + [clean]}]}


def in_context_data(rows: ProbeRows) -> dict[str, Any]:
    r = rows["successor_in_context"]
    return {"series": [{"name": "", "x": ranked(r, "task"), "y": ranked(r, "model_task_accuracy")},
                       {"name": "chance", "x": ranked(r, "task"), "y": ranked(r, "chance")}]}


def circuit_data(rows: ProbeRows) -> dict[str, Any]:
    faithfulness = by_key(rows["circuit"], "faithfulness", "position")
    return {"series": [line(faithfulness)]} if faithfulness else {}


def sae_data(rows: ProbeRows) -> dict[str, Any]:
    r = rows["sae"]
    labels = [f"#{f} {t!r}" for f, t in zip(ranked(r, "top_feature"), ranked(r, "top_feature_token"), strict=True)]
    return {"series": [{"name": "", "x": labels, "y": ranked(r, "top_feature_density")}]}


# --- the entries -------------------------------------------------------------------------------------

def circuit_entry(task: str) -> AtlasEntry:
    return AtlasEntry(
        name=f"circuit_{task}", title=f"Circuit: {task} (EAP)",
        probes={"circuit": per_budget({"task": task, "method": "eap"},
                                      small={"n": 4, "which": "agnostic", "counts": "100,1000"},
                                      standard={"n": 16, "which": "aware", "counts": "10,30,100,300,1000"})},
        headline=circuit_headline,
        figure=FigureSpec("curves", f"{task}: faithfulness of the greedy circuit against its size", circuit_data,
                          "edges", "faithfulness"),
        notes="small budget: 4 examples, position-agnostic EAP; standard: 16 examples, position-aware (PEAP). "
              "faithfulness (m(circuit) - m(empty)) / (m(clean) - m(empty)) with corrupted activations outside the "
              "circuit; edges_to_80: the smallest edge count of the curve reaching 0.8 (null: none).")


def entries() -> list[AtlasEntry]:
    from circuits.tasks import TASKS

    return [
        AtlasEntry(name="peak_ablation", title="Extreme tokens: the peak ablation",
                   probes={"peak_ablation": per_budget({"n": 4, **BATCH})}, headline=peak_ablation_headline,
                   figure=FigureSpec("bars", "First-token residual norm at the peak layer, one output zeroed",
                                     peak_ablation_data, "", "||resid_post[peak, 0]||"),
                   notes="the first 4 windows, layers 0, 1 and where the first-token norm jumps (with the one "
                         "before), MLP and attention output zeroed in turn, as `glasshouse extreme` does."),
        AtlasEntry(name="successor_heads", title="Successor heads, first-order view (effective OV score)",
                   probes={"successor_score": every_budget({"norm": "auto", "source": "mlp0"})},
                   headline=successor_headline,
                   figure=heads_figure("successor_score", "successor_score", "Successor score per head", "score",
                                       0.0, 1.0),
                   notes="the corpus is not used (the tasks come from the tokenizer)."),
        AtlasEntry(name="successor_in_context", title="Successor heads, in-context view (DLA to the successor)",
                   probes={"successor_in_context": per_budget(small={"max_prompts": 10},
                                                              standard={"max_prompts": 20})},
                   headline=in_context_headline,
                   figure=FigureSpec("bars", "The model's accuracy per succession task (among the task's targets)",
                                     in_context_data, "task", "accuracy"),
                   notes="best head: the largest mean DLA over the tasks; rank accuracy: how often the correct "
                         "successor has that head's highest DLA among the task's targets."),
        *[circuit_entry(task) for task in TASKS],
        AtlasEntry(name="sae", title="A small SAE (TopK, middle layer)",
                   probes={"sae": per_budget(small={"d_sae": 256, "k": 16, "train_windows": 16, "train_tokens": 16384},
                                             standard={"d_sae": 1024, "k": 32, "train_windows": 64,
                                                       "train_tokens": 131072})},
                   headline=sae_headline,
                   figure=FigureSpec("bars", "The SAE's most frequent features (density on the atlas windows)",
                                     sae_data, "feature and its top token", "density"),
                   notes="trained on prose and code windows (seed + 1), evaluated on the atlas windows; "
                         "ce_loss_recovered against a zero ablation."),
    ]


for _entry in entries():
    register_atlas(_entry, replace=True)
