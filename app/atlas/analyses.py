"""The atlas's analyses: one `register_atlas` entry each (docs/atlas.md).

Each entry names its batch probe(s) and settings per budget, a headline-number extractor and a figure.
The probes are the batch registry's (app/batch/) plus extreme_tokens and dormant_heads (app/atlas/probes.py).
Not in the atlas yet (docs/atlas.md): the peak ablation, dormant-head ablations, hidden sinks,
circuits and SAEs.
"""

from __future__ import annotations

import math
from typing import Any

import app.atlas.probes  # noqa: F401  (registers extreme_tokens and dormant_heads as batch probes)
from app.atlas.figures import add_curves, curves, heatmaps, pick
from app.atlas.registry import AtlasEntry, ProbeRows, Row, every_budget, register_atlas

DORMANCY_GAP = 0.2  # |dormancy prose - dormancy code| above which a head counts as domain-dependent
SINK_HEAD_RATE = 50.0  # percent of windows; a head above it counts as a sink head


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def head_name(row: Row) -> str:
    return f"L{row['layer']}H{row['head']}"


def _by_key(rows: list[Row], key: str) -> dict[int, float]:
    return {int(r[key]): float(r["value"]) for r in rows}


# --- headline numbers (one model's rows) -------------------------------------------------------------

def sinks_headline(rows: ProbeRows) -> dict[str, Any]:
    r = rows["sinks"]
    heads = pick(r, "head_sink_rate")
    return {"sink1_percent": pick(r, "sink1")[0]["value"],
            "sink_heads": sum(1 for h in heads if h["value"] > SINK_HEAD_RATE),
            "heads": len(heads)}


def first_token_headline(rows: ProbeRows) -> dict[str, Any]:
    heads = pick(rows["first_token_attention"], "first_token_attention")
    values = [h["value"] for h in heads]
    top = max(heads, key=lambda h: h["value"])
    return {"mean_attention_on_first": sum(values) / len(values), "max_attention_on_first": top["value"],
            "max_head": head_name(top), "share_heads_over_half": sum(v > 0.5 for v in values) / len(values)}


def residual_headline(rows: ProbeRows) -> dict[str, Any]:
    norms = pick(rows["residual_norms"], "resid_post_norm")
    layers = sorted({int(r["layer"]) for r in norms})
    best_layer, best_ratio = layers[0], -math.inf
    for layer in layers:
        mine = [r for r in norms if r["layer"] == layer]
        first = next(r["value"] for r in mine if r["position"] == 0)
        rest = [r["value"] for r in mine if r["position"] != 0]
        ratio = first / (sum(rest) / len(rest))
        if ratio > best_ratio:
            best_layer, best_ratio = layer, ratio
    return {"max_first_over_rest": best_ratio, "at_layer": best_layer}


def successor_headline(rows: ProbeRows) -> dict[str, Any]:
    heads = pick(rows["successor_score"], "successor_score")
    top = max(heads, key=lambda h: h["value"])
    return {"max_successor_score": top["value"], "best_head": head_name(top)}


