"""A run folder belongs to one run at a time (docs/cli.md).

`hold(folder)` checks that the folder can be written (creating it), takes its lock, removes the
temporary files a killed run left behind, and releases the lock on exit. The lock is
`<folder>/.glasshouse.lock`, holding the owner's pid, host, command and start time, locked with
`flock` where the OS has it: the kernel drops that lock when its process dies (even by SIGKILL), so
the lock of a killed run is stale at once and the next run takes it over, with a note. Without
`flock` (Windows) the pid in the file decides: a lock whose pid is no longer running is taken over.
Holding is re-entrant within one process (the CLI and `run_plan` may both hold one folder).
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from probes.errors import RunFolderError
from probes.io import TEMP_SUFFIX

LOCK = ".glasshouse.lock"
# tempfile.mkstemp(prefix=".NAME.", suffix=".tmp") adds 8 characters from [a-z0-9_]
_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX) + "$")

_HELD: dict[Path, tuple[int, Any]] = {}  # resolved folder -> (depth, open lock file)


def check_writable(folder: str | os.PathLike[str], flag: str = "--out") -> Path:
    """Create `folder` if needed and prove that a file can be written in it; RunFolderError says what to do."""
    path = Path(folder).expanduser()
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            raise RunFolderError(f"{flag} {path}: {parent} is a file, not a folder. Give a folder path for {flag}.")
        if parent.exists():
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".glasshouse-write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RunFolderError(f"{flag} {path} cannot be written ({reason}). Choose a folder you can write to, "
                             f"or fix its permissions.") from exc
    return path


def clean_temp_files(folder: str | os.PathLike[str], depth: int = 3) -> list[Path]:
    """Remove the `.NAME.XXXXXXXX.tmp` files of atomic writes a killed run left in `folder`.

    Looks `depth` folder levels down (run folders are shallow; an --out of `.` must not walk a home
    directory). Call only while holding the folder: a live writer's temporary file would go too.
    """
    removed = []
    top = len(Path(folder).parts)
    for root, dirs, files in os.walk(folder):
        if len(Path(root).parts) - top >= depth:
            dirs.clear()
        for name in files:
            if _TEMP.match(name):
                path = Path(root) / name
                try:
                    path.unlink()
                    removed.append(path)
                except OSError:
                    pass
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    except OSError:
        return False
    return True


def _read_owner(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _owner_text(owner: dict[str, Any]) -> str:
    if not owner:
        return "an unknown run"
    started = owner.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, int | float) else "?"
    return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}, started {when}: {owner.get('command', '?')}"


def _busy(folder: Path, owner: dict[str, Any]) -> RunFolderError:
    return RunFolderError(
        f"{folder} is in use by another run ({_owner_text(owner)}). Wait for it to finish, or give another output "
        f"folder; if that run is gone, delete {folder / LOCK}.")


def _me(command: str | None) -> str:
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
          "command": command or " ".join(sys.argv)}
    return json.dumps(me)


def _acquire_flock(folder: Path, command: str | None, note: TextIO | None) -> Any:
    import fcntl

    lock = folder / LOCK
    while True:
        fh = open(lock, "a+")  # noqa: SIM115  (kept open while the lock is held)
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(lock)
            fh.close()
            raise _busy(folder, owner) from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fh.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()  # the holder removed the file between our open and our lock: lock the new one
    previous = _read_owner(lock)
    if previous and note is not None:
        print(f"glasshouse: {folder}: taking over the lock of a run that ended without releasing it "
              f"({_owner_text(previous)}).", file=note)
    fh.seek(0)
    fh.truncate()
    fh.write(_me(command))
    fh.flush()
    return fh


def _acquire_pidfile(folder: Path, command: str | None, note: TextIO | None) -> Any:
    lock = folder / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner = _read_owner(lock)
            if isinstance(owner.get("pid"), int) and _pid_alive(owner["pid"]):
                raise _busy(folder, owner) from None
            if note is not None:
                print(f"glasshouse: {folder}: taking over a stale lock ({_owner_text(owner)}).", file=note)
            lock.unlink(missing_ok=True)
            continue
        os.write(fd, _me(command).encode())
        os.close(fd)
        return None
    raise _busy(folder, _read_owner(lock))


@contextmanager
def hold(folder: str | os.PathLike[str], flag: str = "--out", command: str | None = None,
         note: TextIO | None = None) -> Iterator[Path]:
    """Own `folder` for the duration: writable check, lock (refusing a live owner), temp-file cleanup.

    `note` receives the line saying that a stale lock was taken over (default: sys.stderr).
    """
    note = note or sys.stderr
    path = check_writable(folder, flag)
    key = path.resolve()
    if key in _HELD:
        depth, fh = _HELD[key]
        _HELD[key] = (depth + 1, fh)
    else:
        try:
            fh = _acquire_flock(path, command, note)
        except ImportError:
            fh = _acquire_pidfile(path, command, note)
        _HELD[key] = (1, fh)
        clean_temp_files(path)
    try:
        yield path
    finally:
        depth, fh = _HELD[key]
        if depth > 1:
            _HELD[key] = (depth - 1, fh)
        else:
            del _HELD[key]
            (path / LOCK).unlink(missing_ok=True)  # before closing: a waiting opener then re-checks the inode
            if fh is not None:
                fh.close()
