"""The nnsight view of a HookedModel: a `LanguageModel` whose traces run under the model's lock.

An nnsight trace keeps its interventions on the LanguageModel's interleaver and patches the shared
module tree while the model runs, so two traces (or a trace and a TransformerLens run) at once
would see each other's work. The block of a trace executes in its backend, called from the
tracer's `__exit__`; wrapping that backend holds the lock for exactly the part that runs the model
(docs/concurrency.md). The `with` block itself is untouched, so nnsight's capture of the block's
source works as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from probes.hooked_model import HookedModel


class _LockedBackend:
    """Runs an nnsight backend inside the HookedModel's trace section."""

    def __init__(self, inner: Any, model: HookedModel) -> None:
        self.inner = inner
        self.model = model

    def __call__(self, tracer: Any) -> Any:
        with self.model._trace_section():
            return self.inner(tracer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def isolated_language_model(model: HookedModel) -> Any:
    """An nnsight LanguageModel over `model.hf_model` whose traces and direct runs hold its lock."""
    from nnsight import LanguageModel

    class IsolatedLanguageModel(LanguageModel):  # type: ignore[misc, valid-type]
        def trace(self, *args: Any, **kwargs: Any) -> Any:
            tracer = super().trace(*args, **kwargs)
            inner = getattr(tracer, "backend", None)
            if inner is not None and not isinstance(inner, _LockedBackend):
                tracer.backend = _LockedBackend(inner, model)
            return tracer

        def interleave(self, *args: Any, **kwargs: Any) -> Any:
            with model._trace_section():
                return super().interleave(*args, **kwargs)

    return IsolatedLanguageModel(model.hf_model, tokenizer=model.tokenizer)
