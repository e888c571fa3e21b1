"""The sink report (`glasshouse sinks`): Sink_k^eps in each input regime, and, when asked, hidden sinks and the
attention interventions.

Spec: docs/methods/attention-sinks.md ("The sink metric", "Input regimes", "Hidden sinks", "Interventions").
One whole run: probes.sinks.sinks_by_regime draws n sequences of seq_len tokens per regime (the regimes'
own seed) and measures alpha where the model runs (ModelLike.sink_alpha), so the report runs locally and on
a remote backend alike. `interventions`: hidden sinks on 8 natural sequences (seed + 1, shown with
min_queries = 8), then, on a local model only, the ACT calibration-head search and the loss before and after
calibration and first-token scaling (gamma 0.5 and 1.5) on 8 more (seed + 2); a remote run says it left
those out. The result is the saved document of kind "sinks" (its JSON layout predates the declarations and
is kept). Rows: per regime "sink1_<regime>" and "sink_rate_<regime>" per key position (percent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probes.analyses.values import names, names_check
from probes.analysis import Analysis, RunContext, setting
from probes.rows import Row, as_list

if TYPE_CHECKING:
    from probes.model.model_like import ModelLike
    from probes.progress import Reporter

REGIMES = ("natural", "random", "repeat")  # probes.sinks.REGIMES, without importing torch
ATTENTION = ("fast", "patterns")  # probes.sinks.ATTENTION_MODES
LOCAL_ONLY = "calibration and first-token scaling run with --backend local only"


@dataclass(frozen=True)
class SinksReportSettings:
    n: int = setting(100, "sequences per regime", minimum=1)
    seq_len: int = setting(64, "tokens per sequence", minimum=2, aliases=("T",))
    eps: float = setting(0.3, "threshold on alpha, in (0, 1)", minimum=0.0, maximum=1.0, open_low=True,
                         open_high=True)
    regimes: str = setting(",".join(REGIMES), "comma-separated input regimes, from: natural, random, repeat "
                           "(default all three)", check=names_check(REGIMES, "regime"))
    prepend_bos: bool = setting(False, "put the tokenizer's BOS token first (the command's default: the "
                                "tokenizer's own convention)")
    batch_size: int = setting(8, "sequences per forward pass", minimum=1, aliases=("batch",))
    attention: str = setting("fast", "fast (default): alpha from each layer's q and k under the model's SDPA "
                             "attention, no T x T pattern, memory linear in T; patterns: eager patterns reduced in "
                             "hooks (the reference)", choices=ATTENTION)
    interventions: bool = setting(False, "also detect hidden sinks, search calibration heads and measure loss "
                                  "before/after calibration and first-token scaling (gamma 0.5 and 1.5) on 8 "
                                  "natural sequences")


def interventions(model: ModelLike, T: int, seed: int, prepend_bos: bool | None, attention: str,
                  reporter: Reporter) -> dict[str, Any]:
    """Hidden sinks (shown with min_queries=8), the ACT calibration-head search and ZeroTuning on all heads."""
    from probes.hidden_sinks import detect_hidden_sinks, evaluate_intervention, search_calibration_heads
    from probes.sinks import inputs_for_regime

    calib = inputs_for_regime(model, "natural", 8, T, seed=seed + 1, prepend_bos=prepend_bos)  # type: ignore[arg-type]
    hidden = detect_hidden_sinks(model, calib, min_queries=8, reporter=reporter.part(0.0, 0.3), attention=attention)
    out: dict[str, Any] = {"hidden_sinks": hidden.to_dict()}
    if model.backend != "local":
        return {**out, "left_out": LOCAL_ONLY}
    evaluation = inputs_for_regime(model, "natural", 8, T, seed=seed + 2, prepend_bos=prepend_bos)  # type: ignore[arg-type]
    kept, search = search_calibration_heads(model, calib, candidates=6,  # type: ignore[arg-type]
                                            reporter=reporter.part(0.3, 0.8), attention=attention)
    out.update({"calibration_search": search, "calibrated_heads": kept})
    if kept:
        out["calibration"] = evaluate_intervention(model, evaluation, "calibrate", kept,  # type: ignore[arg-type]
                                                   search=search, attention=attention).to_dict()
    every = [(layer, h) for layer in range(model.facts.n_layers) for h in range(model.facts.n_heads)]
    out["scale_first"] = [evaluate_intervention(model, evaluation, "scale_first", every,  # type: ignore[arg-type]
                                                gamma=g, attention=attention).to_dict() for g in (0.5, 1.5)]
    return out


def compute(model: ModelLike, settings: SinksReportSettings, run: RunContext) -> dict[str, Any]:
    from probes.sinks import sinks_by_regime

    end = 0.7 if settings.interventions else 1.0
    results = sinks_by_regime(model, n=settings.n, T=settings.seq_len, eps=settings.eps, seed=run.seed,
                              prepend_bos=settings.prepend_bos, regimes=names(settings.regimes),
                              batch_size=settings.batch_size, reporter=run.reporter.part(0.0, end),
                              attention=settings.attention)
    bundle: dict[str, Any] = {"kind": "sinks", "regimes": {r: res.to_dict() for r, res in results.items()},
                              "sink1": {r: res.sink1 for r, res in results.items()}}
    if settings.interventions:
        bundle["interventions"] = interventions(model, settings.seq_len, run.seed, settings.prepend_bos,
                                                settings.attention, run.reporter.part(end, 1.0))
    return bundle


def rows(result: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for regime, res in result["regimes"].items():
        out.append({"metric": f"sink1_{regime}", "value": float(res["sink1"]), "layer": None, "head": None,
                    "position": 0})
        out += [{"metric": f"sink_rate_{regime}", "value": float(v), "layer": None, "head": None, "position": k}
                for k, v in enumerate(as_list(res["sink_rate"]))]
    return out


def summary(result: dict[str, Any]) -> list[str]:
    lines = []
    for regime, res in result["regimes"].items():
        lines.append(f"Sink_1^{res['eps']} {regime:<8} {res['sink1']:6.2f}%  (n={res['n']}, T={res['T']}, "
                     f"first token BOS: {res['first_is_bos']})")
    left_out = result.get("interventions", {}).get("left_out")
    return lines + ([f"remote backend: hidden sinks measured; {left_out}"] if left_out else [])


SINKS_REPORT = Analysis(
    name="sinks_report", command="sinks", document="sinks",
    description="attention sinks: Sink_k^eps by input regime, hidden sinks, interventions",
    method="docs/methods/attention-sinks.md", settings=SinksReportSettings, compute=compute, rows=rows,
    uses_corpus=False, remote=True, summary=summary,
)

DECLARED = (SINKS_REPORT,)
