"""Glasshouse probes: the hooked-model layer every analysis stands on, and the attention probes.

Nothing in probes imports circuits, saes or app.
"""

from probes.capture import CaptureResult, capture, estimate_capture_bytes
from probes.errors import BudgetError, CheckpointError, GlasshouseError, InputError, ModelLoadError
from probes.hooked_model import HookedModel, ModelFacts, Tokens
from probes.loading import clear_cache, load_model, loaded_models
from probes.model_specs import DEFAULT_MODEL, EMBEDDED

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
