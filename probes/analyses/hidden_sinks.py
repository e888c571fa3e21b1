"""Hidden sinks as a declared analysis: sinks beyond the first token, alpha_k > threshold at k >= 1.

Spec: docs/methods/attention-sinks.md ("Hidden sinks and their calibration", ACT, Yu et al. 2024). alpha from
ModelLike.sink_alpha (kept per sequence), reduced by probes.hidden_sinks.hidden_sinks_from_alpha with the
tokens of the windows, counting keys seen by at least min_queries queries (capped at T - 1), as
`glasshouse sinks --interventions` shows them. Rows: "hidden_rate" (layer, head; percent of windows),
"position_rate" (position), "sink_token" and "sink_token_count" (position = rank).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probes.analyses.sinks import SINK_HEAD_RATE
from probes.analysis import Analysis, AtlasView, Sums, setting
from probes.rows import ProbeRows, Row, by_head, by_key, heads_figure, mean, ranked, ranked_rows, tensor_rows

if TYPE_CHECKING:
    from torch import Tensor

    from probes.model.model_like import ModelLike

NAME = "hidden_sinks"


@dataclass(frozen=True)
class HiddenSinkSettings:
    threshold: float = setting(0.1, "alpha above which a key is a sink", minimum=0.0, maximum=1.0, open_low=True,
                               open_high=True)
    min_queries: int = setting(8, "count keys seen by at least this many queries (capped at T - 1)", minimum=1)
    top_tokens: int = setting(5, "sink tokens listed", minimum=1)
    prepend_bos: bool = setting(False, "put the tokenizer's BOS token before every corpus window")
    batch_size: int = setting(8, "sequences per forward pass", minimum=1)


def collect(model: ModelLike, ids: Tensor, settings: HiddenSinkSettings) -> Sums:
    from probes.hidden_sinks import check_hidden_settings

    check_hidden_settings(settings.threshold, min(settings.min_queries, ids.shape[1] - 1), ids.shape[1])
    return {"alpha": model.sink_alpha(ids), "ids": ids}


def reduce(model: ModelLike, sums: Sums, n: int, settings: HiddenSinkSettings) -> dict[str, Any]:
    from probes.hidden_sinks import hidden_sinks_from_alpha

    ids = sums["ids"]
    found = hidden_sinks_from_alpha(sums["alpha"], model.tokens_from_ids(ids).str_tokens, settings.threshold,
                                    min_queries=min(settings.min_queries, ids.shape[1] - 1))
    top = list(found.token_counts.items())[: settings.top_tokens]
    return {"hidden_rate": found.hidden_rate, "position_rate": found.position_rate,
            "sink_tokens": [t for t, _ in top], "sink_token_counts": [c for _, c in top]}


def rows(result: dict[str, Any]) -> list[Row]:
    return (tensor_rows("hidden_rate", result["hidden_rate"])
            + tensor_rows("position_rate", result["position_rate"], ("position",))
            + ranked_rows("sink_token", result["sink_tokens"]) + ranked_rows("sink_token_count", result["sink_token_counts"]))


def headline(rows: ProbeRows) -> dict[str, Any]:
    r = rows[NAME]
    rates = list(by_head(r, "hidden_rate").values())
    positions = {k: v for k, v in by_key(r, "position_rate", "position").items() if k >= 1}
    tokens, counts = ranked(r, "sink_token"), ranked(r, "sink_token_count")
    return {"mean_hidden_rate": mean(rates), "heads_with_hidden_sinks": sum(v > SINK_HEAD_RATE for v in rates),
            "top_position": max(sorted(positions), key=lambda k: positions[k]) if positions else None,
            "top_sink_token": repr(tokens[0]) if tokens else "-", "top_sink_token_count": counts[0] if counts else 0}


def summary(result: dict[str, Any]) -> list[str]:
    tokens = ", ".join(f"{t!r} x{c}" for t, c in zip(result["sink_tokens"], result["sink_token_counts"], strict=True))
    return [f"mean hidden-sink rate {float(result['hidden_rate'].mean()):.1f}% of windows; top tokens: {tokens or '-'}"]


HIDDEN_SINKS = Analysis(
    name=NAME,
    description="hidden sinks beyond the first token (ACT, Yu et al. 2024)",
    method="docs/methods/attention-sinks.md", settings=HiddenSinkSettings, collect=collect, reduce=reduce, rows=rows,
    remote=True, stacked=("alpha", "ids"), summary=summary,
    atlas=(AtlasView(
        name=NAME, title="Hidden sinks beyond the first token (alpha_k > 0.1, k >= 1)", headline=headline,
        budgets={"small": {"batch_size": 8}, "standard": {"batch_size": 8}},
        figure=heads_figure(NAME, "hidden_rate", "Windows where a head has a hidden sink (%)", "% windows", 0.0, 100.0),
        notes="keys seen by at least 8 queries (as `glasshouse sinks --interventions`); "
              "heads_with_hidden_sinks: hidden_rate above 50%."),),
)

DECLARED = (HIDDEN_SINKS,)
