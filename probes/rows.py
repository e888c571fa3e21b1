"""Rows: the flat form of a result that batch plans store and the atlas reads (docs/batch.md).

A row is {"metric", "value", "layer", "head", "position"} (None where an axis does not apply). Builders
turn tensors and lists into rows; readers pick metrics back out of one unit's rows; the figure-data helpers
turn them into the plain JSON an atlas figure is drawn from (probes.analysis.FigureSpec). Every analysis
and the atlas use these, so a row means the same everywhere.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from probes.analysis import FigureSpec

if TYPE_CHECKING:
    from torch import Tensor

Row = dict[str, Any]
ProbeRows = dict[str, list[Row]]
Head = tuple[int, int]
AXES = ("layer", "head")


# --- building rows -------------------------------------------------------------------------------------

def tensor_rows(metric: str, values: Tensor, axes: tuple[str, ...] = AXES) -> list[Row]:
    """One row per entry of a tensor whose dimensions are named by `axes` (layer, head or position)."""
    import torch

    rows = []
    for index in torch.cartesian_prod(*(torch.arange(n) for n in values.shape)).reshape(-1, values.ndim).tolist():
        row: Row = {"metric": metric, "value": float(values[tuple(index)]), "layer": None, "head": None,
                    "position": None}
        row.update(zip(axes, index, strict=True))
        rows.append(row)
    return rows


def ranked_rows(metric: str, values: list[Any]) -> list[Row]:
    """One row per item of a ranked list (position = rank, 0 first)."""
    return [{"metric": metric, "value": v, "layer": None, "head": None, "position": rank}
            for rank, v in enumerate(values)]


def scalar_rows(values: dict[str, Any]) -> list[Row]:
    return [{"metric": k, "value": v, "layer": None, "head": None, "position": None} for k, v in values.items()]


# --- reading rows --------------------------------------------------------------------------------------

def as_list(values: Any) -> list[Any]:
    """A result's values as a list: a tensor's (nested) `tolist()`, or the list itself (a result read from JSON)."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


def pick(rows: list[Row], metric: str) -> list[Row]:
    return [r for r in rows if r["metric"] == metric]


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def head_name(head: Head) -> str:
    return f"L{head[0]}H{head[1]}"


def by_head(rows: list[Row], metric: str) -> dict[Head, Any]:
    return {(int(r["layer"]), int(r["head"])): r["value"] for r in pick(rows, metric)}


def by_key(rows: list[Row], metric: str, key: str) -> dict[int, Any]:
    return {int(r[key]): r["value"] for r in pick(rows, metric)}


def scalar(rows: list[Row], metric: str) -> Any:
    return pick(rows, metric)[0]["value"]


def ranked(rows: list[Row], metric: str) -> list[Any]:
    return [r["value"] for r in sorted(pick(rows, metric), key=lambda r: int(r["position"]))]


def top_head(values: dict[Head, float]) -> Head:
    """The head with the largest value (the first in (layer, head) order on ties)."""
    return max(sorted(values), key=lambda k: values[k])


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


# --- figure data (one model's rows -> JSON) ------------------------------------------------------------

def grid_data(values: dict[Head, Any]) -> dict[str, Any]:
    """{(layer, head): value} -> heatmap data (x heads, y layers, z[layer][head])."""
    layers = sorted({k[0] for k in values})
    heads = sorted({k[1] for k in values})
    z = [[values.get((la, h)) for h in heads] for la in layers]
    return {"x": heads, "y": layers, "z": [[v if finite(v) else None for v in row] for row in z]}


def line(values: dict[int, Any], name: str = "", dash: bool = False) -> dict[str, Any]:
    xs = sorted(values)
    return {"name": name, "x": xs, "y": [values[x] if finite(values[x]) else None for x in xs], "dash": dash}


def heads_figure(probe: str, metric: str, title: str, colorbar: str, zmin: float | None = None,
                 zmax: float | None = None) -> FigureSpec:
    """A layer x head heatmap of one metric."""
    return FigureSpec("heatmap", title, lambda rows: grid_data(by_head(rows[probe], metric)), "head (index)",
                      "layer (index)", colorbar, zmin, zmax)


def lines_figure(probe: str, metrics: list[tuple[str, str, bool]], key: str, title: str, x_title: str,
                 y_title: str, log_y: bool = False) -> FigureSpec:
    """Curves of metrics against a row field (layer or position); metrics: (metric, series name, dashed)."""
    def data(rows: ProbeRows) -> dict[str, Any]:
        return {"series": [line(by_key(rows[probe], m, key), name, dash) for m, name, dash in metrics]}

    return FigureSpec("curves", title, data, x_title, y_title, log_y=log_y)
