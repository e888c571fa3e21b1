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
    from probes.model.hooked_model import HookedModel


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

    # The HookedModel is kept on the instance, not in a closure: a remote request pickles this
    # class by value (nnsight ships local modules' code), and the HookedModel (its lock) must stay
    # out of the payload; __getstate__ drops it.
    class IsolatedLanguageModel(LanguageModel):  # type: ignore[misc, valid-type]
        def trace(self, *args: Any, **kwargs: Any) -> Any:
            tracer = super().trace(*args, **kwargs)
            inner = getattr(tracer, "backend", None)
            owner = self.__dict__.get("_glasshouse_model")
            if owner is not None and inner is not None and not isinstance(inner, _LockedBackend):
                tracer.backend = _LockedBackend(inner, owner)
            return tracer

        def interleave(self, *args: Any, **kwargs: Any) -> Any:
            owner = self.__dict__.get("_glasshouse_model")
            if owner is None:  # a copy unpickled from a request: it shares no module tree with callers
                return super().interleave(*args, **kwargs)
            with owner._trace_section():
                return super().interleave(*args, **kwargs)

        def __getstate__(self) -> dict[str, Any]:
            state = dict(super().__getstate__())
            state.pop("_glasshouse_model", None)
            return state

    lm = IsolatedLanguageModel(model.hf_model, tokenizer=model.tokenizer)
    object.__setattr__(lm, "_glasshouse_model", model)
    return lm
