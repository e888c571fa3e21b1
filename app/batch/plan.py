"""Batch plans: read a TOML file, check every part of it, expand it into units.

Spec: docs/batch.md (the plan format). A unit is one (model, corpus, seed, probe,
settings) combination; its id is a hash of exactly those, so the same unit in a later run (or an
extended plan) has the same id and is not recomputed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.batch import registry
from probes.corpus import DOMAINS
from probes.errors import GlasshouseError, InputError, cause, common_advice

BACKENDS = ("local", "ndif", "ndif-local")
FORMATS = ("html", "png", "svg", "pdf")
DTYPES = ("float32", "fp32", "float16", "fp16", "bfloat16", "bf16")
TOP_KEYS = {"name", "models", "seeds", "device", "dtype", "device_map", "backend", "formats", "figures",
            "corpora", "probes"}
CORPUS_KEYS = {"domain", "n", "length"}
PROBE_KEYS = {"name", "settings", "sweep"}


class PlanError(InputError):
    """A plan has problems; the message lists all of them."""


@dataclass(frozen=True)
class Unit:
    """One piece of work: a probe with full settings on one model, corpus and seed."""

    model: str
    probe: str
    settings: dict[str, Any]
    corpus: dict[str, Any]
    seed: int
    uid: str = field(default="")

    def key(self) -> dict[str, Any]:
        return {"model": self.model, "probe": self.probe, "settings": self.settings, "corpus": self.corpus,
                "seed": self.seed}

    def label(self) -> str:
        sets = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        c = self.corpus
        return f"{self.probe} [{sets}] on {self.model}, {c['domain']} n={c['n']} len={c['length']}, seed {self.seed}"


def unit_id(key: dict[str, Any]) -> str:
    """A stable id of a unit: the first 16 hex digits of the SHA-256 of its canonical JSON."""
    text = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return "u" + hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Plan:
    """A checked plan (see docs/batch.md for every key)."""

    name: str
    models: list[str]
    seeds: list[int]
    corpora: list[dict[str, Any]]
    probes: list[dict[str, Any]]
    device: str | None = None
    dtype: str = "float32"
    device_map: str | dict[str, Any] | None = None
    backend: str = "local"
    formats: list[str] = field(default_factory=lambda: ["html"])
    figures: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("name", "models", "seeds", "device", "dtype", "device_map",
                                               "backend", "formats", "figures", "corpora", "probes")}

    def units(self) -> list[Unit]:
        """Every unit, in run order: model, corpus, seed, probe, settings (model loaded once)."""
        out = []
        for model, corpus, seed, probe in itertools.product(self.models, self.corpora, self.seeds, self.probes):
            for settings in settings_grid(probe):
                key = {"model": model, "probe": probe["name"], "settings": settings, "corpus": corpus, "seed": seed}
                out.append(Unit(model, probe["name"], settings, corpus, seed, unit_id(key)))
        return out


def settings_grid(probe: dict[str, Any]) -> list[dict[str, Any]]:
    """Defaults, overridden by fixed settings, times the cartesian product of the sweep lists."""
    entry = registry.get(probe["name"])
    base = {**entry.defaults(), **probe.get("settings", {})}
    sweep = probe.get("sweep", {})
    keys = list(sweep)
    grid = []
    for values in itertools.product(*(sweep[k] for k in keys)):
        grid.append({k: v for k, v in {**base, **dict(zip(keys, values, strict=True))}.items()})
    return [dict(sorted(g.items())) for g in grid]


def read_plan(path: str | Path, check_models: Callable[[str], None] | None = None) -> Plan:
    """Read and check a TOML plan; raise PlanError listing every problem."""
    p = Path(path)
    if not p.is_file():
        raise PlanError(f"No plan file at {p}. Write a TOML plan (see docs/batch.md).")
    try:
        data = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PlanError(f"{p} is not valid TOML ({cause(exc)}). Fix it; docs/batch.md shows the format.") from exc
    data.setdefault("name", p.stem)
    return parse_plan(data, check_models)


def _model_problem(exc: Exception) -> str:
    """Why a model check failed: a GlasshouseError's own message, else the exception named (with advice for
    a broken environment or memory)."""
    if isinstance(exc, GlasshouseError):
        return str(exc)
    common = common_advice(exc)
    return f"{cause(exc)}. {common}" if common else cause(exc)


def _resolve_model(spec: str) -> None:
    from probes.model.model_specs import resolve_spec

    resolve_spec(spec)


def parse_plan(data: dict[str, Any], check_models: Callable[[str], None] | None = None) -> Plan:
    """Check a plan given as a dict (as TOML reads it); raise PlanError listing every problem.

    Models are checked with probes.model.model_specs.resolve_spec (cheap, nothing is loaded) unless the
    backend is ndif (hub names the server holds; checked there).
    """
    problems: list[str] = []
    for key in sorted(set(data) - TOP_KEYS):
        problems.append(f"unknown key '{key}' (known: {', '.join(sorted(TOP_KEYS))})")
    backend = data.get("backend", "local")
    if backend not in BACKENDS:
        problems.append(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    models = _list_of(data, "models", str, problems, required=True)
    seeds = _list_of(data, "seeds", int, problems, default=[0])
    formats = _list_of(data, "formats", str, problems, default=["html"])
    for fmt in formats:
        if fmt not in FORMATS:
            problems.append(f"format {fmt!r} unknown (choose from {', '.join(FORMATS)})")
    dtype = data.get("dtype", "float32")
    if dtype not in DTYPES:
        problems.append(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    device = data.get("device")
    if device is not None and not isinstance(device, str):
        problems.append(f"device must be a string such as 'cpu' or 'cuda:0', got {device!r}")
    device_map = data.get("device_map")
    if device_map is not None and not isinstance(device_map, str | dict):
        problems.append(f"device_map must be a string ('auto', 'balanced', 'cpu') or a table, got {device_map!r}")
    if not isinstance(data.get("figures", True), bool):
        problems.append("figures must be true or false")
    corpora = [_check_corpus(i, c, problems) for i, c in enumerate(_tables(data, "corpora", problems))]
    probes = [_check_probe(i, p, backend, problems) for i, p in enumerate(_tables(data, "probes", problems))]
    if backend != "ndif":
        check = check_models or _resolve_model
        for spec in models:
            try:
                check(spec)
            except Exception as exc:
                problems.append(f"model '{spec}' cannot be loaded: {_model_problem(exc)}")
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise PlanError(f"The plan has {len(problems)} problem(s); nothing was run:\n{listing}")
    return Plan(name=str(data.get("name", "batch")), models=models, seeds=seeds, corpora=corpora, probes=probes,
                device=device, dtype=dtype, device_map=device_map, backend=backend, formats=formats,
                figures=data.get("figures", True))


def _list_of(data: dict[str, Any], key: str, kind: type, problems: list[str], required: bool = False,
             default: list[Any] | None = None) -> list[Any]:
    if key not in data:
        if required:
            problems.append(f"'{key}' is missing: give a list, e.g. {key} = [...]")
        return list(default or [])
    value = data[key]
    if not isinstance(value, list) or not value or not all(
        isinstance(v, kind) and not (kind is int and isinstance(v, bool)) for v in value
    ):
        problems.append(f"'{key}' must be a non-empty list of {registry.TYPE_NAMES[kind]}s, got {value!r}")
        return []
    return value


def _tables(data: dict[str, Any], key: str, problems: list[str]) -> list[dict[str, Any]]:
    value = data.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        problems.append(f"'{key}' must be one or more [[{key}]] tables")
        return []
    return value


def _check_corpus(i: int, corpus: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    where = f"corpora[{i}]"
    for key in sorted(set(corpus) - CORPUS_KEYS):
        problems.append(f"{where}: unknown key '{key}' (known: domain, n, length)")
    domain = corpus.get("domain")
    if domain not in DOMAINS:
        problems.append(f"{where}: domain must be one of {list(DOMAINS)}, got {domain!r}")
    for key, low in (("n", 1), ("length", 2)):
        value = corpus.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            problems.append(f"{where}: '{key}' must be an integer >= {low}, got {value!r}")
    return {"domain": domain, "n": corpus.get("n"), "length": corpus.get("length")}


def _check_probe(i: int, probe: dict[str, Any], backend: str, problems: list[str]) -> dict[str, Any]:
    where = f"probes[{i}]"
    for key in sorted(set(probe) - PROBE_KEYS):
        problems.append(f"{where}: unknown key '{key}' (known: name, settings, sweep)")
    name = probe.get("name")
    if name not in registry.names():
        problems.append(f"{where}: unknown probe {name!r} (known: {', '.join(registry.names())})")
        return {"name": name}
    entry = registry.get(name)
    if backend != "local" and entry.run_remote is None:
        problems.append(f"{where}: probe '{name}' has no remote (nnsight) version; use backend = 'local'")
    settings = probe.get("settings", {})
    sweep = probe.get("sweep", {})
    if not isinstance(settings, dict) or not isinstance(sweep, dict):
        problems.append(f"{where}: 'settings' and 'sweep' must be tables")
        return {"name": name}
    problems += [f"{where}: {p}" for p in entry.check_settings(settings)]
    for key, values in sweep.items():
        if not isinstance(values, list) or not values:
            problems.append(f"{where}: sweep '{key}' must be a non-empty list of values, got {values!r}")
            continue
        if key in settings:
            problems.append(f"{where}: '{key}' is both fixed in settings and swept")
        for value in values:
            problems += [f"{where}: sweep {p}" for p in entry.check_settings({key: value})]
    return {"name": name, "settings": settings, "sweep": sweep}
