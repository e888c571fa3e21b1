"""The probe registry: name -> settings schema, run function, optional figure and remote run.

Spec: docs/batch.md. A probe is one `ProbeEntry`; an analysis joins batch plans by
calling `register(ProbeEntry(...))` in a module listed in `ENTRY_MODULES` (imported on first use).

run(model, settings, corpus, seed) returns rows: dicts with at least "metric" and "value", and
optionally "layer", "head", "position" (None where they do not apply). The runner adds the unit's
model, probe, settings, corpus, seed, versions and unit id. run_remote(lm, settings, corpus, seed,
remote) does the same on an nnsight LanguageModel (NDIF), saving only statistics in the trace.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from probes.errors import InputError

Row = dict[str, Any]
RunFn = Callable[[Any, dict[str, Any], Any, int], list[Row]]
RemoteRunFn = Callable[[Any, dict[str, Any], Any, int, "bool | str"], list[Row]]
FigureFn = Callable[[list[Row], str], Any]

TYPE_NAMES = {int: "integer", float: "number", str: "string", bool: "true/false"}
ENTRY_MODULES = ["app.batch.builtin", "app.batch.analyses", "app.atlas.probes"]


@dataclass(frozen=True)
class Setting:
    """One setting of a probe: its type, default, and optional choices or lower bound."""

    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None

    def problem(self, name: str, value: Any) -> str | None:
        """Why `value` is not acceptable for this setting, or None if it is."""
        ok_type = isinstance(value, self.type) and not (self.type is not bool and isinstance(value, bool))
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            ok_type = True
        if not ok_type:
            return f"setting '{name}' must be a {TYPE_NAMES.get(self.type, self.type.__name__)}, got {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"setting '{name}' must be one of {list(self.choices)}, got {value!r}"
        if self.minimum is not None and value < self.minimum:
            return f"setting '{name}' must be at least {self.minimum}, got {value!r}"
        return None


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
_loaded = False


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
    global _loaded
    if not _loaded:
        _loaded = True
        for module in ENTRY_MODULES:
            importlib.import_module(module)


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
