"""Residual-stream norms: mean over sequences of ||resid_post|| after each layer, per position.

Spec: docs/methods/extreme-tokens.md ("Per-token measurements": the residual norm); the quantity is
probes.quantities.residual_norm (float64 here), read through ModelLike.residual_norms, so the same collect
step runs locally and through nnsight / NDIF (only the [layer, pos] sums come back). Rows: metric
"resid_post_norm", one per (layer, position). Atlas: the first position's norm after each layer, and the
largest ratio over layers of the first position's norm to the mean of the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probes.analysis import Analysis, AtlasView, FigureSpec, Sums, WindowSettings
from probes.rows import ProbeRows, Row, line, mean, pick, tensor_rows

if TYPE_CHECKING:
    from torch import Tensor

    from probes.model.model_like import ModelLike

NAME = "residual_norms"


@dataclass(frozen=True)
class ResidualNormSettings(WindowSettings):
    """prepend_bos and batch_size only."""


def collect(model: ModelLike, ids: Tensor, settings: ResidualNormSettings) -> Sums:
    """Sum over the batch's sequences of ||resid_post|| [layer, pos]."""
    import torch

    return {"norm": model.residual_norms(ids, dtype=torch.float64).sum(dim=0)}


def reduce(model: ModelLike, sums: Sums, n: int, settings: ResidualNormSettings) -> dict[str, Any]:
    return {"mean_norm": sums["norm"] / n}


def rows(result: dict[str, Any]) -> list[Row]:
    return tensor_rows("resid_post_norm", result["mean_norm"], ("layer", "position"))


def headline(rows: ProbeRows) -> dict[str, Any]:
    norms = pick(rows[NAME], "resid_post_norm")
    ratio = {}
    for layer in sorted({int(r["layer"]) for r in norms}):
        mine = {int(r["position"]): r["value"] for r in norms if r["layer"] == layer}
        ratio[layer] = mine[0] / mean([v for p, v in mine.items() if p != 0])
    best = max(sorted(ratio), key=lambda la: ratio[la])
    return {"max_first_over_rest": ratio[best], "at_layer": best}


def first_position_curve(rows: ProbeRows) -> dict[str, Any]:
    norms = pick(rows[NAME], "resid_post_norm")
    return {"series": [line({int(r["layer"]): r["value"] for r in norms if r["position"] == 0})]}


def summary(result: dict[str, Any]) -> list[str]:
    first = result["mean_norm"][:, 0]
    return [f"mean ||resid_post|| of the first position, layer by layer: "
            f"{', '.join(f'{float(v):.1f}' for v in first)}"]


ANALYSIS = Analysis(
    name=NAME,
    description="norm of resid_post per layer and position, mean over sequences",
    method="docs/methods/extreme-tokens.md",
    settings=ResidualNormSettings,
    collect=collect,
    reduce=reduce,
    rows=rows,
    remote=True,
    summary=summary,
    atlas=(AtlasView(
        name=NAME, title="Residual-stream norms", headline=headline,
        figure=FigureSpec("curves", "Residual norm of the first token after each layer", first_position_curve,
                          "layer (index)", "||resid_post||", log_y=True),
        notes="max_first_over_rest: the largest ratio, over layers, of the first position's norm to the mean norm "
              "of the other positions."),),
)

DECLARED = (ANALYSIS,)
