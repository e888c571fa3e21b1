"""Results are data: the metadata every result carries, and one way to write it.

Spec: docs/architecture.md ("results as data"). A probe returns a dataclass with `to_dict()`;
`result_metadata` gives the fields every result records (model spec, settings, versions, seed),
and `save_result` writes the JSON atomically.
"""

from __future__ import annotations

import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from probes.io import write_json

_PACKAGES = ("glasshouse", "torch", "transformers", "transformer-lens", "nnsight")


def versions() -> dict[str, str]:
    """Versions of Python and the packages a result depends on."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def result_metadata(model: Any, settings: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
    """The common header of every result: which model, which settings, which versions, which seed. A model
    measured elsewhere (a RemoteModel) adds its backend and the layers it measured to the settings."""
    facts = getattr(model, "facts", None)
    if getattr(model, "backend", "local") != "local":
        settings = {**settings, "layers": list(model.measured_layers), "backend": model.backend}
    return {
        "model": getattr(model, "spec", str(model)),
        "model_facts": facts.to_dict() if facts is not None else None,
        "settings": settings,
        "seed": seed,
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def save_result(path: str | Path, result: Any) -> Path:
    """Write a result (an object with to_dict(), or a dict) as JSON, atomically."""
    data = result.to_dict() if hasattr(result, "to_dict") else result
    return write_json(path, data)
