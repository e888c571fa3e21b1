"""Attention on the first token: mean over sequences and over queries q >= min_query of A[q, 0], per head.

Spec: docs/methods/attention-sinks.md (alpha_1 with the query convention of probes.quantities: min_query=1
counts every non-first query, the extreme-token papers' convention). Read through
ModelLike.attention_on_first: locally from the statistics path (no T x T pattern), remotely off the eager
pattern inside the nnsight trace; only the [layer, head] sums come back. Rows: metric
"first_token_attention", one per (layer, head).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probes.analysis import Analysis, AtlasView, Sums, WindowSettings, setting
from probes.errors import InputError
from probes.rows import ProbeRows, Row, by_head, head_name, heads_figure, mean, tensor_rows, top_head

if TYPE_CHECKING:
    from torch import Tensor

    from probes.model.model_like import ModelLike

NAME = "first_token_attention"


@dataclass(frozen=True)
class FirstTokenSettings(WindowSettings):
    min_query: int = setting(1, "first query position averaged over", minimum=1)


def collect(model: ModelLike, ids: Tensor, settings: FirstTokenSettings) -> Sums:
    """Sum over the batch's sequences of the mean over queries q >= min_query of A[q, 0] [layer, head]."""
    import torch

    from probes.quantities import mean_from_query

    if settings.min_query >= ids.shape[1]:
        raise InputError(f"min_query={settings.min_query} leaves no query in windows of {ids.shape[1]} tokens; "
                         "lower it.")
    on_first = model.attention_on_first(ids)
    return {"attention": mean_from_query(on_first, settings.min_query, dtype=torch.float64).sum(dim=0)}


def reduce(model: ModelLike, sums: Sums, n: int, settings: FirstTokenSettings) -> dict[str, Any]:
    return {"mean_attention": sums["attention"] / n}


def rows(result: dict[str, Any]) -> list[Row]:
    return tensor_rows(NAME, result["mean_attention"], ("layer", "head"))


def headline(rows: ProbeRows) -> dict[str, Any]:
    heads = by_head(rows[NAME], NAME)
    top = top_head(heads)
    values = list(heads.values())
    return {"mean_attention_on_first": mean(values), "max_attention_on_first": heads[top], "max_head": head_name(top),
            "share_heads_over_half": sum(v > 0.5 for v in values) / len(values)}


def summary(result: dict[str, Any]) -> list[str]:
    m = result["mean_attention"]
    layer, head = divmod(int(m.argmax()), m.shape[1])
    return [f"mean attention on the first token over all heads {float(m.mean()):.3f}; "
            f"largest L{layer}H{head} {float(m[layer, head]):.3f}"]


ANALYSIS = Analysis(
    name=NAME,
    description="mean attention on the first token per layer and head, over non-first queries",
    method="docs/methods/attention-sinks.md",
    settings=FirstTokenSettings,
    collect=collect,
    reduce=reduce,
    rows=rows,
    remote=True,
    summary=summary,
    atlas=(AtlasView(
        name=NAME, title="Attention on the first token", headline=headline,
        figure=heads_figure(NAME, NAME, "Mean attention on the first token, per head", "weight", 0.0, 1.0)),),
)

DECLARED = (ANALYSIS,)
