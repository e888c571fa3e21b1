"""Extreme tokens as a declared analysis: the sink (first position) against the rest, per layer and head.

Spec: docs/methods/extreme-tokens.md ("Per-token measurements"). Per sequence from
ModelLike.extreme_statistics (locally probes.extreme.measure_batch's hooks; remotely the same measurements
inside the nnsight trace, Llama-style models), kept per sequence and summarised by
probes.extreme.extreme_summary, as `glasshouse extreme` does. Rows: "resid_norm_sink", "resid_norm_rest"
(layer), "value_norm_sink", "value_norm_rest", "logit_gap" (layer, head). The peak ablation stays a
declared analysis of its own (probes/analyses/peak_ablation.py): it chooses its layers from the clean run first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probes.analysis import Analysis, AtlasView, Sums, WindowSettings
from probes.rows import ProbeRows, Row, by_head, by_key, finite, lines_figure, mean, pick, tensor_rows

if TYPE_CHECKING:
    from torch import Tensor

    from probes.model.model_like import ModelLike

NAME = "extreme_tokens"


@dataclass(frozen=True)
class ExtremeSettings(WindowSettings):
    """prepend_bos and batch_size only."""


def collect(model: ModelLike, ids: Tensor, settings: ExtremeSettings) -> Sums:
    return dict(model.extreme_statistics(ids))


def reduce(model: ModelLike, sums: Sums, n: int, settings: ExtremeSettings) -> dict[str, Any]:
    from probes.extreme import extreme_summary

    return extreme_summary(sums["sink"], sums["value"], sums["resid"], sums["gap"])


def rows(result: dict[str, Any]) -> list[Row]:
    return (tensor_rows("resid_norm_sink", result["resid_sink"], ("layer",))
            + tensor_rows("resid_norm_rest", result["resid_rest_mean"], ("layer",))
            + tensor_rows("value_norm_sink", result["value_sink"]) + tensor_rows("value_norm_rest", result["value_rest"])
            + tensor_rows("logit_gap", result["logit_gap"]))


def headline(rows: ProbeRows) -> dict[str, Any]:
    r = rows[NAME]
    sink, rest = by_key(r, "resid_norm_sink", "layer"), by_key(r, "resid_norm_rest", "layer")
    peak = max(sorted(sink), key=lambda la: sink[la])
    v_sink, v_rest = by_head(r, "value_norm_sink"), by_head(r, "value_norm_rest")
    drain = sorted(v_sink[k] / v_rest[k] for k in v_sink if finite(v_sink[k]) and finite(v_rest[k]) and v_rest[k] > 0)
    gaps = [x["value"] for x in pick(r, "logit_gap") if finite(x["value"])]  # NaN is stored as null
    return {"peak_layer": peak, "peak_sink_norm": sink[peak], "peak_over_rest": sink[peak] / rest[peak],
            "median_value_sink_over_rest": drain[len(drain) // 2] if drain else math.nan,
            "mean_logit_gap": mean(gaps)}


def summary(result: dict[str, Any]) -> list[str]:
    peak = result["peak_layer"]
    return [f"first-token residual norm peaks at layer {peak}: {float(result['resid_sink'][peak]):.1f} "
            f"(rest {float(result['resid_rest_mean'][peak]):.1f})"]


EXTREME_TOKENS = Analysis(
    name=NAME,
    description="extreme tokens: residual peak, value drain and logit gap of the first token against the rest",
    method="docs/methods/extreme-tokens.md", settings=ExtremeSettings, collect=collect, reduce=reduce, rows=rows,
    remote=True, stacked=("sink", "value", "resid", "gap"), summary=summary,
    atlas=(AtlasView(
        name=NAME, title="Extreme tokens: residual peak, value drain, logit gap", headline=headline,
        figure=lines_figure(NAME, [("resid_norm_sink", "sink", False), ("resid_norm_rest", "rest", True)], "layer",
                            "Residual norm: sink (solid) vs mean of the other positions (dotted)", "layer (index)",
                            "||resid_post||", log_y=True)),),
)

DECLARED = (EXTREME_TOKENS,)
