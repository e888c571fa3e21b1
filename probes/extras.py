"""Optional extras (pyproject.toml [project.optional-dependencies]) and the error when one is missing.

The base install runs every analysis, the CLI and HTML figures. `app` adds the Streamlit app
(streamlit, pandas); `export` adds static PNG/SVG/PDF figures (kaleido, which drives a system
Chromium). Code that needs an extra imports it through `require_extra` at the point of use, so the
user learns which extra to install instead of meeting a bare ModuleNotFoundError.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from probes.errors import GlasshouseError, cause, environment_advice

EXTRAS = {"app": ("streamlit", "pandas"), "export": ("kaleido",)}


class MissingExtraError(GlasshouseError, ImportError):
    """A feature needs an optional extra that is not installed."""


def require_extra(module: str, extra: str, feature: str) -> ModuleType:
    """Import `module` (part of the optional extra `extra`), or raise MissingExtraError naming the
    extra to install for `feature`."""
    if extra not in EXTRAS:
        raise ValueError(f"Unknown extra '{extra}'; the extras are {', '.join(EXTRAS)}.")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if not _absent(exc, module):  # installed, but something it imports is broken or shadowed
            raise MissingExtraError(
                f"{feature} needs {module} (the optional '{extra}' extra), which is installed but does not import "
                f"({cause(exc)}). {environment_advice(exc)}"
            ) from exc
        raise MissingExtraError(
            f"{feature} needs the optional '{extra}' extra ({', '.join(EXTRAS[extra])}), and {module} is not "
            f"installed ({cause(exc)}). Install it with: pip install 'glasshouse[{extra}]' (from a checkout: pip "
            f"install -e '.[{extra}]'; scripts/setup.sh installs every extra)."
        ) from exc


def _absent(exc: ImportError, module: str) -> bool:
    """Whether the ImportError says `module` itself (or a package above it) is not there."""
    return exc.name is not None and (module == exc.name or module.startswith(exc.name + "."))
