"""Pages whose analysis has not merged yet say so instead of failing.

ISSUES maps each analysis module to the issue that delivers it; the app looks the module up at
run time, so a page fills in as soon as its module lands, with no change here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import streamlit as st

# module -> (what it delivers, issue number). One place to correct if an issue is renumbered.
ISSUES: dict[str, tuple[str, int]] = {
    "probes.sinks": ("attention sinks", 3),
    "probes.hidden_sinks": ("hidden sinks", 3),
    "probes.extreme": ("extreme tokens", 3),
    "probes.dormant": ("active/dormant heads", 3),
    "probes.bb": ("the Bigram-Backcopy lab", 3),
    "probes.successor": ("successor heads", 4),
    "circuits": ("circuit discovery", 5),
    "saes": ("sparse autoencoders", 6),
    "saes.registry": ("sparse autoencoders", 6),
}


def import_optional(name: str) -> ModuleType | None:
    """The module if it can be imported, None if it (or its package) does not exist yet.

    A module that exists but fails while importing is a bug and raises as usual. A package whose
    `__init__` is only a placeholder (no public names besides its docstring) counts as not landed.
    """
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            return None
        raise
    if "." not in name and not _has_public_names(module):
        return None
    return module


def _has_public_names(module: ModuleType) -> bool:
    """A package counts as landed when it defines a public name or holds a sub-module."""
    import pkgutil

    if any(not n.startswith("_") for n in vars(module)):
        return True
    return any(True for _ in pkgutil.iter_modules(getattr(module, "__path__", [])))


def lands_with(name: str) -> str:
    """The notice for a module that has not landed: 'Successor heads are not installed.'"""
    what, issue = ISSUES.get(name, (name, 0))
    number = f"issue {issue}" if issue else "a later issue"
    return f"`{name}` is not here yet: {what} lands with {number}. This page fills in once it merges."


def require(name: str) -> ModuleType | None:
    """Import an analysis module for a page, or show 'lands with issue N' and return None."""
    module = import_optional(name)
    if module is None:
        st.info(lands_with(name), icon=":material/construction:")
    return module
