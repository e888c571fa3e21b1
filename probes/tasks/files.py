"""Tasks from files: JSON Lines, JSON and CSV (docs/tasks.md; the format in probes/tasks/format.py).

- `.jsonl`: one example object per line (blank lines skipped); messages name the line.
- `.json`: a list of example objects, or {"examples": [...]}.
- `.csv`: a header with `prompt` and `answer` and optionally `choices` (a JSON list, or texts separated by
  " | "), `corrupted_prompt` and `spans` (a JSON object); empty cells are absent fields. Leading spaces in
  cells are kept (answers such as " Paris" depend on them).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from probes.errors import InputError, cause
from probes.tasks.format import TaskExample, TaskSet, example_from

SUFFIXES = (".jsonl", ".json", ".csv")


def load_task_file(path: str | os.PathLike[str], seed: int = 0) -> TaskSet:
    """The TaskSet in a .jsonl, .json or .csv file (module docstring), split with `seed`."""
    p = Path(path)
    if p.suffix not in SUFFIXES:
        raise InputError(f"{p}: a task file ends in {', '.join(SUFFIXES)} (got '{p.suffix or 'no suffix'}').")
    if not p.is_file():
        raise InputError(f"{p} does not exist or is not a file; give a task file or a built-in task name.")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p} cannot be read as UTF-8 text ({cause(exc)}).") from exc
    reader = {".jsonl": _jsonl, ".json": _json, ".csv": _csv}[p.suffix]
    return TaskSet(p.stem, reader(text, p), seed=seed, source=str(p))


def _jsonl(text: str, path: Path) -> list[TaskExample]:
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where} is not valid JSON ({exc.msg} at column {exc.colno}).") from exc
        out.append(example_from(record, where))
    return out


def _json(text: str, path: Path) -> list[TaskExample]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}).") from exc
    records = data.get("examples") if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise InputError(f"{path}: expected a list of examples or {{\"examples\": [...]}}.")
    return [example_from(r, f"{path} example {i}") for i, r in enumerate(records, start=1)]


def _csv(text: str, path: Path) -> list[TaskExample]:
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise InputError(f"{path} has no rows under its header (a header with prompt,answer comes first).")
    missing = [name for name in ("prompt", "answer") if name not in (rows[0].keys())]
    if missing:
        raise InputError(f"{path}: the header lacks {missing}; it has {list(rows[0].keys())}.")
    out = []
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{path} line {number}"
        record: dict[str, Any] = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
        if "choices" in record:
            record["choices"] = _cell_list(record["choices"], where)
        if "spans" in record:
            try:
                record["spans"] = json.loads(record["spans"])
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: 'spans' is not a JSON object ({exc.msg}).") from exc
        out.append(example_from(record, where))
    return out


def _cell_list(cell: str, where: str) -> list[str]:
    if cell.lstrip().startswith("["):
        try:
            value = json.loads(cell)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: 'choices' looks like a JSON list but is not valid JSON ({exc.msg}).") from exc
        return value if isinstance(value, list) else [cell]
    return cell.split(" | ")
