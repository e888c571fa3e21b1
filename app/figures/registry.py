"""Which figures a result draws: result kind -> figure set (docs/app.md, "Figures"; docs/batch.md, "export").

A result's to_dict() records its `kind` (e.g. "sink_result", "circuit"); a command's saved JSON records
the kind of its bundle (e.g. "sinks": every regime of `glasshouse sinks`). `draw(data)` returns the
figures of that kind by name, from the data alone, so the commands that write a result and
`glasshouse export PATH` that draws its saved JSON again give the same figures. A figure is a plotly
Figure or, for the SAE dashboard pages, a finished HTML page (a str).

A new analysis adds its figure functions to app/figures/<analysis>.py and one `@figure_set("kind")`
function here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeAlias

import plotly.graph_objects as go

from probes.errors import InputError, advice, cause

Figure: TypeAlias = "go.Figure | str"  # a plotly figure, or a self-contained HTML page
FigureSet: TypeAlias = Callable[[Mapping[str, Any]], dict[str, Figure]]

_SETS: dict[str, FigureSet] = {}


class UnknownKindError(InputError):
    """A result JSON whose kind the figures package does not know (or that records none)."""


def figure_set(kind: str) -> Callable[[FigureSet], FigureSet]:
    """Register `fn(data) -> {name: figure}` as the figures of results of `kind`."""

    def wrap(fn: FigureSet) -> FigureSet:
        _SETS[kind] = fn
        return fn

    return wrap


def kinds() -> list[str]:
    """Every result kind with figures."""
    return sorted(_SETS)


def kind_of(data: Any, where: str = "this JSON") -> str:
    """The registered kind `data` records; UnknownKindError (saying which kinds exist) otherwise."""
    kind = data.get("kind") if isinstance(data, Mapping) else None
    if kind in _SETS:
        return str(kind)
    known = ", ".join(kinds())
    if kind is None:
        raise UnknownKindError(
            f"{where} records no result kind, so its figures cannot be drawn. Give a result JSON written by a "
            f"Glasshouse command (kinds with figures: {known}), or a run folder with saved figures "
            "(*.plotly.json); a result saved by an older version needs its command run again.")
    raise UnknownKindError(f"{where} is a result of kind {kind!r}, which has no figures. Kinds with figures: {known}.")


def draw(data: Mapping[str, Any], where: str = "this JSON") -> dict[str, Figure]:
    """Every figure of a result (to_dict() data, live or loaded from JSON), by figure name."""
    return _SETS[kind_of(data, where)](data)


def draw_file(path: str | Path) -> dict[str, Figure]:
    """Every figure of a saved result JSON."""
    import json

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"Cannot read {path} as JSON ({cause(exc)}). " + advice(
            exc, damaged="Give a result JSON written by a Glasshouse command.")) from exc
    return draw(data, where=str(path))


# ---- figure sets, one per kind ----

@figure_set("sink_result")
def _sink_result(data: Mapping[str, Any]) -> dict[str, Figure]:
    from app.figures.sinks import first_token_heatmap, sink_rate_by_regime, token_view

    return {"sink_rate_by_regime": sink_rate_by_regime({str(data["regime"]): data}),
            "first_token_heatmap": first_token_heatmap(data), "token_view": token_view(data)}


@figure_set("sinks")
def _sinks(data: Mapping[str, Any]) -> dict[str, Figure]:
    """`glasshouse sinks`: {"regimes": {regime: SinkResult.to_dict()}, ...}."""
    from app.figures.sinks import first_token_heatmap, sink_rate_by_regime, token_view

    regimes = data["regimes"]
    first = next(iter(regimes.values()))
    return {"sink_rate_by_regime": sink_rate_by_regime(regimes), "first_token_heatmap": first_token_heatmap(first),
            "token_view": token_view(first)}


@figure_set("extreme_result")
def _extreme_result(data: Mapping[str, Any]) -> dict[str, Figure]:
    from app.figures.sinks import residual_norm_heatmap, residual_norm_lines, value_norm_figure

    return {"residual_norm_heatmap": residual_norm_heatmap(data), "residual_norm_lines": residual_norm_lines(data),
            "value_norms": value_norm_figure(data)}


@figure_set("peak_ablation")
def _peak_ablation(data: Mapping[str, Any]) -> dict[str, Figure]:
    from app.figures.sinks import peak_ablation_figure

    return {"peak_ablation": peak_ablation_figure(data)}


@figure_set("extreme")
def _extreme(data: Mapping[str, Any]) -> dict[str, Figure]:
    """`glasshouse extreme`: {"measurements": ExtremeResult.to_dict(), "ablation": PeakAblation.to_dict()}."""
    return {**_extreme_result(data["measurements"]), **_peak_ablation(data["ablation"])}


@figure_set("zerotuning_layers")
def _zerotuning_layers(data: Mapping[str, Any]) -> dict[str, Figure]:
    from app.figures.tasks import accuracy_by_gamma

    return {"accuracy_by_gamma": accuracy_by_gamma(data)}


@figure_set("zerotuning_heads")
def _zerotuning_heads(data: Mapping[str, Any]) -> dict[str, Figure]:
    from app.figures.tasks import head_change_map

    return {"head_change": head_change_map(data)}


@figure_set("zerotuning_tuned")
def _zerotuning_tuned(data: Mapping[str, Any]) -> dict[str, Figure]:
    from app.figures.tasks import head_change_map

    return {"head_change_on_dev": head_change_map(data["dev"])}


@figure_set("dormant")
def _dormant(data: Mapping[str, Any]) -> dict[str, Figure]:
    from app.figures.sinks import dormancy_scatter

    return {"dormancy_scatter": dormancy_scatter(data)}


@figure_set("successor_scores")
def _successor_scores(data: Mapping[str, Any]) -> dict[str, Figure]:
    from app.figures.successor import confusion_figure, score_heatmap, top_head_bars

    figures: dict[str, Figure] = {"successor_scores": score_heatmap(data),
                                  "successor_top_head_tasks": top_head_bars(data)}
    for task in data["top_confusion"]:
        figures[f"successor_confusion_{task}"] = confusion_figure(data, task)
    return figures


@figure_set("successor_in_context")
def _successor_in_context(data: Mapping[str, Any]) -> dict[str, Figure]:
    from app.figures.successor import dla_heatmap, in_context_top_head_bars

    return {"successor_in_context_dla": dla_heatmap(data),
            "successor_in_context_top_head": in_context_top_head_bars(data)}


@figure_set("successor")
def _successor(data: Mapping[str, Any]) -> dict[str, Figure]:
    """`glasshouse successor`: {"first_order": ..., "in_context": ...} (a remote run has in_context only)."""
    figures = _successor_scores(data["first_order"]) if data.get("first_order") else {}
    if data.get("in_context"):
        figures.update(_successor_in_context(data["in_context"]))
    return figures


@figure_set("circuit")
def _circuit(data: Mapping[str, Any]) -> dict[str, Figure]:
    from app.figures.circuits import circuit_figure, curves_figure

    task = data["task"]["name"]
    figures: dict[str, Figure] = {"faithfulness_curves": curves_figure(data["curves"],
                                                                       f"{task}: faithfulness against circuit size")}
    for label, circuit in data["circuits"].items():
        figures[f"circuit_{label.replace('-', '_')}"] = circuit_figure(circuit, f"{task}, {label} circuit")
    return figures


def bb_run_label(settings: Mapping[str, Any]) -> str:
    """A BB run's name in the figures' legends: attention + optimizer."""
    return f"{settings['attention']}+{settings['optimizer']}"


def bb_evaluation_label(e: Mapping[str, Any]) -> str:
    """One evaluated BB checkpoint's name: its run's settings and folder."""
    s = e["settings"]
    return (f"{bb_run_label(s)} L{s['layers']} d{s['d_model']} batch {s['batch']} "
            f"({Path(e['checkpoint']).parent.name})")


@figure_set("bb_train")
def _bb_train(data: Mapping[str, Any]) -> dict[str, Figure]:
    from app.figures.bb import sink_formation_figure

    return {"bb_sink_formation": sink_formation_figure({bb_run_label(data["settings"]): data["metrics"]})}


def _bb_evaluations(evals: list[Mapping[str, Any]]) -> dict[str, Figure]:
    from app.figures.bb import sink_by_position_figure, sink_formation_figure, token_attention_figure

    labels = [bb_evaluation_label(e) for e in evals]
    figures: dict[str, Figure] = {
        "bb_sink_formation": sink_formation_figure(
            {label: e["training_metrics"] for label, e in zip(labels, evals, strict=True) if e["training_metrics"]}),
        "bb_sink_by_position": sink_by_position_figure(
            {label: e["measures"]["sink_by_position"] for label, e in zip(labels, evals, strict=True)}),
    }
    for i, (label, e) in enumerate(zip(labels, evals, strict=True)):
        figures[f"bb_token_attention_{i}"] = token_attention_figure(
            e["measures"]["token_attn_sink"], e["triggers"],
            title=f"Attention on <s> per query token: {label}, step {e['step']}")
    return figures


@figure_set("bb_evaluation")
def _bb_evaluation(data: Mapping[str, Any]) -> dict[str, Figure]:
    return _bb_evaluations([data])


@figure_set("bb")
def _bb(data: Mapping[str, Any]) -> dict[str, Figure]:
    """`glasshouse bb eval`: {"evaluations": [BBEvaluation.to_dict(), ...]}."""
    return _bb_evaluations(list(data["evaluations"]))


@figure_set("sae_eval")
def _sae_eval(data: Mapping[str, Any]) -> dict[str, Figure]:
    """`glasshouse sae eval`: {"reconstruction": ReconstructionMetrics.to_dict(), "ce": ...}."""
    from app.figures.saes import density_histogram

    return {"density": density_histogram(data["reconstruction"])}


@figure_set("sae_dashboard")
def _sae_dashboard(data: Mapping[str, Any]) -> dict[str, Figure]:
    """saes.dashboard.feature_dashboards: per feature its top contexts, activation histogram and logit effects
    (plotly), and its HTML dashboard page (`feature_<j>`)."""
    from app.figures.saes import feature_activation_histogram, feature_html, feature_top_tokens, logit_figure

    figures: dict[str, Figure] = {}
    for key, entry in data["features"].items():
        figures[f"feature_{key}_hist"] = feature_activation_histogram(entry)
        figures[f"feature_{key}_top"] = feature_top_tokens(entry)
        figures[f"feature_{key}_logits"] = logit_figure(entry)
        figures[f"feature_{key}"] = feature_html(entry, title=f"({data['hook_name']})")
    return figures


@figure_set("sae_prompt")
def _sae_prompt(data: Mapping[str, Any]) -> dict[str, Figure]:
    from app.figures.saes import prompt_figure

    return {"sae_prompt": prompt_figure(dict(data))}


@figure_set("analysis")
def _analysis(data: Mapping[str, Any]) -> dict[str, Figure]:
    """A declared analysis's command result (app/commands/analyses.py): its row figure from the saved rows, if
    it has one (app/figures/batch.py ROW_FIGURES)."""
    from app.figures.batch import ROW_FIGURES

    name = str(data.get("analysis", ""))
    if name not in ROW_FIGURES:
        return {}
    return {name: ROW_FIGURES[name](list(data["rows"]), str(data.get("model", "")))}
