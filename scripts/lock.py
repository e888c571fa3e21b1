"""The set-up lock, scripts/constraints.txt: every installed distribution at the exact version the suite
passed with (docs/setup.md). scripts/setup.sh installs with it as pip constraints and then checks it.

    python -m scripts.lock write scripts/constraints.txt   # freeze this environment (scripts/lock.sh does it)
    python -m scripts.lock check scripts/constraints.txt   # exit 1 naming each package off the lock

torch is not in the lock: set-up installs it first from GLASSHOUSE_TORCH (default torch==2.13.0).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: the repository root leads sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import datetime
import importlib.metadata as md
import platform
import re

NOT_LOCKED = {"glasshouse", "torch"}


def canonical(name: str) -> str:
    """PEP 503 normalized name: `Foo_Bar.baz` -> `foo-bar-baz`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, str]:
    """Canonical name -> version of every distribution in this environment, ours and torch left out."""
    found: dict[str, str] = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name and canonical(name) not in NOT_LOCKED:
            found[canonical(name)] = dist.version
    return found


def read_lock(path: Path) -> dict[str, str]:
    """Canonical name -> version of each `name==version` line; comments and blank lines skipped."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise SystemExit(f"{path}:{number}: expected `name==version`, found {raw!r}")
        pins[canonical(name.strip())] = version.strip()
    return pins


def write_lock(path: Path) -> None:
    """Freeze this environment into path, with a header saying when and how."""
    pins = installed()
    header = [
        "# The set-up lock (docs/setup.md): exact versions the suite passed with; scripts/setup.sh installs with",
        "# these as pip constraints. Refresh: `bash scripts/lock.sh`, then `bash scripts/test.sh`, then commit.",
        f"# Written {datetime.date.today().isoformat()} on Python {platform.python_version()}, {platform.machine()}, "
        f"{platform.system()}; torch comes from GLASSHOUSE_TORCH.",
    ]
    path.write_text("\n".join(header + [f"{name}=={pins[name]}" for name in sorted(pins)]) + "\n")
    print(f"wrote {len(pins)} pins to {path}")


def off_lock(pins: dict[str, str], have: dict[str, str]) -> list[str]:
    """One line per installed distribution whose version differs from its pin."""
    return [f"{name} {have[name]} (lock: {pins[name]})" for name in sorted(pins) if name in have and have[name] != pins[name]]


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in {"write", "check"}:
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(argv[1])
    if argv[0] == "write":
        write_lock(path)
        return 0
    wrong = off_lock(read_lock(path), installed())
    if wrong:
        print("set-up: these packages differ from the lock " + f"{path}:\n  " + "\n  ".join(wrong) +
              "\nRemove the environment and run the set-up again, or set GLASSHOUSE_UNLOCKED=1 to test "
              "without the lock.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
