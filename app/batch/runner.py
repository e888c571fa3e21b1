"""Run a checked plan unit by unit, resumably, with a progress bar and figures per unit.

Spec: docs/batch.md. Order per unit: compute rows -> write its figures (atomic) ->
append its rows (one fsync'd append) -> append its done-marker (fsync'd). A kill anywhere leaves a
folder that the next run of the same plan completes without recomputing or duplicating a unit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from app.batch import registry
from app.batch.plan import Plan, Unit
from app.batch.store import ResultStore
from probes.io import write_json
from probes.progress import Reporter, as_reporter
from probes.results import versions
from probes.runfolder import hold

Loader = Callable[[Plan, str], Any]
Hook = Callable[[str, int, Unit], None]
ROW_FIELDS = ("unit", "model", "probe", "settings", "corpus", "seed", "backend", "versions", "metric", "value",
              "layer", "head", "position")


@dataclass
class RunSummary:
    """What a run did: units in the plan, skipped as already done, computed now; where results are."""

    folder: Path
    total: int
    skipped: int
    computed: int
    recovered: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "total": self.total, "skipped": self.skipped, "computed": self.computed,
                "recovered": self.recovered, "seconds": round(self.seconds, 2)}


def default_loader(plan: Plan, spec: str) -> Any:
    """Load a model for a plan: a HookedModel (local) or an nnsight LanguageModel (ndif backends)."""
    from probes.model.backends import open_model

    return open_model(spec, plan.backend, device=plan.device, dtype=plan.dtype, device_map=plan.device_map)


def _tokenizer(model: Any) -> Any:
    return model.tokenizer


def run_plan(
    plan: Plan,
    folder: str | Path,
    loader: Loader | None = None,
    progress: bool = True,
    hook: Hook | None = None,
    reporter: Reporter | None = None,
) -> RunSummary:
    """Run every unit of the plan not yet done in `folder`; see the module docstring.

    loader(plan, spec) gives the model object the probes get (default: `default_loader`).
    hook(stage, k, unit) is called at each stage of unit k ("start", "computed", "figures", "rows", "done"; tests
    inject failures through it). reporter (probes.progress): units done of the plan's units, a cancel checked
    before each unit; `progress` without one shows a terminal bar.
    The folder is held for the run (probes.runfolder.hold): a second run on it is refused, a stale
    lock of a killed run is taken over, and the killed run's temporary files are removed.
    """
    with hold(folder, "run folder") as out:
        return _run_held(plan, out, loader, as_reporter(reporter, progress, f"batch {plan.name}"), hook)


def _run_held(plan: Plan, out: Path, loader: Loader | None, rep: Reporter, hook: Hook | None) -> RunSummary:
    start = time.time()
    store = ResultStore(out)
    recovered = store.recover()
    write_json(out / "plan.json", plan.to_dict())
    units = plan.units()
    todo = [u for u in units if u.uid not in store.done]
    load = loader or default_loader
    env = versions()
    current: tuple[str, Any] | None = None
    corpora: dict[tuple[str, str, int], Any] = {}
    skipped = len(units) - len(todo)
    rep.update(f"{skipped} units already done", skipped, len(units))
    for k, unit in enumerate(todo):
        rep.check()
        _call(hook, "start", k, unit)
        if current is None or current[0] != unit.model:
            current = (unit.model, load(plan, unit.model))
            corpora.clear()
        model = current[1]
        corpus = _corpus(corpora, model, unit)
        rows = run_unit(plan, unit, model, corpus, env)
        _call(hook, "computed", k, unit)
        if plan.figures:
            write_unit_figures(out, unit, rows, plan.formats)
        _call(hook, "figures", k, unit)
        store.append_unit(unit.uid, rows)
        _call(hook, "rows", k, unit)
        store.mark_done(unit.uid)
        _call(hook, "done", k, unit)
        rep.update(f"{unit.probe} on {unit.model}", skipped + k + 1, len(units))
    rep.close()
    return RunSummary(out, len(units), len(units) - len(todo), len(todo), recovered, time.time() - start)


def _call(hook: Hook | None, stage: str, k: int, unit: Unit) -> None:
    if hook is not None:
        hook(stage, k, unit)


def _corpus(cache: dict[tuple[str, str, int], Any], model: Any, unit: Unit) -> Any:
    from probes.corpus import sample

    c = unit.corpus
    key = (c["domain"], f"{c['n']}x{c['length']}", unit.seed)
    if key not in cache:
        cache[key] = sample(c["domain"], c["n"], c["length"], _tokenizer(model), seed=unit.seed)
    return cache[key]


def run_unit(plan: Plan, unit: Unit, model: Any, corpus: Any, env: dict[str, str]) -> list[dict[str, Any]]:
    """The rows of one unit: the probe's rows with the unit's identity added to each."""
    entry = registry.get(unit.probe)
    torch.manual_seed(unit.seed)
    if plan.backend == "local":
        raw = entry.run(model, dict(unit.settings), corpus, unit.seed)
    else:
        assert entry.run_remote is not None
        remote: bool | str = True if plan.backend == "ndif" else "local"
        raw = entry.run_remote(model, dict(unit.settings), corpus, unit.seed, remote)
    base = {"unit": unit.uid, "model": unit.model, "probe": unit.probe, "settings": unit.settings,
            "corpus": unit.corpus, "seed": unit.seed, "backend": plan.backend, "versions": env}
    return [{**base, "metric": r["metric"], "value": r["value"], "layer": r.get("layer"), "head": r.get("head"),
             "position": r.get("position")} for r in raw]


def figure_base(folder: Path, unit: Unit) -> Path:
    safe_model = unit.model.replace("/", "_").strip("._") or "model"
    return folder / "figures" / f"{unit.probe}__{safe_model}__{unit.uid}"


def write_unit_figures(folder: Path, unit: Unit, rows: list[dict[str, Any]], formats: list[str]) -> list[Path]:
    """Draw the probe's figure from the unit's rows and save it (HTML + figure JSON, plus static formats)."""
    from app.figures.theme import save_figure

    entry = registry.get(unit.probe)
    if entry.figure is None or not rows:
        return []
    fig = entry.figure(rows, unit.label())
    return save_figure(fig, figure_base(folder, unit), formats)
