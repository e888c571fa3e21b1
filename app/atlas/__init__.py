"""The model atlas: every registered analysis on one or more models, one self-contained report.

Spec: docs/atlas.md. Built on the batch machinery (app/batch): the atlas turns its registry of
analyses into a batch plan, runs it with the resumable runner (each model loaded once, the run
folder held), then reads the finished rows back and writes summary.json and report.html.
"""

from app.atlas.registry import BUDGETS, AtlasEntry, Budget, atlas_entries, register_atlas
from app.atlas.run import AtlasRun, build_plan, run_atlas, summarize

__all__ = ["BUDGETS", "AtlasEntry", "AtlasRun", "Budget", "atlas_entries", "build_plan", "register_atlas",
           "run_atlas", "summarize"]
