"""The two batch probes the atlas adds (also usable in `glasshouse batch` plans).

Spec: docs/atlas.md; both implement docs/methods/extreme-tokens.md through the library:
- extreme_tokens (probes.extreme.extreme_tokens): per layer the residual norm of the sink (position 0)
  and the mean over the other positions; per layer/head the value norm of the sink and of the rest,
  and the mean logit gap. Rows: resid_norm_sink, resid_norm_rest (layer), value_norm_sink,
  value_norm_rest, logit_gap (layer, head).
- dormant_heads (probes.dormant.head_statistics): dormancy per head on the unit's corpus (prose) and on
  a code sample of the same n, length and seed; the entropy detector's row and column entropies on the
  unit's corpus. Rows: dormancy_prose, dormancy_code, row_entropy, column_entropy (layer, head).
"""

from __future__ import annotations

from typing import Any

import torch

from app.batch.builtin import BATCH, BOS, corpus_ids
from app.batch.registry import ProbeEntry, Row, register
from probes.corpus import CorpusSample, sample


def _head_rows(metric: str, values: torch.Tensor) -> list[Row]:
    return [{"metric": metric, "value": float(values[layer, head]), "layer": layer, "head": head, "position": None}
            for layer in range(values.shape[0]) for head in range(values.shape[1])]


def _layer_rows(metric: str, values: torch.Tensor) -> list[Row]:
    return [{"metric": metric, "value": float(values[layer]), "layer": layer, "head": None, "position": 0}
            for layer in range(values.shape[0])]


def run_extreme(model: Any, settings: dict[str, Any], corpus: CorpusSample, seed: int) -> list[Row]:
    """Extreme-token summary (sink vs rest) of probes.extreme.extreme_tokens on the unit's windows."""
    from probes.extreme import extreme_tokens

    ids = corpus_ids(model.tokenizer, corpus, settings["prepend_bos"])
    s = extreme_tokens(model, ids, batch_size=settings["batch_size"]).summary()
    return (_layer_rows("resid_norm_sink", s["resid_sink"]) + _layer_rows("resid_norm_rest", s["resid_rest_mean"])
            + _head_rows("value_norm_sink", s["value_sink"]) + _head_rows("value_norm_rest", s["value_rest"])
            + _head_rows("logit_gap", s["logit_gap"]))


def run_dormant(model: Any, settings: dict[str, Any], corpus: CorpusSample, seed: int) -> list[Row]:
    """Dormancy per head on the unit's corpus and on code windows of the same shape and seed."""
    from probes.dormant import head_statistics

    n, length = corpus.ids.shape
    code = sample("code", int(n), int(length), model.tokenizer, seed=seed)
    stats = head_statistics(model, corpus_ids(model.tokenizer, corpus, settings["prepend_bos"]), settings["batch_size"])
    code_stats = head_statistics(model, corpus_ids(model.tokenizer, code, settings["prepend_bos"]),
                                 settings["batch_size"])
    return (_head_rows("dormancy_prose", stats["dormancy"]) + _head_rows("dormancy_code", code_stats["dormancy"])
            + _head_rows("row_entropy", stats["row_entropy"]) + _head_rows("column_entropy", stats["column_entropy"]))


register(ProbeEntry(
    name="extreme_tokens",
    description="extreme tokens (Guo et al. 2024): residual peak, value drain and logit gap of the sink",
    run=run_extreme,
    settings={"prepend_bos": BOS, "batch_size": BATCH},
), replace=True)
register(ProbeEntry(
    name="dormant_heads",
    description="active-dormant heads (Guo et al. 2024): dormancy on prose vs code, entropy detector",
    run=run_dormant,
    settings={"prepend_bos": BOS, "batch_size": BATCH},
), replace=True)
