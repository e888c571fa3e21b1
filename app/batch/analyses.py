"""The sink, dormancy and successor analyses as batch probes (one registry entry each).

- sinks: Sink_k^eps of docs/methods/attention-sinks.md on the unit's corpus windows. Rows:
  metric "sink_rate" (percent, one per key position k, `position` = k, 0-based), "head_sink_rate"
  (percent of windows whose alpha[first token] > eps, per layer/head) and "sink1" (the headline).
- dormancy: probes.dormant.head_statistics (docs/methods/extreme-tokens.md, "Active-dormant heads")
  on the unit's corpus: metrics "dormancy", "row_entropy", "column_entropy" per layer/head.
- successor_score: the first-order successor score of docs/methods/successor-heads.md per
  layer/head (metric "successor_score"; the corpus is not used, the tasks come from the tokenizer).

sinks and dormancy also run through nnsight (probes/remote_analyses.py); each builds its rows with
one function for both paths, so the local and remote rows cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from app.batch.builtin import BATCH, BOS, corpus_ids
from app.batch.registry import ProbeEntry, Row, Setting, register
from probes.corpus import CorpusSample


def _remote_model(lm: Any) -> Any:
    from probes.remote_analyses import RemoteModel

    return lm if isinstance(lm, RemoteModel) else RemoteModel(lm)


def sink_rows(result: Any) -> list[Row]:
    """The rows of the `sinks` probe from a SinkResult (local or remote)."""
    rows: list[Row] = [{"metric": "sink1", "value": float(result.sink1), "layer": None, "head": None, "position": 0}]
    rows += [{"metric": "sink_rate", "value": float(v), "layer": None, "head": None, "position": k}
             for k, v in enumerate(result.sink_rate.tolist())]
    n_layers, n_heads = result.head_rate.shape
    rows += [{"metric": "head_sink_rate", "value": float(result.head_rate[layer, head]), "layer": layer, "head": head,
              "position": 0} for layer in range(n_layers) for head in range(n_heads)]
    return rows


def run_sinks(model: Any, settings: dict[str, Any], corpus: CorpusSample, seed: int) -> list[Row]:
    """Sink_k^eps, per-head sink rates and Sink_1 for the unit's corpus windows."""
    from probes.sinks import compute_sinks

    ids = corpus_ids(model.tokenizer, corpus, settings["prepend_bos"])
    return sink_rows(compute_sinks(model, ids, eps=settings["eps"], prepend_bos=settings["prepend_bos"],
                                   batch_size=settings["batch_size"]))


def remote_sinks(lm: Any, settings: dict[str, Any], corpus: CorpusSample, seed: int, remote: bool | str) -> list[Row]:
    """The `sinks` probe through nnsight: alpha per (sample, layer, head, key) comes back, one request per batch."""
    from probes.remote_analyses import remote_sinks as run

    model = _remote_model(lm)
    ids = corpus_ids(model.tokenizer, corpus, settings["prepend_bos"])
    return sink_rows(run(model, ids, eps=settings["eps"], prepend_bos=settings["prepend_bos"],
                         batch_size=settings["batch_size"], remote=remote))


def dormancy_rows(stats: dict[str, Tensor]) -> list[Row]:
    """One row per (statistic, layer, head) of head_statistics' [layer, head] tensors."""
    return [{"metric": name, "value": float(value[layer, head]), "layer": layer, "head": head, "position": None}
            for name, value in stats.items() for layer in range(value.shape[0]) for head in range(value.shape[1])]


def run_dormancy(model: Any, settings: dict[str, Any], corpus: CorpusSample, seed: int) -> list[Row]:
    """probes.dormant.head_statistics on the unit's corpus: dormancy, row and column entropy per head."""
    from probes.dormant import head_statistics

    ids = corpus_ids(model.tokenizer, corpus, settings["prepend_bos"])
    return dormancy_rows(head_statistics(model, ids, settings["batch_size"]))


def remote_dormancy(lm: Any, settings: dict[str, Any], corpus: CorpusSample, seed: int, remote: bool | str
                    ) -> list[Row]:
    """The dormancy probe through nnsight: only [3, layer, head] sums come back per request."""
    from probes.remote_analyses import remote_head_statistics

    model = _remote_model(lm)
    ids = corpus_ids(model.tokenizer, corpus, settings["prepend_bos"])
    return dormancy_rows(remote_head_statistics(model, ids, settings["batch_size"], remote=remote))


def run_successor(model: Any, settings: dict[str, Any], corpus: CorpusSample, seed: int) -> list[Row]:
    """First-order successor score of every head (the corpus is not used)."""
    from probes.successor.ov import OVSettings
    from probes.successor.score import score_heads

    scores = score_heads(model, settings=OVSettings(norm=settings["norm"], source=settings["source"])).scores
    return [{"metric": "successor_score", "value": float(scores[layer, head]), "layer": layer, "head": head,
             "position": None} for layer in range(scores.shape[0]) for head in range(scores.shape[1])]


register(ProbeEntry(
    name="sinks",
    description="Sink_k^eps (Gu et al. 2024): attention sinks per key position and per head",
    run=run_sinks,
    settings={"eps": Setting(float, 0.3, "threshold on alpha, strictly between 0 and 1", minimum=1e-6),
              "prepend_bos": BOS, "batch_size": BATCH},
    run_remote=remote_sinks,
))
register(ProbeEntry(
    name="dormancy",
    description="active-dormant heads: dormancy (sink attention), row and column entropy per head",
    run=run_dormancy,
    settings={"prepend_bos": BOS, "batch_size": BATCH},
    run_remote=remote_dormancy,
), replace=True)
register(ProbeEntry(
    name="successor_score",
    description="first-order successor score per head (Gould et al. 2023)",
    run=run_successor,
    settings={"norm": Setting(str, "auto", "norms on the OV path", choices=("auto", "none", "mlp", "all")),
              "source": Setting(str, "mlp0", "token representation the head reads", choices=("mlp0", "resid"))},
))
