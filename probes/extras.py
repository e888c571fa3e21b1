"""Optional extras (pyproject.toml [project.optional-dependencies]) and the error when one is missing.

The base install runs every analysis, the CLI and HTML figures. `app` adds the Streamlit app
(streamlit, pandas); `export` adds static PNG/SVG/PDF figures (kaleido, which drives a system
Chromium). Code that needs an extra imports it through `require_extra` at the point of use, so the
user learns which extra to install instead of meeting a bare ModuleNotFoundError.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from probes.errors import GlasshouseError

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
        raise MissingExtraError(
            f"{feature} needs the optional '{extra}' extra ({', '.join(EXTRAS[extra])}), and {module} is not "
            f"installed. Install it with: pip install 'glasshouse[{extra}]' (from a checkout: pip install -e "
            f"'.[{extra}]'; scripts/setup.sh installs every extra)."
        ) from exc
