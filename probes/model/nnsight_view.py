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
    from probes.model.facts import ModelFacts
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


# --- reading an nnsight LanguageModel (the model layer's side of probes/remote.py) --------------------


def hf_architecture(lm: Any) -> str:
    """The HF class name of the module an nnsight LanguageModel wraps (e.g. LlamaForCausalLM)."""
    return type(lm._module).__name__


def nnsight_paths(lm: Any) -> Any:
    """The architecture table's module paths (probes.model.architecture.ModulePaths) of an nnsight model."""
    from probes.model.architecture import module_paths

    return module_paths(hf_architecture(lm))


def layer_count(lm: Any) -> int:
    """How many decoder layers the wrapped module has (read from the module, so a meta model works too)."""
    from probes.model.architecture import resolve

    return len(resolve(lm._module, nnsight_paths(lm).layers))


def config_facts(lm: Any) -> dict[str, Any]:
    """Sizes and names from an nnsight model's HF config (the text config of a multimodal one)."""
    cfg = lm.config
    cfg = getattr(cfg, "text_config", None) or cfg
    n_heads = int(cfg.num_attention_heads)
    d_model = int(cfg.hidden_size)
    return {
        "name": str(getattr(cfg, "_name_or_path", "") or hf_architecture(lm)),
        "model_type": str(getattr(cfg, "model_type", "")),
        "n_layers": int(cfg.num_hidden_layers),
        "n_heads": n_heads,
        "n_kv_heads": int(getattr(cfg, "num_key_value_heads", None) or n_heads),
        "d_model": d_model,
        "d_head": int(getattr(cfg, "head_dim", None) or d_model // n_heads),
        "d_mlp": int(getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * d_model),
        "d_vocab": int(cfg.vocab_size),
        "n_ctx": int(getattr(cfg, "max_position_embeddings", 2048)),
        "norm_eps": float(getattr(cfg, "rms_norm_eps", None) or getattr(cfg, "layer_norm_eps", None) or 1e-6),
    }


def nnsight_facts(lm: Any, spec: str) -> ModelFacts:
    """The ModelFacts of an nnsight model, as a HookedModel states them (probes/model/facts.py), read from its HF
    config and its module tree through the architecture adapter: for NDIF the modules are on the meta device
    (device "meta": the weights are elsewhere), no weight is read."""
    from probes.model.architecture import adapter_for
    from probes.model.facts import Sizes, read_facts

    c = config_facts(lm)
    sizes = Sizes(n_layers=c["n_layers"], n_heads=c["n_heads"], n_kv_heads=c["n_kv_heads"], d_model=c["d_model"],
                  d_head=c["d_head"], d_mlp=c["d_mlp"], n_ctx=c["n_ctx"])
    adapter = adapter_for(lm._module, sizes.n_heads, sizes.n_kv_heads, sizes.d_head)
    return read_facts(spec, "remote", lm._module, lm.tokenizer, adapter, sizes)
