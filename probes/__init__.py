"""Glasshouse probes: the hooked-model layer every analysis stands on, and the attention probes.

Nothing in probes imports circuits, saes or app.

The names below are imported on first use (PEP 562), so `import probes.errors` or
`import probes.model.model_specs` (what the command line needs to build its parser and check
arguments) does not import torch; `from probes import load_model` imports what it needs then.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from probes.errors import BudgetError, CheckpointError, GlasshouseError, InputError, ModelLoadError
    from probes.model.capture import CaptureResult, capture, estimate_capture_bytes
    from probes.model.facts import ModelFacts
    from probes.model.hooked_model import HookedModel, Tokens
    from probes.model.loading import clear_cache, load_model, loaded_models
    from probes.model.model_specs import DEFAULT_MODEL, EMBEDDED

_WHERE = {
    "CaptureResult": "probes.model.capture",
    "capture": "probes.model.capture",
    "estimate_capture_bytes": "probes.model.capture",
    "BudgetError": "probes.errors",
    "CheckpointError": "probes.errors",
    "GlasshouseError": "probes.errors",
    "InputError": "probes.errors",
    "ModelLoadError": "probes.errors",
    "HookedModel": "probes.model.hooked_model",
    "ModelFacts": "probes.model.facts",
    "Tokens": "probes.model.hooked_model",
    "clear_cache": "probes.model.loading",
    "load_model": "probes.model.loading",
    "loaded_models": "probes.model.loading",
    "DEFAULT_MODEL": "probes.model.model_specs",
    "EMBEDDED": "probes.model.model_specs",
}

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED",
    "BudgetError",
    "CaptureResult",
    "CheckpointError",
    "GlasshouseError",
    "HookedModel",
    "InputError",
    "ModelFacts",
    "ModelLoadError",
    "Tokens",
    "capture",
    "clear_cache",
    "estimate_capture_bytes",
    "load_model",
    "loaded_models",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'probes' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
