"""The result store of a batch run: results.jsonl plus done.txt, written so that a kill never harms them.

Spec: docs/batch.md (resume). A finished unit is written as ONE append of all its rows
to results.jsonl, fsync'd, and only then its id is appended to done.txt and fsync'd. On open,
`recover()` keeps the rows of units named in done.txt and drops everything else (a torn last line,
rows of a unit killed before its done-marker), so a resumed run recomputes exactly those units:
no finished unit is recomputed, lost or duplicated.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from probes.io import atomic_write, fsync_dir, to_jsonable

RESULTS = "results.jsonl"
DONE = "done.txt"


def _append(path: Path, data: bytes) -> None:
    """Append bytes in one O_APPEND write loop and fsync before returning (and the folder, for a new file)."""
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        fsync_dir(path.parent)


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
        """Read the done-markers, drop rows not backed by one (and torn lines); return what was dropped.

        A unit marked done twice (two runs on one folder before run folders were locked) whose rows
        are one block written twice keeps one copy.
        """
        lines, torn_done = _complete_lines(self.done_file)
        marks = [line.decode().strip() for line in lines]
        self.done = set(marks)
        twice = {uid: n for uid, n in Counter(marks).items() if n > 1}
        if torn_done or twice:
            text = "".join(f"{u}\n" for u in dict.fromkeys(marks))
            atomic_write(self.done_file, lambda tmp: tmp.write_text(text))
        rows, torn = _complete_lines(self.results)
        kept: dict[str, list[bytes]] = {}
        orphans = 0
        for line in rows:
            try:
                uid = json.loads(line)["unit"]
            except (ValueError, KeyError, TypeError):
                orphans += 1
                continue
            if uid in self.done:
                kept.setdefault(uid, []).append(line)
            else:
                orphans += 1
        duplicates = 0
        for uid, n in twice.items():
            block = _repeated_block(kept.get(uid, []), n)
            if block is not None:
                duplicates += len(kept[uid]) - len(block)
                kept[uid] = block
        if torn or orphans or duplicates:
            blob = b"".join(line + b"\n" for unit_rows in kept.values() for line in unit_rows)
            atomic_write(self.results, lambda tmp: tmp.write_bytes(blob))
        return {"torn_lines": int(torn) + int(torn_done), "orphan_rows": orphans, "duplicate_rows": duplicates,
                "done_units": len(self.done)}

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


def _repeated_block(lines: list[bytes], times: int) -> list[bytes] | None:
    """The block that `lines` repeats exactly `times` times, else None."""
    if not lines or len(lines) % times:
        return None
    block = lines[: len(lines) // times]
    return block if block * times == lines else None


def read_results(folder: str | Path) -> list[dict[str, Any]]:
    """The rows of a run folder's finished units (safe to call while a run is writing)."""
    return ResultStore(folder, create=False).read_rows()
