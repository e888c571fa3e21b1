"""The result store of a batch run: results.jsonl plus done.txt, written so that a kill never harms them.

Spec: issue 9 and docs/batch.md (resume). A finished unit is written as ONE append of all its rows
to results.jsonl, fsync'd, and only then its id is appended to done.txt and fsync'd. On open,
`recover()` keeps the rows of units named in done.txt and drops everything else (a torn last line,
rows of a unit killed before its done-marker), so a resumed run recomputes exactly those units:
no finished unit is recomputed, lost or duplicated.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from probes.io import atomic_write, to_jsonable

RESULTS = "results.jsonl"
DONE = "done.txt"


def _append(path: Path, data: bytes) -> None:
    """Append bytes in one O_APPEND write loop and fsync before returning."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _complete_lines(path: Path) -> tuple[list[bytes], bool]:
    """The newline-terminated lines of a file, and whether a torn (unterminated) tail was dropped."""
    if not path.exists():
        return [], False
    data = path.read_bytes()
    parts = data.split(b"\n")
    torn = parts[-1] != b""
    return [p for p in parts[:-1] if p.strip()], torn


class ResultStore:
    """results.jsonl and done.txt in one run folder."""

    def __init__(self, folder: str | Path, create: bool = True) -> None:
        self.folder = Path(folder)
        if create:
            self.folder.mkdir(parents=True, exist_ok=True)
        self.results = self.folder / RESULTS
        self.done_file = self.folder / DONE
        self.done: set[str] = set()

    def recover(self) -> dict[str, int]:
        """Read the done-markers, drop rows not backed by one (and torn lines); return what was dropped."""
        lines, torn_done = _complete_lines(self.done_file)
        self.done = {line.decode().strip() for line in lines}
        if torn_done:
            text = "".join(f"{u}\n" for u in sorted(self.done))
            atomic_write(self.done_file, lambda tmp: tmp.write_text(text))
        rows, torn = _complete_lines(self.results)
        kept: list[bytes] = []
        orphans = 0
        for line in rows:
            try:
                uid = json.loads(line)["unit"]
            except (ValueError, KeyError, TypeError):
                orphans += 1
                continue
            if uid in self.done:
                kept.append(line)
            else:
                orphans += 1
        if torn or orphans:
            blob = b"".join(line + b"\n" for line in kept)
            atomic_write(self.results, lambda tmp: tmp.write_bytes(blob))
        return {"torn_lines": int(torn) + int(torn_done), "orphan_rows": orphans, "done_units": len(self.done)}

    def append_unit(self, uid: str, rows: list[dict[str, Any]]) -> None:
        """Write all rows of a finished unit in one append (fsync'd)."""
        blob = "".join(json.dumps(to_jsonable(r), sort_keys=True) + "\n" for r in rows).encode()
        if blob:
            _append(self.results, blob)

    def mark_done(self, uid: str) -> None:
        """Record the unit as finished (after its rows are on disk)."""
        _append(self.done_file, f"{uid}\n".encode())
        self.done.add(uid)

    def read_rows(self) -> list[dict[str, Any]]:
        """Every row of every finished unit (call recover() first in a writer)."""
        lines, _ = _complete_lines(self.results)
        done_lines, _ = _complete_lines(self.done_file)
        done = {line.decode().strip() for line in done_lines}
        out = []
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if row.get("unit") in done:
                out.append(row)
        return out


def read_results(folder: str | Path) -> list[dict[str, Any]]:
    """The rows of a run folder's finished units (safe to call while a run is writing)."""
    return ResultStore(folder, create=False).read_rows()
