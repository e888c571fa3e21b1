"""The extreme-token report (`glasshouse extreme`): residual-state peaks, value-state drains, attention-logit
gaps, and the peak ablation.

Spec: docs/methods/extreme-tokens.md ("Extreme-token phenomena", "Where the peak is built"). One whole run on
n prose windows of seq_len tokens (seed; or one `prompt` instead): probes.extreme.extreme_tokens measures them
where the model runs (ModelLike.extreme_statistics), then probes.extreme.peak_ablation zeroes each of
`ablate_layers`' MLP and attention outputs in turn on the first 4 sequences (ModelLike.residual_norms with
zero=: hooks here, an nnsight intervention remotely). The result is the saved document of kind "extreme".
Rows: "peak_layer", and per layer "first_token_resid_norm" and "other_resid_norm_max" (the clean run's mean
over sequences).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probes.analyses.values import integers, integers_check, text_check
from probes.analysis import Analysis, RunContext, setting
from probes.errors import InputError
from probes.rows import Row, as_list

if TYPE_CHECKING:
    from torch import Tensor

    from probes.model.model_like import ModelLike


@dataclass(frozen=True)
class ExtremeReportSettings:
    n: int = setting(8, "prose windows", minimum=1)
    seq_len: int = setting(64, "tokens per window", minimum=2, aliases=("T",))
    prompt: str = setting("", "one prompt instead of corpus windows (e.g. 'Summer is warm. Winter is cold.'; "
                          "default: windows)", check=text_check)
    ablate_layers: str = setting("", "comma-separated layers whose MLP / attention output is zeroed in turn "
                                 "(default: 0, 1 and the layer where the first-token norm jumps, with the one "
                                 "before)", check=integers_check)
    prepend_bos: bool = setting(False, "put the tokenizer's BOS token first (the command's default: the "
                                "tokenizer's own convention)")
    attention: str = setting("fast", "fast (default): measured from each layer's q, k, v under the model's SDPA "
                             "attention, no T x T pattern; patterns: eager patterns and scores reduced in hooks "
                             "(the reference)", choices=("fast", "patterns"))


def inputs(model: ModelLike, settings: ExtremeReportSettings, seed: int) -> Tensor:
    from probes.sinks import inputs_for_regime

    if settings.prompt:
        return model.to_tokens(settings.prompt, prepend_bos=settings.prepend_bos).ids
    return inputs_for_regime(model, "natural", settings.n, settings.seq_len, seed=seed,  # type: ignore[arg-type]
                             prepend_bos=settings.prepend_bos)


def model_check(model: ModelLike, settings: ExtremeReportSettings) -> list[tuple[str, str]]:
    """Ablation layers beyond the model."""
    n_layers = model.facts.n_layers
    bad = [layer for layer in integers(settings.ablate_layers) if layer >= n_layers]
    return [("ablate_layers", f"{bad}: the model has layers 0..{n_layers - 1}")] if bad else []


def compute(model: ModelLike, settings: ExtremeReportSettings, run: RunContext) -> dict[str, Any]:
    from probes.extreme import extreme_tokens, peak_ablation

    problems = model_check(model, settings)
    if problems:
        raise InputError("; ".join(f"{name} {problem}" for name, problem in problems) + ".")
    layers = integers(settings.ablate_layers) or None
    ids = inputs(model, settings, run.seed)
    res = extreme_tokens(model, ids, reporter=run.reporter.part(0.0, 0.4), attention=settings.attention)
    ablation = peak_ablation(model, ids[:4], layers=layers, reporter=run.reporter.part(0.4, 1.0),
                             attention=settings.attention)
    return {"kind": "extreme", "measurements": res.to_dict(), "ablation": ablation.to_dict()}


def rows(result: dict[str, Any]) -> list[Row]:
    s = result["measurements"]  # ExtremeResult.to_dict: the summary's keys at its top level
    out: list[Row] = [{"metric": "peak_layer", "value": int(s["peak_layer"]), "layer": None, "head": None,
                       "position": 0}]
    for name, key in (("first_token_resid_norm", "resid_sink"), ("other_resid_norm_max", "resid_rest_max")):
        out += [{"metric": name, "value": float(v), "layer": layer, "head": None, "position": None}
                for layer, v in enumerate(as_list(s[key]))]
    return out


def summary(result: dict[str, Any]) -> list[str]:
    m, a = result["measurements"], result["ablation"]
    s, at = m, a["measure_layer"]
    peak = int(s["peak_layer"])
    lines = [f"first token {m['str_tokens'][0][0]!r}: ||resid|| peaks at layer {peak} "
             f"({as_list(s['resid_sink'])[peak]:.1f}; largest other {as_list(s['resid_rest_max'])[peak]:.1f})"]
    clean = as_list(a["clean_sink"])[at]
    lines += [f"  zero {row['component']:<4} L{row['layer']}: first-token norm at layer {at} = {row['sink']:.1f} "
              f"(clean {clean:.1f}), largest other {row['rest_max']:.1f}" for row in a["rows"]]
    return lines


EXTREME_REPORT = Analysis(
    name="extreme", document="extreme",
    description="extreme tokens: residual peak, value drain, logit gap, ablations",
    method="docs/methods/extreme-tokens.md", settings=ExtremeReportSettings, compute=compute, rows=rows,
    uses_corpus=False, remote=True, summary=summary, model_check=model_check,
)

DECLARED = (EXTREME_REPORT,)
