"""Run the atlas on the batch machinery and summarise the finished rows.

Spec: docs/atlas.md. `build_plan` turns the atlas registry and a budget into a batch Plan (one corpus,
one seed, one probe unit per distinct (probe, settings)); `run_atlas` runs it with app.batch.run_plan
in the atlas folder (resumable; each model loaded once; the folder held), records each unit's run
time in unit_seconds.json, then writes summary.json and report.html from results.jsonl alone.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.atlas.registry import BUDGETS, AtlasEntry, Budget, ProbeRows, Row, atlas_entries
from app.batch.plan import Plan, Unit, parse_plan
from app.batch.runner import Loader, RunSummary, default_loader, run_plan
from app.batch.store import read_results
from probes.errors import InputError
from probes.io import write_json
from probes.progress import Reporter
from probes.runfolder import hold

SUMMARY = "summary.json"
REPORT = "report.html"
TIMES = "unit_seconds.json"


@dataclass
class AtlasRun:
    """What one atlas invocation did and wrote."""

    folder: Path
    batch: RunSummary
    summary: dict[str, Any]
    report: Path


def budget_of(budget: str | Budget) -> Budget:
    if isinstance(budget, Budget):
        return budget
    if budget not in BUDGETS:
        raise InputError(f"Unknown budget '{budget}'. Choose one of: {', '.join(BUDGETS)}.")
    return BUDGETS[budget]


def plan_probes(entries: list[AtlasEntry], budget: Budget) -> list[dict[str, Any]]:
    """The distinct (probe, settings) pairs the entries need, as batch plan probe tables."""
    from app.batch import registry

    seen: list[dict[str, Any]] = []
    for entry in entries:
        for probe, settings in entry.settings(budget).items():
            table = {"name": probe, "settings": {**registry.get(probe).defaults(), **settings}}
            if table not in seen:
                seen.append(table)
    return seen


def build_plan(models: list[str], budget: str | Budget = "small", entries: list[AtlasEntry] | None = None,
               seed: int = 0, device: str | None = None, dtype: str = "float32", check_models: Any = None) -> Plan:
    """The batch plan of an atlas run (checked like any plan: PlanError lists every problem)."""
    if not models:
        raise InputError("Give at least one model.")
    b = budget_of(budget)
    chosen = atlas_entries() if entries is None else entries
    data: dict[str, Any] = {"name": f"atlas-{b.name}", "models": list(dict.fromkeys(models)), "seeds": [seed],
                            "dtype": dtype, "figures": False, "corpora": [dict(b.corpus)],
                            "probes": plan_probes(chosen, b)}
    if device is not None:
        data["device"] = device
    return parse_plan(data, check_models)


def run_atlas(models: list[str], out: str | Path, budget: str | Budget = "small",
              entries: list[AtlasEntry] | None = None, seed: int = 0, device: str | None = None,
              dtype: str = "float32", loader: Loader | None = None, progress: bool = True,
              hook: Any = None, check_models: Any = None, reporter: Reporter | None = None) -> AtlasRun:
    """Run (or resume) the atlas in `out` and write summary.json and report.html there.

    loader(plan, spec) gives the model (default: app.batch.runner.default_loader); hook is the batch
    runner's stage hook (tests inject kills through it). reporter (probes.progress): one step per unit,
    with its probe and model as text, checked for a cancel before each unit (a cancelled run resumes).
    """
    from app.atlas.report import write_report

    chosen = atlas_entries() if entries is None else entries
    b = budget_of(budget)
    plan = build_plan(models, b, chosen, seed, device, dtype, check_models)
    with hold(out, "--out") as folder:
        times = _read_times(folder)
        started: dict[str, float] = {}
        load = loader or default_loader

        def timed_load(p: Plan, spec: str) -> Any:
            t0 = time.perf_counter()
            model = load(p, spec)
            seconds = time.perf_counter() - t0
            times[f"load:{spec}"] = round(seconds, 3)
            for uid in started:  # the unit whose start triggered the load: its time excludes the load
                started[uid] += seconds
            return model

        done_before = len(set(_done_ids(folder)) & {u.uid for u in plan.units()})
        total = len(plan.units())

        def timed(stage: str, k: int, unit: Unit) -> None:
            if reporter is not None and stage in ("start", "done"):
                finished = done_before + k + (stage == "done")
                reporter.update(f"{unit.probe} on {unit.model} ({finished} of {total} units done)", finished, total)
                if stage == "start":
                    reporter.check()
            if stage == "start":
                started[unit.uid] = time.perf_counter()
            if hook is not None:
                hook(stage, k, unit)
            if stage == "done":
                times[unit.uid] = round(time.perf_counter() - started.pop(unit.uid), 3)
                write_json(folder / TIMES, times)

        batch = run_plan(plan, folder, loader=timed_load, progress=progress, hook=timed)
        rows = read_results(folder)
        summary = summarize(plan, chosen, b, rows, times)
        summary["run"]["seconds_this_run"] = round(batch.seconds, 2)
        summary["run"]["units_computed_this_run"] = batch.computed
        summary["run"]["units_skipped_this_run"] = batch.skipped
        write_json(folder / SUMMARY, summary)
        report = write_report(folder / REPORT, summary, figures_of(summary), folder)
    return AtlasRun(folder, batch, summary, report)


def _done_ids(folder: Path) -> list[str]:
    path = folder / "done.txt"
    return path.read_text().split() if path.is_file() else []


def _read_times(folder: Path) -> dict[str, float]:
    path = folder / TIMES
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def rows_by_model(plan: Plan, budget_settings: dict[str, dict[str, Any]], rows: list[Row]) -> dict[str, ProbeRows]:
    """{model: {probe: rows of the unit with the entry's settings}} for the finished units."""
    by_unit: dict[str, list[Row]] = {}
    for row in rows:
        by_unit.setdefault(row["unit"], []).append(row)
    wanted = budget_settings
    out: dict[str, ProbeRows] = {}
    for unit in plan.units():
        if unit.probe in wanted and _matches(unit.probe, unit.settings, wanted[unit.probe]) and unit.uid in by_unit:
            out.setdefault(unit.model, {})[unit.probe] = by_unit[unit.uid]
    return out


def _matches(probe: str, unit_settings: dict[str, Any], asked: dict[str, Any]) -> bool:
    """Whether a unit's full settings are exactly the asked ones with the probe's defaults filling the rest."""
    from app.batch import registry

    return unit_settings == {**registry.get(probe).defaults(), **asked}


def _unit_settings(plan: Plan, probe: str, asked: dict[str, Any]) -> dict[str, Any]:
    for unit in plan.units():
        if unit.probe == probe and _matches(probe, unit.settings, asked):
            return dict(unit.settings)
    return dict(asked)


def summarize(plan: Plan, entries: list[AtlasEntry], budget: Budget, rows: list[Row],
              times: dict[str, float] | None = None) -> dict[str, Any]:
    """summary.json: headline numbers per analysis and model, the side-by-side table, settings, versions,
    run times. Everything except "run" is a function of the finished rows only (a resumed run gives
    the same)."""
    times = times or {}
    models = plan.models
    analyses: dict[str, Any] = {}
    table: list[dict[str, Any]] = []
    for entry in entries:
        asked = entry.settings(budget)
        per_model = rows_by_model(plan, asked, rows)
        headline = {m: entry.headline(per_model[m]) for m in models if set(per_model.get(m, {})) == set(asked)}
        analyses[entry.name] = {"title": entry.title, "notes": entry.notes,
                                "settings": {p: _unit_settings(plan, p, s) for p, s in asked.items()},
                                "headline": headline, "missing_models": [m for m in models if m not in headline]}
        if entry.figure is not None:
            analyses[entry.name]["figure"] = {**entry.figure.look(),
                                              "data": {m: entry.figure.data(per_model[m]) for m in headline}}
        numbers = list(dict.fromkeys(k for h in headline.values() for k in h))
        table += [{"analysis": entry.name, "number": k, **{m: headline.get(m, {}).get(k) for m in models}}
                  for k in numbers]
    units = plan.units()
    analysis_seconds: dict[str, dict[str, float]] = {}
    for entry in entries:
        for model in models:
            done = [times[u.uid] for u in units if u.model == model and u.uid in times
                    and u.probe in entry.probes and _matches(u.probe, u.settings, entry.settings(budget)[u.probe])]
            if done:
                analysis_seconds.setdefault(model, {})[entry.name] = round(sum(done), 3)
    model_seconds = {m: round(sum(times[u.uid] for u in units if u.model == m and u.uid in times), 3)
                     for m in models}
    loads = {m: times[f"load:{m}"] for m in models if f"load:{m}" in times}
    return {
        "atlas": {"budget": budget.name, "models": models, "corpus": plan.corpora[0], "seed": plan.seeds[0],
                  "dtype": plan.dtype, "device": plan.device},
        "table": table,
        "analyses": analyses,
        "versions": rows[0]["versions"] if rows else {},
        "run": {"analysis_seconds": analysis_seconds, "model_seconds": model_seconds, "load_seconds": loads},
    }


def figures_of(summary: dict[str, Any]) -> dict[str, Any]:
    """{analysis name: plotly figure with every model side by side}, drawn from summary.json data alone
    (app/figures/atlas.py; analyses without a figure or without data are left out)."""
    from app.figures.atlas import atlas_figure

    models = summary["atlas"]["models"]
    figs = {}
    for name, info in summary["analyses"].items():
        fig = atlas_figure(info["figure"], models) if "figure" in info else None
        if fig is not None:
            figs[name] = fig
    return figs
