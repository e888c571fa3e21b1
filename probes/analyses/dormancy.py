"""Active-dormant head statistics as a declared analysis: dormancy, row entropy and column entropy per head.

Spec: docs/methods/extreme-tokens.md ("Active-dormant heads"). Per sequence from ModelLike.head_statistics
(locally the statistics path's summaries, probes.dormant.statistics_for_batch; remotely reduced from the
eager pattern inside the nnsight trace), summed over sequences and averaged: the numbers of
probes.dormant.head_statistics. Rows: metrics "dormancy", "row_entropy", "column_entropy" per (layer, head).
The `glasshouse dormant` command (two domains, head ablations) stays hand-written (app/commands/dormant.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probes.analysis import Analysis, Sums, WindowSettings
from probes.rows import Row, tensor_rows

if TYPE_CHECKING:
    from torch import Tensor

    from probes.model.model_like import ModelLike


@dataclass(frozen=True)
class DormancySettings(WindowSettings):
    """prepend_bos and batch_size only."""


def collect(model: ModelLike, ids: Tensor, settings: DormancySettings) -> Sums:
    """Sums over the batch's sequences of each head statistic [layer, head]."""
    return {name: value.sum(0) for name, value in model.head_statistics(ids).items()}


def reduce(model: ModelLike, sums: Sums, n: int, settings: DormancySettings) -> dict[str, Any]:
    return {name: total / n for name, total in sums.items()}


def rows(result: dict[str, Any]) -> list[Row]:
    return [row for name, value in result.items() for row in tensor_rows(name, value, ("layer", "head"))]


def summary(result: dict[str, Any]) -> list[str]:
    d = result["dormancy"]
    layer, head = divmod(int(d.argmax()), d.shape[1])
    return [f"most dormant head L{layer}H{head}: dormancy {float(d[layer, head]):.3f}"]


DORMANCY = Analysis(
    name="dormancy",
    description="active-dormant heads: dormancy (sink attention), row and column entropy per head",
    method="docs/methods/extreme-tokens.md", settings=DormancySettings, collect=collect, reduce=reduce, rows=rows,
    remote=True, summary=summary,
)

DECLARED = (DORMANCY,)
