"""A model's facts: the one record of what every analysis may rely on (sizes, architecture, tokenizer, where it is).

`ModelFacts` is stated by a local HookedModel (probes/model/hooked_model.py) and by a RemoteModel
(probes/remote_analyses.py) alike: `read_facts` reads it from the HF model's modules through the architecture
adapter (probes/model/architecture.py) and the sizes each model has at hand (the TransformerLens bridge's
config locally; the HF config remotely, where the modules are on the meta device and no weight is needed).
Its `to_dict()` is the `model_facts` of every saved result (probes/results.py), a public format.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from probes.model.architecture import ArchAdapter


@dataclass(frozen=True)
class ModelFacts:
    """The canonical facts every analysis may rely on."""

    spec: str
    source: str  # embedded | checkpoint | folder | hub; remote: a RemoteModel's (nnsight, NDIF)
    architecture: str  # the HF class name, e.g. LlamaForCausalLM
    family: str  # adapter family: llama | gemma | gpt2 | neox | opt
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    d_vocab: int
    n_ctx: int
    prepends_bos: bool  # whether the tokenizer puts a BOS first by default
    bos_token_id: int | None
    normalization: str  # rmsnorm | layernorm
    positional: str  # rotary | learned
    gated_mlp: bool
    n_params: int
    dtype: str
    device: str
    # architecture facts (read through the adapter, probes/model/architecture.py)
    parallel_residual: bool = False  # attention and MLP read the same residual: no blocks.{l}.hook_resid_mid
    sliding_windows: tuple[int, ...] = ()  # per layer; 0 = full causal attention
    qk_norm: bool = False  # a norm on each query and key head (Qwen3, Gemma 3)
    attn_softcap: float = 0.0  # Gemma 2's attention-logit soft-capping (0 = none)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Sizes:
    """The sizes read from a model's config."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    n_ctx: int


def read_facts(spec: str, source: str, hf_model: Any, tokenizer: Any, adapter: ArchAdapter, sizes: Sizes) -> ModelFacts:
    """The facts of `hf_model` (its modules may be on the meta device: only shapes and classes are read)."""
    param = next(hf_model.parameters())
    return ModelFacts(
        spec=spec,
        source=source,
        architecture=type(hf_model).__name__,
        family=adapter.family,
        n_layers=sizes.n_layers,
        n_heads=sizes.n_heads,
        n_kv_heads=sizes.n_kv_heads,
        d_model=sizes.d_model,
        d_head=sizes.d_head,
        d_mlp=sizes.d_mlp,
        d_vocab=int(adapter.embed().weight.shape[0]),
        n_ctx=sizes.n_ctx,
        prepends_bos=tokenizer_prepends_bos(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        normalization=adapter.norm_type,
        positional="learned" if adapter.pos_embed() is not None else "rotary",
        gated_mlp=adapter.mlp_weights(0)["W_gate"] is not None,
        n_params=count_params(hf_model),
        dtype=str(param.dtype).replace("torch.", ""),
        device=str(param.device),
        parallel_residual=adapter.is_parallel(),
        sliding_windows=tuple(adapter.window(layer) for layer in range(sizes.n_layers)),
        qk_norm=adapter.q_norm(0) is not None,
        attn_softcap=adapter.attn_softcap(),
    )


def tokenizer_prepends_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer puts its BOS first by default."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a").input_ids
    return bool(ids) and ids[0] == bos


def count_params(hf_model: Any) -> int:
    """Parameters of the HF model, each once: the bridge adds split copies beside a fused weight
    (q/k/v beside GPT-2's, NeoX's or Phi-3's qkv; gate/in beside Phi-3's gate_up_proj), not the model's own."""
    splits = {"qkv": {"q", "k", "v"}, "gate_up_proj": {"gate", "in"}}
    params = [(n.replace("._original_component", "").split("."), p) for n, p in hf_model.named_parameters()]
    fused = {(".".join(parts[:-2]), parts[-2]) for parts, _ in params if len(parts) >= 3 and parts[-2] in splits}

    def is_copy(parts: list[str]) -> bool:
        parent = ".".join(parts[:-2])
        return len(parts) >= 3 and any(parts[-2] in splits[f] for p, f in fused if p == parent)

    return sum(p.numel() for parts, p in params if not is_copy(parts))
