"""The first-order successor score as a batch probe (the sink and dormancy probes are declared analyses now:
probes/analyses/sinks.py and dormancy.py, registered by app/batch/registry.py).

- successor_score: the first-order successor score of docs/methods/successor-heads.md per
  layer/head (metric "successor_score"; the corpus is not used, the tasks come from the tokenizer).
"""

from __future__ import annotations

from typing import Any

from app.batch.registry import ProbeEntry, Row, Setting, register
from probes.corpus import CorpusSample


def run_successor(model: Any, settings: dict[str, Any], corpus: CorpusSample, seed: int) -> list[Row]:
    """First-order successor score of every head (the corpus is not used)."""
    from probes.successor.ov import OVSettings
    from probes.successor.score import score_heads

    scores = score_heads(model, settings=OVSettings(norm=settings["norm"], source=settings["source"])).scores
    return [{"metric": "successor_score", "value": float(scores[layer, head]), "layer": layer, "head": head,
             "position": None} for layer in range(scores.shape[0]) for head in range(scores.shape[1])]


register(ProbeEntry(
    name="successor_score",
    description="first-order successor score per head (Gould et al. 2023)",
    run=run_successor,
    settings={"norm": Setting(str, "auto", "norms on the OV path", choices=("auto", "none", "mlp", "all")),
              "source": Setting(str, "mlp0", "token representation the head reads", choices=("mlp0", "resid"))},
))
