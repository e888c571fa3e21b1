"""Active-dormant heads across two domains as a declared analysis: dormancy on prose and on code, per head.

Spec: docs/methods/extreme-tokens.md ("Active-dormant heads"). The inputs are the unit's corpus windows
followed by code windows of the same number, length and seed; ModelLike.head_statistics gives every
sequence's dormancy, row and column entropy (kept per sequence), and reduce averages each half, as
probes.dormant.head_statistics does per domain. Rows: "dormancy_prose", "dormancy_code", "row_entropy" and
"column_entropy" (the last two on the corpus windows), per (layer, head). The `glasshouse dormant` command
(head ranking and ablations) stays hand-written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probes.analysis import Analysis, AtlasView, FigureSpec, Sums, WindowSettings, corpus_ids
from probes.rows import ProbeRows, Row, by_head, grid_data, head_name, tensor_rows, top_head

if TYPE_CHECKING:
    from torch import Tensor

    from probes.corpus import CorpusSample
    from probes.model.model_like import ModelLike

NAME = "dormant_heads"
DORMANCY_GAP = 0.2  # |dormancy prose - dormancy code| above which a head counts as domain-dependent
Head = tuple[int, int]


@dataclass(frozen=True)
class DormantHeadSettings(WindowSettings):
    """prepend_bos and batch_size only."""


def two_domains(model: ModelLike, settings: DormantHeadSettings, corpus: CorpusSample) -> Tensor:
    """The corpus windows, then code windows of the same shape and seed. With n a multiple of batch_size (the atlas
    budgets) every batch holds one domain, as when each domain is run on its own."""
    import torch

    from probes.corpus import sample

    n, length = corpus.ids.shape
    code = sample("code", int(n), int(length), model.tokenizer, seed=corpus.seed)
    return torch.cat([corpus_ids(model.tokenizer, c, settings.prepend_bos) for c in (corpus, code)])


def collect(model: ModelLike, ids: Tensor, settings: DormantHeadSettings) -> Sums:
    return dict(model.head_statistics(ids))


def mean_by_batches(values: Tensor, batch_size: int) -> Tensor:
    """The mean over sequences, summed batch by batch as probes.dormant.head_statistics adds them."""
    total = values[:batch_size].sum(0)
    for start in range(batch_size, len(values), batch_size):
        total = total + values[start : start + batch_size].sum(0)
    return total / len(values)


def reduce(model: ModelLike, sums: Sums, n: int, settings: DormantHeadSettings) -> dict[str, Any]:
    half, size = n // 2, settings.batch_size
    prose = {name: mean_by_batches(value[:half], size) for name, value in sums.items()}
    code = mean_by_batches(sums["dormancy"][half:], size)
    return {"dormancy_prose": prose["dormancy"], "dormancy_code": code, "row_entropy": prose["row_entropy"],
            "column_entropy": prose["column_entropy"]}


def rows(result: dict[str, Any]) -> list[Row]:
    return [row for name, value in result.items() for row in tensor_rows(name, value)]


def dormancy_gap(rows: list[Row]) -> dict[Head, float]:
    prose, code = by_head(rows, "dormancy_prose"), by_head(rows, "dormancy_code")
    return {k: prose[k] - code[k] for k in prose}


def headline(rows: ProbeRows) -> dict[str, Any]:
    from probes.dormant import COLUMN_ENTROPY_MIN, ROW_ENTROPY_MAX

    r = rows[NAME]
    diff = dormancy_gap(r)
    top = top_head({k: abs(v) for k, v in diff.items()})
    row, col = by_head(r, "row_entropy"), by_head(r, "column_entropy")
    return {"max_dormancy_gap": diff[top], "gap_head": head_name(top),
            "domain_dependent_heads": sum(abs(d) > DORMANCY_GAP for d in diff.values()),
            "entropy_sink_heads": sum(row[k] < ROW_ENTROPY_MAX and col[k] > COLUMN_ENTROPY_MIN for k in row)}


def summary(result: dict[str, Any]) -> list[str]:
    gap = result["dormancy_prose"] - result["dormancy_code"]
    layer, head = divmod(int(gap.abs().argmax()), gap.shape[1])
    return [f"largest prose - code dormancy gap L{layer}H{head}: {float(gap[layer, head]):+.3f}"]


DORMANT_HEADS = Analysis(
    name=NAME,
    description="active-dormant heads: dormancy on the corpus windows and on code windows of the same shape",
    method="docs/methods/extreme-tokens.md", settings=DormantHeadSettings, collect=collect, reduce=reduce,
    rows=rows, remote=True, stacked=("dormancy", "row_entropy", "column_entropy"), inputs=two_domains,
    summary=summary,
    atlas=(AtlasView(
        name=NAME, title="Active-dormant heads (prose vs code)", headline=headline,
        budgets={"small": {"batch_size": 8}, "standard": {"batch_size": 8}},
        figure=FigureSpec("heatmap", "Dormancy on prose minus dormancy on code, per head",
                          lambda rows: grid_data(dormancy_gap(rows[NAME])), "head (index)", "layer (index)",
                          "prose - code", -1.0, 1.0),
        notes=f"domain_dependent_heads: |dormancy prose - dormancy code| > {DORMANCY_GAP}; "
              "entropy_sink_heads: the entropy detector of probes.dormant on the prose windows."),),
)

DECLARED = (DORMANT_HEADS,)
