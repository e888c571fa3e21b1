"""The `glasshouse` command line.

Each hand-written sub-command lives in its own module under app/commands/ and exposes
`register(subparsers) -> None`, which adds its parser and sets `func` (args -> exit code); COMMANDS lists
them. Every declared analysis (probes.analysis) gets its command from app/commands/analyses.py, added last
so that a hand-written command keeps its name.

`main` is the one error boundary (docs/cli.md): usage errors exit 2 (argparse's own, and UsageError),
foreseeable runtime failures exit 1 with a one-line message (GlasshouseError, file-system errors,
out of memory), Ctrl-C exits 130; only a genuine bug prints a traceback, with its cause and a line saying
how to report it (an ImportError's line says how to repair the environment first).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from app.commands import (
    accuracy,
    analyses,
    atlas,
    batch,
    bb,
    circuit,
    export,
    models,
    sae,
)
from app.commands import app as app_command

COMMANDS = (app_command, accuracy, atlas, batch, bb, circuit, export, models, sae)

REPORT = ("glasshouse: this is a bug in Glasshouse, not a problem with your input. Please report it as an issue "
          "of the Glasshouse project with the command line, the traceback above and the output of "
          "`glasshouse info --json`.")


class HelpFormatter(argparse.HelpFormatter):
    """Shows every option's default, unless its help already says it (or it is an on/off flag)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = str(action.help or "")  # may be a LazyHelp (app/commands/_common.py)
        if (not action.option_strings or action.nargs == 0 or action.default in (None, argparse.SUPPRESS)
                or "default" in text.lower()):
            return text
        default = action.default
        shown = " ".join(map(str, default)) if isinstance(default, list | tuple) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += [sub, *_subparsers(sub)]
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glasshouse", description="Glasshouse: a mechanistic-interpretability workbench."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(subparsers)
    analyses.register(subparsers)
    for p in [parser, *_subparsers(parser)]:
        p.formatter_class = HelpFormatter
    return parser


def _file_error(exc: OSError) -> str:
    path = exc.filename if exc.filename is not None else "a file"
    reason = exc.strerror or str(exc) or type(exc).__name__
    if getattr(exc, "errno", None) == 28:  # ENOSPC
        return f"{path}: no space left on the device. Free some space or write to another --out folder."
    return f"{path}: {reason}. Check that the path exists and that you may read (or write) it."


def _memory_error(exc: BaseException) -> str:
    from probes.errors import cause

    where = "GPU" if "cuda" in type(exc).__name__.lower() or "CUDA" in str(exc) else "main"
    return (f"out of {where} memory ({cause(exc)}). Use fewer or shorter sequences (--n, --seq-len), a smaller "
            "--batch-size, --dtype bfloat16, or a smaller model.")


def _unexpected(prefix: str, exc: Exception) -> None:
    """Print the traceback, then the cause; an ImportError is the environment's (advice), anything else a bug."""
    import traceback

    from probes.errors import cause, environment_advice, fault

    traceback.print_exc()
    if fault(exc) == "environment":
        print(f"{prefix} {cause(exc)}. {environment_advice(exc)} If that does not help, report it as an issue of "
              "the Glasshouse project with the traceback above.", file=sys.stderr)
        return
    print(f"{prefix} {cause(exc)}", file=sys.stderr)
    print(REPORT, file=sys.stderr)


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command inside the error boundary; return its exit status."""
    from probes.errors import GlasshouseError, UsageError

    name = " ".join(str(getattr(args, k)) for k in ("command", "bb_command", "sae_command")
                    if getattr(args, k, None))
    prefix = f"glasshouse {name}: error:" if name else "glasshouse: error:"
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"{prefix} {exc}", file=sys.stderr)
        return 2
    except GlasshouseError as exc:  # BudgetError too: its message says what to reduce
        print(f"{prefix} {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("glasshouse: interrupted; finished results and checkpoints are kept.", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"{prefix} {_file_error(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:
        if _is_oom(exc):
            print(f"{prefix} {_memory_error(exc)}", file=sys.stderr)
            return 1
        _unexpected(prefix, exc)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, message already printed)
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_command(args)


def entry() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())


if __name__ == "__main__":
    entry()