def extreme_headline(rows: ProbeRows) -> dict[str, Any]:
    r = rows["extreme_tokens"]
    sink, rest = _by_key(pick(r, "resid_norm_sink"), "layer"), _by_key(pick(r, "resid_norm_rest"), "layer")
    peak = max(sink, key=lambda layer: sink[layer])
    v_sink = {(x["layer"], x["head"]): x["value"] for x in pick(r, "value_norm_sink")}
    v_rest = {(x["layer"], x["head"]): x["value"] for x in pick(r, "value_norm_rest")}
    drain = sorted(v_sink[k] / v_rest[k] for k in v_sink if _finite(v_sink[k]) and _finite(v_rest[k]) and v_rest[k] > 0)
    gaps = [x["value"] for x in pick(r, "logit_gap") if _finite(x["value"])]  # NaN is stored as null
    return {"peak_layer": peak, "peak_sink_norm": sink[peak], "peak_over_rest": sink[peak] / rest[peak],
            "median_value_sink_over_rest": drain[len(drain) // 2] if drain else math.nan,
            "mean_logit_gap": sum(gaps) / len(gaps) if gaps else math.nan}


def dormant_headline(rows: ProbeRows) -> dict[str, Any]:
    from probes.dormant import COLUMN_ENTROPY_MIN, ROW_ENTROPY_MAX

    r = rows["dormant_heads"]
    prose = {(x["layer"], x["head"]): x["value"] for x in pick(r, "dormancy_prose")}
    code = {(x["layer"], x["head"]): x["value"] for x in pick(r, "dormancy_code")}
    diff = {k: prose[k] - code[k] for k in prose}
    top = max(diff, key=lambda k: abs(diff[k]))
    row = {(x["layer"], x["head"]): x["value"] for x in pick(r, "row_entropy")}
    col = {(x["layer"], x["head"]): x["value"] for x in pick(r, "column_entropy")}
    return {"max_dormancy_gap": diff[top], "gap_head": f"L{top[0]}H{top[1]}",
            "domain_dependent_heads": sum(abs(d) > DORMANCY_GAP for d in diff.values()),
            "entropy_sink_heads": sum(row[k] < ROW_ENTROPY_MAX and col[k] > COLUMN_ENTROPY_MIN for k in row)}


# --- figures (every model) ---------------------------------------------------------------------------

def sinks_figure(title: str) -> Any:
    def draw(rows: dict[str, ProbeRows], models: list[str]) -> Any:
        return curves(rows, models, "sinks", "sink_rate", "position", title, "key position k (0-based)",
                      "Sink_k (% of heads x windows)")

    return draw


def first_token_figure(rows: dict[str, ProbeRows], models: list[str]) -> Any:
    return heatmaps(rows, models, "first_token_attention", "first_token_attention",
                    "Mean attention on the first token, per head", "weight", 0.0, 1.0)


def residual_figure(rows: dict[str, ProbeRows], models: list[str]) -> Any:
    first: dict[str, ProbeRows] = {}
    for model, probe_rows in rows.items():
        norms = pick(probe_rows.get("residual_norms", []), "resid_post_norm")
        first[model] = {"residual_norms": [r for r in norms if r["position"] == 0]}
    return curves(first, models, "residual_norms", "resid_post_norm", "layer",
                  "Residual norm of the first token after each layer", "layer (index)", "||resid_post||", log_y=True)


def successor_figure(rows: dict[str, ProbeRows], models: list[str]) -> Any:
    return heatmaps(rows, models, "successor_score", "successor_score", "Successor score per head", "score", 0.0, 1.0)


def extreme_figure(rows: dict[str, ProbeRows], models: list[str]) -> Any:
    sink = curves(rows, models, "extreme_tokens", "resid_norm_sink", "layer",
                  "Residual norm: sink (solid) vs mean of the other positions (dotted)", "layer (index)",
                  "||resid_post||", log_y=True, name=" sink")
    rest = curves(rows, models, "extreme_tokens", "resid_norm_rest", "layer", "", "", "", name=" rest")
    return add_curves(sink, rest)


def dormant_figure(rows: dict[str, ProbeRows], models: list[str]) -> Any:
    diff: dict[str, ProbeRows] = {}
    for model, probe_rows in rows.items():
        r = probe_rows.get("dormant_heads", [])
        code = {(x["layer"], x["head"]): x["value"] for x in pick(r, "dormancy_code")}
        diff[model] = {"dormant_heads": [{**x, "metric": "gap", "value": x["value"] - code[(x["layer"], x["head"])]}
                                         for x in pick(r, "dormancy_prose")]}
    return heatmaps(diff, models, "dormant_heads", "gap", "Dormancy on prose minus dormancy on code, per head",
                    "prose - code", -1.0, 1.0)


BATCH_BY_BUDGET = {"small": {"batch_size": 8}, "standard": {"batch_size": 8}}

register_atlas(AtlasEntry(
    name="sinks", title="Attention sinks (Sink_k^eps, eps = 0.3)",
    probes={"sinks": {b: {"eps": 0.3, **s} for b, s in BATCH_BY_BUDGET.items()}},
    headline=sinks_headline, figure=sinks_figure("Sink rate by key position (no BOS)"),
    notes=f"sink heads: heads whose attention on the first token exceeds eps in more than {SINK_HEAD_RATE:.0f}% "
          "of the windows.",
), replace=True)
register_atlas(AtlasEntry(
    name="sinks_bos", title="Attention sinks with the BOS token first (Sink_k^eps, eps = 0.3)",
    probes={"sinks": {b: {"eps": 0.3, "prepend_bos": True, **s} for b, s in BATCH_BY_BUDGET.items()}},
    headline=sinks_headline, figure=sinks_figure("Sink rate by key position (BOS first: k = 0 is the BOS)"),
    notes="the same windows with the tokenizer's BOS put first (the regime Gemma is trained in); a model "
          "without a BOS token cannot run it (leave it out with --analyses).",
), replace=True)
register_atlas(AtlasEntry(
    name="first_token_attention", title="Attention on the first token",
    probes={"first_token_attention": {b: {"min_query": 1, **s} for b, s in BATCH_BY_BUDGET.items()}},
    headline=first_token_headline, figure=first_token_figure,
), replace=True)
register_atlas(AtlasEntry(
    name="residual_norms", title="Residual-stream norms",
    probes={"residual_norms": dict(BATCH_BY_BUDGET)},
    headline=residual_headline, figure=residual_figure,
    notes="max_first_over_rest: the largest ratio, over layers, of the first position's norm to the mean norm "
          "of the other positions.",
), replace=True)
register_atlas(AtlasEntry(
    name="extreme_tokens", title="Extreme tokens: residual peak, value drain, logit gap",
    probes={"extreme_tokens": dict(BATCH_BY_BUDGET)},
    headline=extreme_headline, figure=extreme_figure,
), replace=True)
register_atlas(AtlasEntry(
    name="dormant_heads", title="Active-dormant heads (prose vs code)",
    probes={"dormant_heads": dict(BATCH_BY_BUDGET)},
    headline=dormant_headline, figure=dormant_figure,
    notes=f"domain_dependent_heads: |dormancy prose - dormancy code| > {DORMANCY_GAP}; entropy_sink_heads: the "
          "entropy detector of probes.dormant on the prose windows.",
), replace=True)
register_atlas(AtlasEntry(
    name="successor_heads", title="Successor heads (first-order score)",
    probes={"successor_score": every_budget({"norm": "auto", "source": "mlp0"})},
    headline=successor_headline, figure=successor_figure,
    notes="the OV view only; the corpus is not used (the tasks come from the tokenizer).",
), replace=True)
