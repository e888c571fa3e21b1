"""The peak ablation as a declared analysis: the first token's residual norm with one layer's MLP or attention
output zeroed, measured at the layer where the clean norm peaks.

Spec: docs/methods/extreme-tokens.md ("Per-token measurements", the residual peak). One whole run
(`compute`): probes.extreme.peak_ablation picks its layers from the clean run first (layers 0, 1 and where the
first-token norm jumps, with the one before), as `glasshouse extreme` does, on the first n windows. Rows:
"clean_sink", "clean_rest_max" (layer), "measure_layer", and per zeroed (component, layer)
"ablated_sink_<component>" and "ablated_rest_max_<component>" (layer = the zeroed layer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probes.analysis import Analysis, AtlasView, FigureSpec, RunContext, WindowSettings, corpus_ids, setting
from probes.rows import ProbeRows, Row, by_key, scalar, scalar_rows, tensor_rows

if TYPE_CHECKING:
    from probes.model.model_like import ModelLike

NAME = "peak_ablation"


@dataclass(frozen=True)
class PeakAblationSettings(WindowSettings):
    n: int = setting(4, "windows ablated (the first n)", minimum=1)


def compute(model: ModelLike, settings: PeakAblationSettings, run: RunContext) -> dict[str, Any]:
    from probes.extreme import peak_ablation

    assert run.corpus is not None
    ids = corpus_ids(model.tokenizer, run.corpus, settings.prepend_bos)[: settings.n]
    res = peak_ablation(model, ids, batch_size=settings.batch_size, reporter=run.reporter)  # type: ignore[arg-type]
    return {"clean_sink": res.clean_sink, "clean_rest_max": res.clean_rest_max, "measure_layer": res.measure_layer,
            "ablations": [{k: r[k] for k in ("component", "layer", "sink", "rest_max")} for r in res.rows]}


def rows(result: dict[str, Any]) -> list[Row]:
    out = (tensor_rows("clean_sink", result["clean_sink"], ("layer",))
           + tensor_rows("clean_rest_max", result["clean_rest_max"], ("layer",))
           + scalar_rows({"measure_layer": result["measure_layer"]}))
    for r in result["ablations"]:
        for key in ("sink", "rest_max"):
            out.append({"metric": f"ablated_{key}_{r['component']}", "value": r[key], "layer": r["layer"],
                        "head": None, "position": None})
    return out


def ablated(rows: list[Row]) -> dict[tuple[str, int], float]:
    """{(component, zeroed layer): the sink's norm at the measure layer}."""
    prefix = "ablated_sink_"
    return {(r["metric"][len(prefix):], int(r["layer"])): r["value"] for r in rows if r["metric"].startswith(prefix)}


def headline(rows: ProbeRows) -> dict[str, Any]:
    r = rows[NAME]
    at = int(scalar(r, "measure_layer"))
    clean = by_key(r, "clean_sink", "layer")[at]
    after = ablated(r)
    worst = min(sorted(after), key=lambda k: after[k])
    return {"measure_layer": at, "clean_sink_norm": clean, "strongest_ablation": f"{worst[0]} L{worst[1]}",
            "sink_norm_after": after[worst], "sink_norm_kept": after[worst] / clean}


def bars(rows: ProbeRows) -> dict[str, Any]:
    after = ablated(rows[NAME])
    clean = by_key(rows[NAME], "clean_sink", "layer")[int(scalar(rows[NAME], "measure_layer"))]
    keys = sorted(after)
    return {"series": [{"name": "", "x": [f"zero {c} L{la}" for c, la in keys] + ["clean"],
                        "y": [after[k] for k in keys] + [clean]}]}


def summary(result: dict[str, Any]) -> list[str]:
    at = result["measure_layer"]
    return [f"zero {r['component']:<4} L{r['layer']}: first-token norm at layer {at} = {r['sink']:.1f} "
            f"(clean {float(result['clean_sink'][at]):.1f})" for r in result["ablations"]]


PEAK_ABLATION = Analysis(
    name=NAME,
    description="extreme tokens: the sink's residual norm with one layer's MLP / attention zeroed",
    method="docs/methods/extreme-tokens.md", settings=PeakAblationSettings, compute=compute, rows=rows,
    summary=summary,
    atlas=(AtlasView(
        name=NAME, title="Extreme tokens: the peak ablation", headline=headline,
        budgets={"small": {"n": 4, "batch_size": 8}, "standard": {"n": 4, "batch_size": 8}},
        figure=FigureSpec("bars", "First-token residual norm at the peak layer, one output zeroed", bars, "",
                          "||resid_post[peak, 0]||"),
        notes="the first 4 windows, layers 0, 1 and where the first-token norm jumps (with the one before), MLP "
              "and attention output zeroed in turn, as `glasshouse extreme` does."),),
)

DECLARED = (PEAK_ABLATION,)
