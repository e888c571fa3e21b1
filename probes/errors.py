"""Errors a user can act on.

Every error Glasshouse raises for bad input is a `GlasshouseError`: its message says what was
wrong and what to do. Library exceptions from deep inside transformers or torch are caught at
the boundary and re-raised as one of these.
"""

from __future__ import annotations


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
