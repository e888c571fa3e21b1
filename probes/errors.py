"""Errors a user can act on.

Every error Glasshouse raises for bad input is a `GlasshouseError`: its message says what was
wrong and what to do. Library exceptions from deep inside transformers or torch are caught at
the boundary and re-raised as one of these, naming the underlying exception with `cause(exc)` and
giving the advice its fault calls for (`fault`, `advice`): a broken environment (an ImportError),
memory, a damaged file or a missing one.
"""

from __future__ import annotations

import errno
import re
import sysconfig
from pathlib import PurePath
from typing import Literal


class GlasshouseError(Exception):
    """Base class: an error whose message names the problem and the fix."""


class ModelLoadError(GlasshouseError):
    """A model spec could not be resolved or loaded."""


class InputError(GlasshouseError, ValueError):
    """A prompt, shape or argument is not acceptable."""


class BudgetError(GlasshouseError, MemoryError):
    """A capture would exceed its memory budget; raised before anything runs."""


class KernelUnavailableError(GlasshouseError, RuntimeError):
    """A GPU kernel was asked for explicitly on a machine that cannot run it."""


class CheckpointError(GlasshouseError):
    """A saved file is missing, truncated or altered."""


class IsolationError(GlasshouseError, RuntimeError):
    """A shared model's modules ran outside its lock while another caller held it."""


class UsageError(InputError):
    """A command-line argument is not acceptable: the CLI exits with status 2 (argparse's usage status)."""


class RunFolderError(GlasshouseError):
    """An output or run folder cannot be used: not writable, a file, or held by another run."""


# ---- naming the cause of a wrapped exception ----

Fault = Literal["environment", "memory", "damaged", "missing", "access"]

ENVIRONMENT_ADVICE = ("A Python package is missing, broken or shadowed by a file of yours with its name: run `pip check`, "
                      "reinstall with `bash scripts/setup.sh`, and rename any such file.")
MEMORY_ADVICE = ("There was not enough memory: free some (close other programs or loaded models), use a smaller dtype "
                 "(bfloat16), or another device.")
ACCESS_ADVICE = "Check the permissions of the file it names: you must be able to read it."

_OWN_PACKAGES = {"probes", "saes", "circuits", "app"}
_IMPORT_FROM = re.compile(r"from '([\w.]+)' \(([^()]+)\)")
_MEMORY_WORDS = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")
_DAMAGED_TYPES = {"JSONDecodeError", "UnicodeDecodeError", "SafetensorError", "UnpicklingError", "EOFError",
                  "BadZipFile", "TOMLDecodeError", "DecodeError", "HeaderTooLarge"}
_DAMAGED_WORDS = ("header too large", "headertoolarge", "invalid load key", "failed reading zip archive",
                  "deserializing header", "incomplete metadata", "not a valid json", "unexpected end of",
                  "truncated", "corrupt")
_MISSING_WORDS = ("does not appear to have a file named", "no such file")


def exception_chain(exc: BaseException) -> list[BaseException]:
    """exc and the exceptions it was raised from or while handling, outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return seen


def _fault_by_class(exc: BaseException) -> Fault | None:
    """The kind of fault one exception shows by its class alone."""
    name = type(exc).__name__
    if isinstance(exc, ImportError):
        return "environment"
    if isinstance(exc, MemoryError) or name == "OutOfMemoryError" or getattr(exc, "errno", None) == errno.ENOMEM:
        return "memory"
    if name in _DAMAGED_TYPES or isinstance(exc, EOFError | UnicodeDecodeError):
        return "damaged"
    if isinstance(exc, FileNotFoundError):
        return "missing"
    return "access" if isinstance(exc, PermissionError) else None


def _fault_by_text(exc: BaseException) -> Fault | None:
    """The kind of fault a wrapping exception's text shows (e.g. a RuntimeError saying 'out of memory')."""
    text = str(exc).lower()
    if "cannot import name" in text or "no module named" in text:
        return "environment"
    if isinstance(exc, RuntimeError) and any(w in text for w in _MEMORY_WORDS):
        return "memory"
    if any(w in text for w in _DAMAGED_WORDS):
        return "damaged"
    return "missing" if any(w in text for w in _MISSING_WORDS) else None


def _classified(exc: BaseException) -> tuple[Fault | None, BaseException]:
    """The fault along exc's chain and the exception that shows it: by class first, then by text
    (outermost first in each pass), so an OSError raised from a JSONDecodeError shows the latter."""
    links = exception_chain(exc)
    for judge in (_fault_by_class, _fault_by_text):
        for link in links:
            found = judge(link)
            if found is not None:
                return found, link
    return None, exc


def fault(exc: BaseException) -> Fault | None:
    """What went wrong, by the exception's class: a broken environment, memory, a damaged or missing
    file, a file that may not be read; None when the class says nothing (e.g. a bad config value)."""
    return _classified(exc)[0]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0][:300].rstrip(".") if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def cause(exc: BaseException) -> str:
    """'<ExceptionType>: <first line of its message>', plus the inner exception that shows the fault
    when exc only wraps it (e.g. an OSError raised from a JSONDecodeError)."""
    text = _describe(exc)
    _, shown = _classified(exc)
    return text if shown is exc else f"{text}; caused by {_describe(shown)}"


def _shadowing(exc: BaseException) -> tuple[str, str] | None:
    """(file, package) when an ImportError came from a file outside site-packages named like the
    package it stands for: a file of the user's shadowing an installed package."""
    name, path = getattr(exc, "name", None), getattr(exc, "path", None)
    found = _IMPORT_FROM.search(str(exc))
    if found and not (name and path):
        name, path = found.groups()
    if not (name and path):
        return None
    top, file = name.split(".")[0], PurePath(path)
    stdlib = sysconfig.get_paths()["stdlib"]
    if (top in _OWN_PACKAGES or {"site-packages", "dist-packages"} & set(file.parts)
            or str(file).startswith(stdlib) or top not in (file.stem, file.parent.name)):
        return None
    return str(file), top


def environment_advice(exc: BaseException) -> str:
    """What to do about an ImportError along exc's chain: name a shadowing file when there is one."""
    _, shown = _classified(exc)
    shadow = _shadowing(shown)
    if shadow is None:
        return ENVIRONMENT_ADVICE
    file, package = shadow
    return (f"{file} may be a file of yours shadowing the installed package '{package}': rename it; "
            "else run `pip check` and reinstall with `bash scripts/setup.sh`.")


def common_advice(exc: BaseException) -> str | None:
    """The advice for a fault that is not the file's: the environment, memory or a file's permissions."""
    kind = fault(exc)
    if kind == "environment":
        return environment_advice(exc)
    return {"memory": MEMORY_ADVICE, "access": ACCESS_ADVICE}.get(kind or "")


def advice(exc: BaseException, damaged: str, other: str | None = None) -> str:
    """The advice for exc's fault: `common_advice`, else `damaged` for a damaged file and `other`
    (default `damaged`) for the rest."""
    common = common_advice(exc)
    if common is not None:
        return common
    return damaged if other is None or fault(exc) == "damaged" else other
