"""Batch probe runs: plans (models x probes x settings x corpora x seeds), a probe registry, a
resumable JSONL result store and a runner. See docs/batch.md."""

from app.batch.plan import Plan, PlanError, Unit, parse_plan, read_plan
from app.batch.registry import ProbeEntry, Setting, register
from app.batch.runner import RunSummary, run_plan
from app.batch.store import ResultStore, read_results

__all__ = ["Plan", "PlanError", "ProbeEntry", "ResultStore", "RunSummary", "Setting", "Unit", "parse_plan",
           "read_plan", "read_results", "register", "run_plan"]
