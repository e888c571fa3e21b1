"""The atlas registry: analysis name -> batch probe(s) with settings per budget, headline numbers, figure.

Spec: docs/atlas.md. Adding an analysis to the atlas is one `register_atlas(AtlasEntry(...))` in
app/atlas/analyses.py (its probes must be batch probes: app/batch/registry.py).

- headline(rows) gets, for ONE model, {probe name: that unit's rows} and returns {number name: value}
  (floats, ints or short strings such as a head "L3H5").
- figure(rows_by_model, models) gets {model: {probe name: rows}} and returns one plotly figure that
  shows every model side by side (or None when there is nothing to draw).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from probes.errors import InputError

Row = dict[str, Any]
ProbeRows = dict[str, list[Row]]
Headline = Callable[[ProbeRows], dict[str, Any]]
FigureFn = Callable[[dict[str, ProbeRows], list[str]], Any]


@dataclass(frozen=True)
class Budget:
    """How much work an atlas run does: one corpus for every analysis, and whose per-analysis settings."""

    name: str
    corpus: dict[str, Any]
    settings_of: str = ""  # the budget name the entries' settings are looked up under (default: name)

    def key(self) -> str:
        return self.settings_of or self.name


BUDGETS = {
    "small": Budget("small", {"domain": "prose", "n": 8, "length": 64}),
    "standard": Budget("standard", {"domain": "prose", "n": 32, "length": 128}),
}


@dataclass(frozen=True)
class AtlasEntry:
    """One analysis of the atlas."""

    name: str
    title: str
    probes: dict[str, dict[str, dict[str, Any]]]  # probe -> budget name -> settings (defaults fill the rest)
    headline: Headline
    figure: FigureFn | None = None
    notes: str = ""

    def settings(self, budget: Budget) -> dict[str, dict[str, Any]]:
        """probe -> the settings this budget asks for."""
        out = {}
        for probe, per_budget in self.probes.items():
            if budget.key() not in per_budget:
                raise InputError(f"Atlas analysis '{self.name}' has no settings for budget '{budget.key()}' "
                                 f"(it has: {', '.join(sorted(per_budget))}).")
            out[probe] = dict(per_budget[budget.key()])
        return out


def every_budget(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The same settings under every built-in budget."""
    return {name: dict(settings) for name in BUDGETS}


_ATLAS: dict[str, AtlasEntry] = {}


def register_atlas(entry: AtlasEntry, replace: bool = False) -> AtlasEntry:
    """Add an analysis to the atlas (a taken name raises unless replace=True)."""
    if entry.name in _ATLAS and not replace and _ATLAS[entry.name] is not entry:
        raise InputError(f"An atlas analysis named '{entry.name}' is already registered.")
    _ATLAS[entry.name] = entry
    return entry


def atlas_entries(names: list[str] | None = None) -> list[AtlasEntry]:
    """The registered analyses in registration order (or the named ones; unknown names raise)."""
    import app.atlas.analyses  # noqa: F401  (registers the entries)

    if names is None:
        return list(_ATLAS.values())
    unknown = [n for n in names if n not in _ATLAS]
    if unknown:
        raise InputError(f"Unknown atlas analysis {', '.join(map(repr, unknown))}. Known: {', '.join(_ATLAS)}.")
    return [_ATLAS[n] for n in names]


def atlas_names() -> list[str]:
    return [e.name for e in atlas_entries()]
