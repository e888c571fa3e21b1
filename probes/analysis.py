"""One home per analysis: a declared `Analysis` that every consumer runs (docs/architecture.md, "Analyses").

An analysis is declared once, in its own module, as an `Analysis`:

- `settings`: a dataclass whose fields are `setting(...)`s: the type (from the annotation), default, help,
  range and choices. It is the single source of the command's options, the batch plan's keys, the atlas's
  budgets and a page's controls.
- `collect(model, ids, settings)`: one batch of token ids [b, T] -> a dict of tensors, each a SUM over the
  batch's sequences, except the names in `stacked`: per-sequence values [b, ...] that the runner concatenates
  (for a reduce that needs every sequence, e.g. a per-sample rate). It may use only what `ModelLike` (probes/model/model_like.py) offers, so the same collect
  step runs on a local HookedModel and, with `remote=True`, on a RemoteModel whose methods run nnsight traces
  (only the statistics come back). Remote support is this property of the collect step, not a second copy.
- `reduce(model, sums, n, settings)`: the sums over all n sequences -> the result (a dict ready for JSON); it
  may read the model's facts and tokens (ModelLike), never run it.
- `rows(result)`: the result as batch rows ({"metric", "value", "layer", "head", "position"}).
- `inputs(model, settings, corpus)`: the [n, T] ids the analysis runs on (default: the corpus windows, with
  the tokenizer's BOS first when the settings have `prepend_bos` true).
- or, instead of collect and reduce, `compute(model, settings, RunContext(corpus, seed, reporter))`: one whole
  run for an analysis that is not a sum over batches (the peak ablation picks its layers from a clean run;
  successor heads read weights or make their own prompts; circuits and SAEs train or search). It runs where
  the caller is (see remote below); `uses_corpus=False` when it makes its own inputs. `run_declared` runs either form.
- `atlas`: the analysis's atlas views (`AtlasView`: budgets, headline numbers, key figure); optional.
- `summary(result)`: the lines the command prints; optional.
- `model_check(model, settings)`: what a setting asks that the loaded model does not have (a layer or head
  beyond it), as (setting name, problem) pairs; the command turns them into usage errors naming its options.
- `document`: for a report whose result is itself a saved document of an older, public JSON format (the
  `glasshouse sinks` report, kind "sinks"): the command writes the result as is under that kind instead of
  the generic kind "analysis" layout, so saved runs and the scripts reading them keep working. `command`
  names the command when it differs from the name.

A whole-run analysis may declare `remote=True` too: its compute then asks the model only for what ModelLike
offers (the measurements run where the model is), and the parts that need a local model's hooks (ablations,
interventions, weights) check `model.backend` and are left out, saying so in the result.

`run_analysis` is the one runner: batches, progress and cancel (probes.progress), and a checkpoint of the
running sums after every batch (a killed run resumes where it stopped). The command line
(app/commands/analyses.py), batch plans (app/batch/registry.py) and the atlas (app/atlas/registry.py) build
their entries from `analyses()`; nothing in app/ changes for a new analysis.

This module and the analysis modules' top levels import no torch: the command line builds its parser from
the declarations (tests/app/test_startup.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probes.errors import InputError

if TYPE_CHECKING:
    from torch import Tensor

    from probes.corpus import CorpusSample
    from probes.model.model_like import ModelLike
    from probes.progress import Reporter

Row = dict[str, Any]
Sums = dict[str, "Tensor"]
SETTING_TYPES = (int, float, str, bool)
TYPE_NAMES = {int: "integer", float: "number", str: "string", bool: "true/false"}
FIGURE_KINDS = ("heatmap", "curves", "bars")


# --- settings ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SettingInfo:
    """One setting of an analysis: name, type, default, help, and its allowed values."""

    name: str
    type: type
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    open_low: bool = False  # minimum itself excluded
    open_high: bool = False
    aliases: tuple[str, ...] = ()  # other names it is known by (old spellings; the command line accepts them too)
    check: Callable[[Any], str | None] | None = None  # a value's problem beyond type and range (e.g. a list's items)

    def problem(self, value: Any) -> str | None:
        """Why `value` is not acceptable, or None if it is."""
        ok = isinstance(value, self.type) and not (self.type is not bool and isinstance(value, bool))
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            return f"setting '{self.name}' must be a {TYPE_NAMES[self.type]}, got {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"setting '{self.name}' must be one of {list(self.choices)}, got {value!r}"
        if self.type is float and not math.isfinite(value):
            return f"setting '{self.name}' must be finite, got {value!r}"
        low_bad = self.minimum is not None and (value <= self.minimum if self.open_low else value < self.minimum)
        high_bad = self.maximum is not None and (value >= self.maximum if self.open_high else value > self.maximum)
        if low_bad or high_bad:
            return f"setting '{self.name}' must be {self.range_text()}, got {value!r}"
        if self.check is not None and (issue := self.check(value)) is not None:
            return f"setting '{self.name}': {issue}"
        return None

    def range_text(self) -> str:
        """The allowed range in words ("at least 1", "in (0, 1)")."""
        if self.minimum is not None and self.maximum is not None:
            left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
            return f"in {left}{self.minimum}, {self.maximum}{right}"
        if self.minimum is not None:
            return f"{'above' if self.open_low else 'at least'} {self.minimum}"
        if self.maximum is not None:
            return f"{'below' if self.open_high else 'at most'} {self.maximum}"
        return "any value"


def setting(default: Any, help: str, *, minimum: float | None = None, maximum: float | None = None,
            choices: tuple[Any, ...] | None = None, open_low: bool = False, open_high: bool = False,
            aliases: tuple[str, ...] = (), check: Callable[[Any], str | None] | None = None) -> Any:
    """A settings-dataclass field: its default, help text and allowed values (the type is the annotation's).

    aliases: other names of the setting (old spellings, accepted by the command line as --alias).
    check(value) -> the problem with a value in words, or None: for what type and range cannot say (a
    comma-separated list of layers, head names)."""
    meta = {"help": help, "minimum": minimum, "maximum": maximum, "choices": choices, "open_low": open_low,
            "open_high": open_high, "aliases": aliases, "check": check}
    return field(default=default, metadata={"setting": meta})


def settings_info(settings_class: type) -> dict[str, SettingInfo]:
    """name -> SettingInfo of every field of a settings dataclass (each must be a `setting`)."""
    if not dataclasses.is_dataclass(settings_class):
        raise TypeError(f"{settings_class!r} is not a dataclass; declare settings with @dataclass and setting().")
    hints = typing.get_type_hints(settings_class)
    out = {}
    for f in dataclasses.fields(settings_class):
        meta = f.metadata.get("setting")
        kind = hints[f.name]
        if meta is None or kind not in SETTING_TYPES:
            raise TypeError(f"{settings_class.__name__}.{f.name}: every setting is a setting() of type int, float, "
                            "str or bool.")
        out[f.name] = SettingInfo(f.name, kind, f.default, **meta)
    return out


@dataclass(frozen=True)
class WindowSettings:
    """The settings every analysis of corpus windows has; an analysis's settings add theirs after these."""

    prepend_bos: bool = setting(False, "put the tokenizer's BOS token before every corpus window")
    batch_size: int = setting(8, "sequences per forward pass", minimum=1)


# --- the declaration -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FigureSpec:
    """A key figure as data: its look, and data(one model's rows by probe) -> the JSON it is drawn from.

    data formats (app/figures/atlas.py): heatmap {"x": [...], "y": [...], "z": [[...]]} (one panel per
    model); curves and bars {"series": [{"name", "x", "y", "dash"?}]} (one colour per model).
    """

    kind: str
    title: str
    data: Callable[[dict[str, list[Row]]], dict[str, Any]]
    x_title: str = ""
    y_title: str = ""
    colorbar: str = ""
    zmin: float | None = None
    zmax: float | None = None
    log_y: bool = False

    def __post_init__(self) -> None:
        if self.kind not in FIGURE_KINDS:
            raise InputError(f"Figure kind '{self.kind}' is not one of {', '.join(FIGURE_KINDS)}.")

    def look(self) -> dict[str, Any]:
        """Everything but the data, as stored in an atlas's summary.json."""
        return {"kind": self.kind, "title": self.title, "x_title": self.x_title, "y_title": self.y_title,
                "colorbar": self.colorbar, "zmin": self.zmin, "zmax": self.zmax, "log_y": self.log_y}


@dataclass(frozen=True)
class AtlasView:
    """How an analysis appears in the atlas (docs/atlas.md): settings per budget, headline numbers, figure.

    budgets: budget name -> settings over the analysis's defaults (a budget left out uses the defaults).
    headline(rows by probe name) -> {number name: value}; the analysis's rows are under its own name.
    """

    name: str
    title: str
    headline: Callable[[dict[str, list[Row]]], dict[str, Any]]
    budgets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    figure: FigureSpec | None = None
    notes: str = ""


def _default_inputs(model: ModelLike, settings: Any, corpus: CorpusSample) -> Tensor:
    return corpus_ids(model.tokenizer, corpus, bool(getattr(settings, "prepend_bos", False)))


@dataclass(frozen=True)
class RunContext:
    """What a whole-run analysis (`compute`) gets besides the model and its settings."""

    corpus: CorpusSample | None  # the windows (None when the analysis does not use a corpus)
    seed: int
    reporter: Reporter


@dataclass(frozen=True)
class Analysis:
    """One analysis, declared once (see the module docstring)."""

    name: str
    description: str
    settings: type
    rows: Callable[[dict[str, Any]], list[Row]]
    method: str  # the method page it implements (docs/methods/...)
    collect: Callable[[ModelLike, Tensor, Any], Sums] | None = None
    reduce: Callable[[ModelLike, Sums, int, Any], dict[str, Any]] | None = None
    compute: Callable[[ModelLike, Any, RunContext], dict[str, Any]] | None = None
    uses_corpus: bool = True  # False: the analysis makes its own inputs (tasks from the tokenizer, weights)
    remote: bool = False
    stacked: tuple[str, ...] = ()  # collect's per-sequence outputs, concatenated over batches (not summed)
    inputs: Callable[[ModelLike, Any, CorpusSample], Tensor] = _default_inputs
    summary: Callable[[dict[str, Any]], list[str]] | None = None
    atlas: tuple[AtlasView, ...] = ()
    command: str = ""  # its command's name (default: the name with hyphens)
    # settings checked against the loaded model: (setting name, problem) pairs, before the run starts
    model_check: Callable[[ModelLike, Any], list[tuple[str, str]]] | None = None
    document: str = ""  # set: the result IS a saved document of this kind (its public JSON format), written as is

    def __post_init__(self) -> None:
        if not self.name.replace("_", "").isalnum() or not self.name[0].isalpha():
            raise InputError(f"Analysis name {self.name!r}: use letters, digits and underscores, a letter first.")
        info = settings_info(self.settings)
        if (self.compute is None) == (self.collect is None or self.reduce is None):
            raise TypeError(f"Analysis '{self.name}': declare collect and reduce (batched sums), or compute "
                            "(one whole run), not both.")
        if self.compute is None and "batch_size" not in info:
            raise TypeError(f"Analysis '{self.name}': its settings need a batch_size (sequences per forward pass).")
        if self.document and self.compute is None:
            raise TypeError(f"Analysis '{self.name}': a saved document is the result of one whole run (compute).")
        for s in info.values():
            issue = s.problem(s.default)
            if issue:
                raise InputError(f"Analysis '{self.name}' has a bad default: {issue}.")

    def info(self) -> dict[str, SettingInfo]:
        return settings_info(self.settings)

    def defaults(self) -> dict[str, Any]:
        return {k: s.default for k, s in self.info().items()}

    def check(self, values: Mapping[str, Any]) -> list[str]:
        """Every problem with a settings dict: unknown names, wrong types, values out of range."""
        info = self.info()
        problems = []
        for key, value in values.items():
            if key not in info:
                problems.append(f"analysis '{self.name}' has no setting '{key}' (known: {', '.join(sorted(info))})")
            elif (issue := info[key].problem(value)) is not None:
                problems.append(f"analysis '{self.name}': {issue}")
        return problems

    def make_settings(self, values: Mapping[str, Any] | None = None) -> Any:
        """The settings object from a dict over the defaults (InputError naming every problem)."""
        values = dict(values or {})
        problems = self.check(values)
        if problems:
            raise InputError("; ".join(problems) + ".")
        info = self.info()
        return self.settings(**{k: float(v) if info[k].type is float else v for k, v in values.items()})


# --- the registry --------------------------------------------------------------------------------------

_ANALYSES: dict[str, Analysis] = {}


def register_analysis(analysis: Analysis, replace: bool = False) -> Analysis:
    """Declare an analysis to every consumer (a taken name raises unless replace=True)."""
    if analysis.name in _ANALYSES and not replace and _ANALYSES[analysis.name] is not analysis:
        raise InputError(f"An analysis named '{analysis.name}' is already registered.")
    _ANALYSES[analysis.name] = analysis
    return analysis


def unregister_analysis(name: str) -> None:
    _ANALYSES.pop(name, None)


def analyses() -> list[Analysis]:
    """Every declared analysis: the built-in ones (probes/analyses/) and any registered since."""
    import probes.analyses  # noqa: F401  (declares the built-in analyses)

    return list(_ANALYSES.values())


def get_analysis(name: str) -> Analysis:
    found = {a.name: a for a in analyses()}
    if name not in found:
        raise InputError(f"Unknown analysis '{name}'. Known: {', '.join(found)}.")
    return found[name]


# --- running -------------------------------------------------------------------------------------------

def corpus_ids(tokenizer: Any, corpus: CorpusSample, prepend_bos: bool) -> Tensor:
    """The corpus windows as ids [n, T], with the tokenizer's BOS as a first column when asked for."""
    import torch

    ids = corpus.ids
    if not prepend_bos:
        return ids
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        raise InputError("prepend_bos=true but the tokenizer has no BOS token; set prepend_bos=false.")
    return torch.cat([torch.full((ids.shape[0], 1), int(bos), dtype=ids.dtype), ids], dim=1)


def run_declared(analysis: Analysis, model: ModelLike, settings: Any, corpus: CorpusSample | None, seed: int = 0,
                 reporter: Reporter | None = None, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """Run a declared analysis the way every consumer does: a whole-run analysis through its compute step, a
    batched one on its inputs from the corpus through run_analysis."""
    from probes.progress import NullReporter

    if analysis.compute is not None:
        return analysis.compute(model, settings, RunContext(corpus, seed, reporter or NullReporter()))
    if corpus is None:
        raise InputError(f"Analysis '{analysis.name}' runs on corpus windows; give a corpus.")
    return run_analysis(analysis, model, settings, analysis.inputs(model, settings, corpus), reporter, checkpoint)


def run_analysis(analysis: Analysis, model: ModelLike, settings: Any, ids: Tensor,
                 reporter: Reporter | None = None, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """Run an analysis on ids [n, T]: collect per batch of settings.batch_size, add the sums (concatenate the
    stacked values), reduce.

    reporter: progress after each batch and a cancel check before it. checkpoint: a file holding the running
    sums after every batch (written atomically); a run given the same file, analysis, settings and ids resumes
    after the last batch it holds, and the file is removed when the run completes.
    """
    from probes.progress import NullReporter

    collect, reduce = analysis.collect, analysis.reduce
    if collect is None or reduce is None:
        raise InputError(f"Analysis '{analysis.name}' is one whole run; use run_declared.")
    if ids.ndim != 2 or ids.shape[0] < 1:
        raise InputError(f"Analysis '{analysis.name}' runs on token ids [n, T] with n >= 1; got {tuple(ids.shape)}.")
    rep = reporter or NullReporter()
    n, size = int(ids.shape[0]), int(settings.batch_size)
    starts = list(range(0, n, size))
    key = _run_key(analysis, settings, ids)
    done, sums = _resume(checkpoint, key)
    for i in range(done, len(starts)):
        rep.check()
        part = collect(model, ids[starts[i] : starts[i] + size], settings)
        sums = part if sums is None else {k: _combine(sums[k], v, k in analysis.stacked) for k, v in part.items()}
        if checkpoint is not None:
            _save_checkpoint(Path(checkpoint), key, i + 1, sums)
        rep.update(f"{analysis.name}: batch {i + 1} of {len(starts)}", i + 1, len(starts))
    assert sums is not None
    result = reduce(model, sums, n, settings)
    if checkpoint is not None:
        Path(checkpoint).unlink(missing_ok=True)
    return result


def _combine(before: Tensor, part: Tensor, stacked: bool) -> Tensor:
    import torch

    return torch.cat([before, part]) if stacked else before + part


def _run_key(analysis: Analysis, settings: Any, ids: Tensor) -> str:
    h = hashlib.sha256(f"{analysis.name}|{dataclasses.asdict(settings)}|{tuple(ids.shape)}".encode())
    h.update(ids.cpu().numpy().tobytes())
    return h.hexdigest()


def _resume(checkpoint: str | Path | None, key: str) -> tuple[int, Sums | None]:
    import torch

    from probes.errors import CheckpointError

    if checkpoint is None or not Path(checkpoint).exists():
        return 0, None
    try:
        saved = torch.load(checkpoint, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{checkpoint}: the analysis checkpoint cannot be read ({type(exc).__name__}); "
                              "delete it to start the run again.") from exc
    if saved.get("key") != key:
        return 0, None  # another run's sums (settings or inputs changed): start afresh
    return int(saved["done"]), dict(saved["sums"])


def _save_checkpoint(path: Path, key: str, done: int, sums: Sums) -> None:
    import torch

    from probes.io import atomic_write

    atomic_write(path, lambda tmp: torch.save({"key": key, "done": done, "sums": sums}, tmp))
