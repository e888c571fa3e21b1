"""The `glasshouse` command line.

Each sub-command lives in its own module under app/commands/ and exposes
`register(subparsers) -> None`, which adds its parser and sets `func` (args -> exit code).
Adding a command is adding a file; nothing here changes.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

import app.commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glasshouse", description="Glasshouse: a mechanistic-interpretability workbench."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(app.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"app.commands.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from probes.errors import GlasshouseError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except GlasshouseError as exc:
        print(f"glasshouse: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("glasshouse: interrupted; finished results and checkpoints are kept.", file=sys.stderr)
        return 130


def entry() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())


if __name__ == "__main__":
    entry()
