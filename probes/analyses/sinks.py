"""Attention sinks as declared analyses: Sink_k^eps on corpus windows (`sinks`) and on the spec's other input
regimes (`sinks_regime`).

Spec: docs/methods/attention-sinks.md ("The sink metric", Gu et al. 2024). alpha_k comes from
ModelLike.sink_alpha (locally the statistics path, no T x T pattern; remotely the eager pattern inside the
nnsight trace, only alpha comes back), one [b, layer, head, T] per batch, kept per sequence (`stacked`);
reduce thresholds each (sample, layer, head) at eps and averages, exactly as probes.sinks.compute_sinks.
Rows: "sink1" (the headline, percent), "sink_rate" per key position k (`position` = k, 0-based, percent of
(sample, layer, head) with alpha_k > eps) and "head_sink_rate" per (layer, head) (percent of windows whose
first token has alpha > eps). Atlas: four views (corpus windows, with BOS, random tokens, one repeated token).
The `glasshouse sinks` command keeps its own regimes, hidden sinks and interventions (app/commands/sinks.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probes.analysis import Analysis, AtlasView, Sums, setting
from probes.rows import ProbeRows, Row, by_head, lines_figure, scalar

if TYPE_CHECKING:
    from torch import Tensor

    from probes.corpus import CorpusSample
    from probes.model.model_like import ModelLike

SINK_HEAD_RATE = 50.0  # percent of windows; a head above it counts as a sink head
SINK_NOTE = (f"sink heads: heads whose attention on the first token exceeds eps in more than {SINK_HEAD_RATE:.0f}% "
             "of the windows.")
EPS_HELP = "threshold on alpha, strictly between 0 and 1"


@dataclass(frozen=True)
class SinkSettings:
    eps: float = setting(0.3, EPS_HELP, minimum=0.0, maximum=1.0, open_low=True, open_high=True)
    prepend_bos: bool = setting(False, "put the tokenizer's BOS token before every corpus window")
    batch_size: int = setting(8, "sequences per forward pass", minimum=1)


@dataclass(frozen=True)
class RegimeSettings:
    regime: str = setting("random", "input regime", choices=("natural", "random", "repeat"))
    eps: float = setting(0.3, EPS_HELP, minimum=0.0, maximum=1.0, open_low=True, open_high=True)
    prepend_bos: bool = setting(False, "put the tokenizer's BOS token first")
    batch_size: int = setting(8, "sequences per forward pass", minimum=1)


def collect(model: ModelLike, ids: Tensor, settings: Any) -> Sums:
    """alpha of every sequence of the batch [b, layer, head, T] (kept per sequence)."""
    from probes.sinks import first_is_bos

    first_is_bos(ids, model.facts.bos_token_id, settings.prepend_bos)
    return {"alpha": model.sink_alpha(ids)}


def reduce(model: ModelLike, sums: Sums, n: int, settings: Any) -> dict[str, Any]:
    """Sink_k^eps per k, per head and per sample, in percent (probes.sinks.sink_rate's threshold-then-average)."""
    from probes.sinks import sink_rates

    return sink_rates(sums["alpha"], settings.eps)


def rows(result: dict[str, Any]) -> list[Row]:
    out: list[Row] = [{"metric": "sink1", "value": float(result["sink1"]), "layer": None, "head": None,
                       "position": 0}]
    out += [{"metric": "sink_rate", "value": float(v), "layer": None, "head": None, "position": k}
            for k, v in enumerate(result["sink_rate"].tolist())]
    n_layers, n_heads = result["head_rate"].shape
    out += [{"metric": "head_sink_rate", "value": float(result["head_rate"][layer, head]), "layer": layer,
             "head": head, "position": 0} for layer in range(n_layers) for head in range(n_heads)]
    return out


def regime_inputs(model: ModelLike, settings: RegimeSettings, corpus: CorpusSample) -> Tensor:
    """Windows of the regime, of the corpus's n and length, drawn with the corpus's seed."""
    from probes.sinks import inputs_for_regime

    n, length = corpus.ids.shape
    return inputs_for_regime(model, settings.regime, int(n), int(length), seed=corpus.seed,  # type: ignore[arg-type]
                             prepend_bos=settings.prepend_bos)


def summary(result: dict[str, Any]) -> list[str]:
    return [f"Sink_1 {result['sink1']:.2f}% of (window, layer, head)"]


def headline(probe: str) -> Any:
    def numbers(rows: ProbeRows) -> dict[str, Any]:
        r = rows[probe]
        heads = by_head(r, "head_sink_rate")
        return {"sink1_percent": scalar(r, "sink1"), "sink_heads": sum(v > SINK_HEAD_RATE for v in heads.values()),
                "heads": len(heads)}

    return numbers


def view(name: str, title: str, probe: str, settings: dict[str, Any], figure_title: str, notes: str) -> AtlasView:
    every = {"eps": 0.3, "batch_size": 8, **settings}
    return AtlasView(name=name, title=title, headline=headline(probe), notes=notes,
                     budgets={"small": every, "standard": every},
                     figure=lines_figure(probe, [("sink_rate", "", False)], "position", figure_title,
                                         "key position k (0-based)", "Sink_k (% of heads x windows)"))


SINKS = Analysis(
    name="sinks",
    description="Sink_k^eps (Gu et al. 2024): attention sinks per key position and per head",
    method="docs/methods/attention-sinks.md", settings=SinkSettings, collect=collect, reduce=reduce, rows=rows,
    remote=True, stacked=("alpha",), summary=summary,
    atlas=(
        view("sinks", "Attention sinks (Sink_k^eps, eps = 0.3)", "sinks", {}, "Sink rate by key position (no BOS)",
             SINK_NOTE),
        view("sinks_bos", "Attention sinks with the BOS token first (Sink_k^eps, eps = 0.3)", "sinks",
             {"prepend_bos": True}, "Sink rate by key position (BOS first: k = 0 is the BOS)",
             "the same windows with the tokenizer's BOS put first (the regime Gemma is trained in); a model "
             "without a BOS token cannot run it (leave it out with --analyses)."),
    ),
)

SINKS_REGIME = Analysis(
    name="sinks_regime",
    description="Sink_k^eps on random or repeated-token windows of the corpus's shape",
    method="docs/methods/attention-sinks.md", settings=RegimeSettings, collect=collect, reduce=reduce, rows=rows,
    remote=True, stacked=("alpha",), inputs=regime_inputs, summary=summary,
    atlas=(
        view("sinks_random", "Attention sinks on random tokens", "sinks_regime", {"regime": "random"},
             "Sink rate by key position (uniformly random tokens)",
             "windows of random vocabulary tokens of the corpus's shape (probes.sinks.inputs_for_regime)."),
        view("sinks_repeat", "Attention sinks on one repeated token", "sinks_regime", {"regime": "repeat"},
             "Sink rate by key position (one random token repeated)",
             "windows of one random token repeated (probes.sinks.inputs_for_regime)."),
    ),
)

DECLARED = (SINKS, SINKS_REGIME)
