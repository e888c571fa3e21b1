"""The probe registry: name -> settings schema, run function, optional figure and remote run.

Spec: docs/batch.md. A probe is one `ProbeEntry`. Every declared analysis (probes.analysis.analyses())
is a probe without anything written here: `declared_entry` builds its entry (settings from its settings
dataclass, rows through probes.analysis.run_analysis, the remote run when its collect step is remote, the
figure from app/figures/batch.py's ROW_FIGURES). A probe that is not a declared analysis can still be
registered by hand with `register(ProbeEntry(...))`.

run(model, settings, corpus, seed) returns rows: dicts with at least "metric" and "value", and
optionally "layer", "head", "position" (None where they do not apply). The runner adds the unit's
model, probe, settings, corpus, seed, versions and unit id. run_remote(lm, settings, corpus, seed,
remote) does the same on an nnsight LanguageModel (NDIF), saving only statistics in the trace.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from probes.analysis import Analysis, SettingInfo, run_declared
from probes.errors import InputError

Row = dict[str, Any]
RunFn = Callable[[Any, dict[str, Any], Any, int], list[Row]]
RemoteRunFn = Callable[[Any, dict[str, Any], Any, int, "bool | str"], list[Row]]
FigureFn = Callable[[list[Row], str], Any]

TYPE_NAMES = {int: "integer", float: "number", str: "string", bool: "true/false"}


@dataclass(frozen=True)
class Setting:
    """One setting of a probe: its type, default, and optional choices or bounds."""

    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    open_low: bool = False
    open_high: bool = False

    def problem(self, name: str, value: Any) -> str | None:
        """Why `value` is not acceptable for this setting, or None if it is (probes.analysis.SettingInfo's rule)."""
        return SettingInfo(name, self.type, self.default, self.help, self.minimum, self.maximum, self.choices,
                           self.open_low, self.open_high).problem(value)

    @classmethod
    def of(cls, info: SettingInfo) -> Setting:
        return cls(info.type, info.default, info.help, info.choices, info.minimum, info.maximum, info.open_low,
                   info.open_high)


@dataclass(frozen=True)
class ProbeEntry:
    """A probe the batch runner can run."""

    name: str
    description: str
    run: RunFn
    settings: dict[str, Setting] = field(default_factory=dict)
    figure: FigureFn | None = None
    run_remote: RemoteRunFn | None = None

    def defaults(self) -> dict[str, Any]:
        return {k: s.default for k, s in self.settings.items()}

    def check_settings(self, values: dict[str, Any]) -> list[str]:
        """Every problem with a settings dict (unknown keys, bad types, bad values)."""
        problems = []
        for key, value in values.items():
            if key not in self.settings:
                known = ", ".join(sorted(self.settings)) or "none"
                problems.append(f"probe '{self.name}' has no setting '{key}' (known: {known})")
                continue
            issue = self.settings[key].problem(key, value)
            if issue:
                problems.append(f"probe '{self.name}': {issue}")
        return problems


_REGISTRY: dict[str, ProbeEntry] = {}


def register(entry: ProbeEntry, replace: bool = False) -> ProbeEntry:
    """Add a probe; registering a taken name raises unless replace=True."""
    if entry.name in _REGISTRY and not replace and _REGISTRY[entry.name] is not entry:
        raise InputError(f"A probe named '{entry.name}' is already registered.")
    for key, setting in entry.settings.items():
        issue = setting.problem(key, setting.default)
        if issue:
            raise InputError(f"Probe '{entry.name}' has a bad default: {issue}.")
    _REGISTRY[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def _load_entries() -> None:
    """Register every declared analysis not registered yet (and drop those unregistered since)."""
    from app.declared import analyses

    current = {a.name: a for a in analyses()}
    for name in [n for n in _declared if n not in current]:  # unregistered since
        _declared.pop(name)
        unregister(name)
    for name, analysis in current.items():
        if _declared.get(name) is not analysis:
            _declared[name] = analysis
            register(declared_entry(analysis), replace=True)


_declared: dict[str, Analysis] = {}


def declared_entry(analysis: Analysis) -> ProbeEntry:
    """The batch probe of a declared analysis: its settings, its rows on the unit's corpus, its remote run."""
    from app.figures.batch import ROW_FIGURES

    def run(model: Any, settings: dict[str, Any], corpus: Any, seed: int) -> list[Row]:
        return analysis.rows(run_declared(analysis, model, analysis.make_settings(settings), corpus, seed))

    def run_remote(lm: Any, settings: dict[str, Any], corpus: Any, seed: int, remote: bool | str) -> list[Row]:
        from probes.remote_analyses import RemoteModel

        return run(RemoteModel(lm, remote=remote), settings, corpus, seed)

    return ProbeEntry(name=analysis.name, description=analysis.description, run=run,
                      settings={k: Setting.of(v) for k, v in analysis.info().items()},
                      figure=ROW_FIGURES.get(analysis.name), run_remote=run_remote if analysis.remote else None)


def get(name: str) -> ProbeEntry:
    """The registered probe of that name (InputError listing the known names otherwise)."""
    _load_entries()
    if name not in _REGISTRY:
        raise InputError(f"Unknown probe '{name}'. Known probes: {', '.join(names())}.")
    return _REGISTRY[name]


def names() -> list[str]:
    _load_entries()
    return sorted(_REGISTRY)


def entries() -> Sequence[ProbeEntry]:
    _load_entries()
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]
