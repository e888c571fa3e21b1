"""The atlas registry: analysis name -> batch probe(s) with settings per budget, headline numbers, figure data.

Spec: docs/atlas.md. Every analysis of the atlas is a declared analysis (probes.analysis; app/declared.py)
that lists its `atlas` views, with nothing written here; `register_atlas(AtlasEntry(...))` still adds an entry
by hand (its probes must be batch probes: app/batch/registry.py).

- headline(rows) gets, for ONE model, {probe name: that unit's rows} and returns {number name: value}
  (floats, ints or short strings such as a head "L3H5").
- figure: a `FigureSpec`: how the analysis's key figure looks (kind, title, axes) and `data(rows)`,
  which turns ONE model's rows into the plain JSON the figure is drawn from. The data of every model
  goes into summary.json; app/figures/atlas.py draws the figure (every model side by side) from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from probes.analysis import AtlasView, FigureSpec
from probes.errors import InputError

__all__ = ["BUDGETS", "AtlasEntry", "Budget", "FigureSpec", "atlas_entries", "atlas_names", "register_atlas"]

Row = dict[str, Any]
ProbeRows = dict[str, list[Row]]
Headline = Callable[[ProbeRows], dict[str, Any]]
FigureData = Callable[[ProbeRows], dict[str, Any]]


@dataclass(frozen=True)
class Budget:
    """How much work an atlas run does: one corpus for every analysis, and whose per-analysis settings."""

    name: str
    corpus: dict[str, Any]
    settings_of: str = ""  # the budget name the entries' settings are looked up under (default: name)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # probe -> settings put over the entries'

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
    figure: FigureSpec | None = None
    notes: str = ""

    def settings(self, budget: Budget) -> dict[str, dict[str, Any]]:
        """probe -> the settings this budget asks for."""
        out = {}
        for probe, per_budget in self.probes.items():
            if budget.key() not in per_budget:
                raise InputError(f"Atlas analysis '{self.name}' has no settings for budget '{budget.key()}' "
                                 f"(it has: {', '.join(sorted(per_budget))}).")
            out[probe] = {**per_budget[budget.key()], **budget.overrides.get(probe, {})}
        return out


def every_budget(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The same settings under every built-in budget."""
    return {name: dict(settings) for name in BUDGETS}


def per_budget(common: dict[str, Any] | None = None, **by_budget: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Settings per built-in budget: `common` under every budget, updated by by_budget[name]."""
    return {name: {**(common or {}), **by_budget.get(name, {})} for name in BUDGETS}


_ATLAS: dict[str, AtlasEntry] = {}


def register_atlas(entry: AtlasEntry, replace: bool = False) -> AtlasEntry:
    """Add an analysis to the atlas (a taken name raises unless replace=True)."""
    if entry.name in _ATLAS and not replace and _ATLAS[entry.name] is not entry:
        raise InputError(f"An atlas analysis named '{entry.name}' is already registered.")
    _ATLAS[entry.name] = entry
    return entry


def declared_entry(probe: str, view: AtlasView) -> AtlasEntry:
    """The atlas entry of a declared analysis's AtlasView (probes.analysis): its settings under every budget."""
    return AtlasEntry(name=view.name, title=view.title, headline=view.headline, figure=view.figure, notes=view.notes,
                      probes={probe: {b: dict(view.budgets.get(b, {})) for b in BUDGETS}})


def atlas_entries(names: list[str] | None = None) -> list[AtlasEntry]:
    """The declared analyses' views (probes/analyses/ order), then the registered entries in registration order
    (or the named ones; unknown names raise)."""
    from app.declared import analyses

    known = {view.name: declared_entry(analysis.name, view) for analysis in analyses() for view in analysis.atlas}
    known.update((name, entry) for name, entry in _ATLAS.items() if name not in known)
    if names is None:
        return list(known.values())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"Unknown atlas analysis {', '.join(map(repr, unknown))}. Known: {', '.join(known)}.")
    return [known[n] for n in names]


def atlas_names() -> list[str]:
    return [e.name for e in atlas_entries()]
