"""The one place that knows HuggingFace module paths.

Every analysis asks the `HookedModel` for weights and sub-modules; the model asks an adapter
from this file. A new architecture family is one new adapter class here.

Weight conventions follow TransformerLens (x @ W, heads split out):
W_E [d_vocab, d_model], W_U [d_model, d_vocab], W_Q/W_K/W_V [n_heads, d_model, d_head]
(grouped-query key/value heads expanded so that query head h reads group h // (n_heads/n_kv_heads),
as HF's repeat_kv does), W_O [n_heads, d_head, d_model], W_in/W_gate [d_model, d_mlp],
W_out [d_mlp, d_model]. Norm scales are the effective multipliers (Gemma's 1 + w).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from probes.errors import ModelLoadError


def _linear_in_out(linear: Any) -> Tensor:
    """An nn.Linear's weight as [in, out] (x @ W)."""
    return linear.weight.detach().T


def resolve(root: Any, path: str, missing_ok: bool = False) -> Any:
    """The object at a dotted attribute path below root (None for a missing one when missing_ok)."""
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part, None) if missing_ok else getattr(obj, part)
        if obj is None:
            return None
    return obj


def _split_heads_in_out(w: Tensor, n: int, d_head: int) -> Tensor:
    """[d_model, n*d_head] -> [n, d_model, d_head]."""
    return w.reshape(w.shape[0], n, d_head).permute(1, 0, 2)


class ArchAdapter:
    """Base adapter: subclasses map one HF family onto canonical modules and weights.

    The class attributes below are the table of where a family keeps its modules (dotted paths from the
    HF model's root; block-relative names); the module methods read them, and so do the remote traces
    (`module_paths`, probes/remote.py), which walk an nnsight model by the same paths."""

    family = "base"
    norm_type = "layernorm"
    norm_offset = 0.0  # Gemma's RMSNorm multiplies by (1 + w)
    layers_path = ""  # the decoder-layer list
    attn_name = ""  # a block's attention module
    mlp_name = "mlp"  # a block's MLP module ("" = the block itself holds fc1/fc2)
    attn_in_norm_name = ""
    mlp_in_norm_name = ""
    final_norm_path = ""
    embed_path = ""
    pos_embed_path = ""  # learned positions ("" = none)
    rotary_path = ""  # the shared rotary-embedding module ("" = none; a missing module also means none)
    unembed_path = "lm_head"
    scores_hook_is_pattern = False  # the bridge fills attn.hook_attn_scores with the softmax output

    def __init__(self, hf_model: Any, n_heads: int, n_kv_heads: int, d_head: int) -> None:
        self.hf = hf_model
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.d_head = d_head

    # --- modules -------------------------------------------------------------------------
    def layers(self) -> Any:
        return resolve(self.hf, self.layers_path)

    def block(self, layer: int) -> Any:
        return self.layers()[layer]

    def attn(self, layer: int) -> Any:
        return getattr(self.block(layer), self.attn_name)

    def mlp(self, layer: int) -> Any:
        return getattr(self.block(layer), self.mlp_name) if self.mlp_name else self.block(layer)

    def mlp_forward(self, layer: int, h: Tensor) -> Tensor:
        """The layer's MLP on its (already normalized) input."""
        return self.mlp(layer)(h)

    def attn_in_norm(self, layer: int) -> Any:
        return getattr(self.block(layer), self.attn_in_norm_name)

    def mlp_in_norm(self, layer: int) -> Any:
        return getattr(self.block(layer), self.mlp_in_norm_name)

    def attn_out_norm(self, layer: int) -> Any:
        return None

    def mlp_out_norm(self, layer: int) -> Any:
        return None

    def final_norm(self) -> Any:
        return resolve(self.hf, self.final_norm_path)

    def embed(self) -> Any:
        return resolve(self.hf, self.embed_path)

    def pos_embed(self) -> Any:
        return resolve(self.hf, self.pos_embed_path) if self.pos_embed_path else None

    def pos_weight(self) -> Tensor | None:
        """The learned position vectors, row p = position p (OPT's table starts at row `offset`, 2)."""
        pos = self.pos_embed()
        return None if pos is None else pos.weight.detach()[int(getattr(pos, "offset", 0)) :]

    def unembed(self) -> Any:
        return self.hf.get_output_embeddings()

    def embed_scale(self) -> float:
        return 1.0

    # --- weights -------------------------------------------------------------------------
    def qkv(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
        """W_Q [H, d_model, d_head], W_K and W_V [KV, d_model, d_head], and biases or None."""
        raise NotImplementedError

    def o(self, layer: int) -> tuple[Tensor, Tensor | None]:
        """W_O [H, d_head, d_model] and b_O [d_model] or None."""
        raise NotImplementedError

    def mlp_weights(self, layer: int) -> dict[str, Tensor | None]:
        """W_in, W_gate (None without a gated MLP), W_out, b_in, b_out."""
        raise NotImplementedError

    def norm_scale(self, norm: Any) -> Tensor:
        return norm.weight.detach() + self.norm_offset

    def norm_bias(self, norm: Any) -> Tensor | None:
        bias = getattr(norm, "bias", None)
        return None if bias is None else bias.detach()

    def expand_kv(self, w: Tensor) -> Tensor:
        """Repeat key/value heads so that index h is query head h's group (HF repeat_kv order)."""
        return w.repeat_interleave(self.n_heads // self.n_kv_heads, dim=0)

    # --- attention and block layout (read by HookedModel's "architecture facts") ----------------
    parallel_residual = False  # attention and MLP read the same residual (no mid residual)

    def config(self) -> Any:
        cfg = self.hf.config
        return getattr(cfg, "text_config", None) or cfg

    def is_parallel(self) -> bool:
        return self.parallel_residual

    def window(self, layer: int) -> int:
        """The layer's sliding window (0 = full causal attention): key j is visible from query i when
        i - j < window. HF puts it on the attention module (Qwen, Gemma: per layer type) or, for families
        that slide on every layer (Mistral, Phi-3), only in the config."""
        attn = self.attn(layer)
        if hasattr(attn, "sliding_window"):
            return int(attn.sliding_window or 0)
        return int(getattr(self.config(), "sliding_window", None) or 0)

    def q_norm(self, layer: int) -> Any:
        """The norm on each query head (Qwen3, Gemma 3: q_norm; Phi, StableLM: q_layernorm) or None."""
        attn = self.attn(layer)
        return getattr(attn, "q_norm", None) or getattr(attn, "q_layernorm", None)

    def k_norm(self, layer: int) -> Any:
        attn = self.attn(layer)
        return getattr(attn, "k_norm", None) or getattr(attn, "k_layernorm", None)

    def rotary(self) -> Any:
        """The HF rotary-embedding module, called as rotary(x, position_ids) -> (cos, sin), or None."""
        return resolve(self.hf, self.rotary_path, missing_ok=True) if self.rotary_path else None

    def apply_head_norm(self, layer: int, x: Tensor, which: str) -> Tensor:
        """The norm on each query ("q") or key ("k") head, on x [..., n_heads, d_head]; identity without one.
        StableLM keeps one LayerNorm per key/value head (`norms`): query head h uses its group's."""
        norm = self.q_norm(layer) if which == "q" else self.k_norm(layer)
        if norm is None:
            return x
        per_head = getattr(norm, "norms", None)
        if per_head is None:
            return norm(x)
        group = x.shape[-2] // len(per_head)
        return torch.stack([per_head[h // group](x[..., h, :]) for h in range(x.shape[-2])], dim=-2)

    def attn_softcap(self) -> float:
        return float(getattr(self.config(), "attn_logit_softcapping", None) or 0.0)

    def final_softcap(self) -> float:
        return float(getattr(self.config(), "final_logit_softcapping", None) or 0.0)

    def attn_scale(self, layer: int) -> float:
        """The factor on q.k before the softmax (HF's `scaling`; else 1/sqrt(d_head))."""
        scaling = getattr(self.attn(layer), "scaling", None)
        if scaling is None:
            pre = getattr(self.config(), "query_pre_attn_scalar", None)
            scaling = (pre if pre else self.d_head) ** -0.5
        return float(scaling)


def rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """HF's rotary on the first rotary_dim = cos.shape[-1] features of each head (all unless partial rotary);
    cos and sin broadcast against x[..., :rotary_dim]."""
    rd = cos.shape[-1]
    if rd == x.shape[-1]:
        return x * cos + rotate_half(x) * sin
    rot, rest = x[..., :rd], x[..., rd:]
    return torch.cat((rot * cos + rotate_half(rot) * sin, rest), dim=-1)


def norm_eps(norm: Any) -> float:
    """The epsilon of an HF norm module (LayerNorm: eps; RMSNorm: eps or variance_epsilon)."""
    for name in ("eps", "variance_epsilon", "epsilon"):
        value = getattr(norm, name, None)
        if isinstance(value, int | float):
            return float(value)
    raise ModelLoadError(f"The norm module {type(norm).__name__} carries no epsilon (eps / variance_epsilon).")


class LlamaLikeAdapter(ArchAdapter):
    """Llama, Mistral, Qwen2, SmolLM2: model.layers[i].self_attn.{q,k,v,o}_proj, SwiGLU MLP, RMSNorm."""

    family = "llama"
    norm_type = "rmsnorm"
    layers_path = "model.layers"
    attn_name = "self_attn"
    attn_in_norm_name = "input_layernorm"
    mlp_in_norm_name = "post_attention_layernorm"
    final_norm_path = "model.norm"
    embed_path = "model.embed_tokens"
    rotary_path = "model.rotary_emb"

    def qkv(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
        a = self.attn(layer)
        wq = _split_heads_in_out(_linear_in_out(a.q_proj), self.n_heads, self.d_head)
        wk = _split_heads_in_out(_linear_in_out(a.k_proj), self.n_kv_heads, self.d_head)
        wv = _split_heads_in_out(_linear_in_out(a.v_proj), self.n_kv_heads, self.d_head)

        def bias(lin: Any, n: int) -> Tensor | None:
            return None if getattr(lin, "bias", None) is None else lin.bias.detach().reshape(n, self.d_head)

        return wq, wk, wv, bias(a.q_proj, self.n_heads), bias(a.k_proj, self.n_kv_heads), bias(a.v_proj, self.n_kv_heads)

    def o(self, layer: int) -> tuple[Tensor, Tensor | None]:
        return _heads_out(self.attn(layer).o_proj, self.n_heads, self.d_head)

    def mlp_weights(self, layer: int) -> dict[str, Tensor | None]:
        m = self.mlp(layer)
        return {
            "W_in": _linear_in_out(m.up_proj),
            "W_gate": _linear_in_out(m.gate_proj),
            "W_out": _linear_in_out(m.down_proj),
            "b_in": None,
            "b_out": None,
        }


class Gemma3Adapter(LlamaLikeAdapter):
    """Gemma 2/3: Llama-like with (1 + w) RMSNorms, norms after attention and MLP, scaled embeddings."""

    family = "gemma"
    norm_offset = 1.0
    mlp_in_norm_name = "pre_feedforward_layernorm"

    def attn_out_norm(self, layer: int) -> Any:
        return self.block(layer).post_attention_layernorm

    def mlp_out_norm(self, layer: int) -> Any:
        return self.block(layer).post_feedforward_layernorm

    def embed_scale(self) -> float:
        return float(self.hf.config.hidden_size) ** 0.5


def _heads_out(linear: Any, n_heads: int, d_head: int) -> tuple[Tensor, Tensor | None]:
    """An nn.Linear output projection as W_O [H, d_head, d_model] and its bias (or None)."""
    bias = getattr(linear, "bias", None)
    return _linear_in_out(linear).reshape(n_heads, d_head, -1), None if bias is None else bias.detach()


def _fused_qkv(weight: Tensor, bias: Tensor | None, d_head: int, index: tuple[Tensor, Tensor, Tensor]
               ) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """Split a fused query/key/value projection, the one splitter of every fused layout.

    weight [out, d_model] (nn.Linear's; a Conv1D's transposed), bias [out] or None; its rows are blocks
    of d_head rows, one per head, and index gives the blocks that hold each q, k and v head in order
    (the layouts: `_qkv_consecutive` [q; k; v], `_qkv_interleaved` per-head [q, k, v], Falcon's groups).
    Returns W_Q [H, d_model, d_head], W_K and W_V [KV, d_model, d_head] and the biases [n, d_head]."""
    w = weight.detach().reshape(-1, d_head, weight.shape[-1])  # [blocks, d_head, d_model]
    b = None if bias is None else bias.detach().reshape(-1, d_head)
    ws = [w[i].transpose(1, 2) for i in index]
    bs: list[Tensor | None] = [None if b is None else b[i] for i in index]
    return ws[0], ws[1], ws[2], bs[0], bs[1], bs[2]


def _qkv_consecutive(n_heads: int, n_kv_heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """[q heads; k heads; v heads] one after the other (GPT-2's c_attn, Phi-3's qkv_proj)."""
    return torch.arange(n_heads), n_heads + torch.arange(n_kv_heads), n_heads + n_kv_heads + torch.arange(n_kv_heads)


def _qkv_interleaved(n_heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per head [q, k, v] (GPT-NeoX's query_key_value, Falcon's without multi-query)."""
    return torch.arange(n_heads) * 3, torch.arange(n_heads) * 3 + 1, torch.arange(n_heads) * 3 + 2


class GPT2Adapter(ArchAdapter):
    """GPT-2: transformer.h[i] with fused Conv1D c_attn, GELU MLP, LayerNorm, learned positions."""

    family = "gpt2"
    layers_path = "transformer.h"
    attn_name = "attn"
    attn_in_norm_name = "ln_1"
    mlp_in_norm_name = "ln_2"
    final_norm_path = "transformer.ln_f"
    embed_path = "transformer.wte"
    pos_embed_path = "transformer.wpe"

    def qkv(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
        c_attn = self.attn(layer).c_attn  # Conv1D: weight is [in, out]
        return _fused_qkv(c_attn.weight.T, c_attn.bias, self.d_head, _qkv_consecutive(self.n_heads, self.n_heads))

    def o(self, layer: int) -> tuple[Tensor, Tensor | None]:
        c_proj = self.attn(layer).c_proj
        return c_proj.weight.detach().reshape(self.n_heads, self.d_head, -1), c_proj.bias.detach()

    def mlp_weights(self, layer: int) -> dict[str, Tensor | None]:
        m = self.mlp(layer)
        return {
            "W_in": m.c_fc.weight.detach(),
            "W_gate": None,
            "W_out": m.c_proj.weight.detach(),
            "b_in": m.c_fc.bias.detach(),
            "b_out": m.c_proj.bias.detach(),
        }


def _plain_mlp_weights(fc_in: Any, fc_out: Any) -> dict[str, Tensor | None]:
    """An ungated MLP of two nn.Linear layers (biases optional)."""
    def bias(lin: Any) -> Tensor | None:
        return None if getattr(lin, "bias", None) is None else lin.bias.detach()

    return {"W_in": _linear_in_out(fc_in), "W_gate": None, "W_out": _linear_in_out(fc_out),
            "b_in": bias(fc_in), "b_out": bias(fc_out)}


class NeoXAdapter(ArchAdapter):
    """GPT-NeoX / Pythia: per-head interleaved query_key_value, parallel attention and MLP."""

    family = "neox"
    layers_path = "gpt_neox.layers"
    attn_name = "attention"
    attn_in_norm_name = "input_layernorm"
    mlp_in_norm_name = "post_attention_layernorm"
    final_norm_path = "gpt_neox.final_layer_norm"
    embed_path = "gpt_neox.embed_in"
    rotary_path = "gpt_neox.rotary_emb"
    unembed_path = "embed_out"

    def is_parallel(self) -> bool:
        return bool(getattr(self.config(), "use_parallel_residual", True))

    def qkv(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
        lin = self.attn(layer).query_key_value
        return _fused_qkv(lin.weight, lin.bias, self.d_head, _qkv_interleaved(self.n_heads))

    def o(self, layer: int) -> tuple[Tensor, Tensor | None]:
        return _heads_out(self.attn(layer).dense, self.n_heads, self.d_head)

    def mlp_weights(self, layer: int) -> dict[str, Tensor | None]:
        m = self.mlp(layer)
        return _plain_mlp_weights(m.dense_h_to_4h, m.dense_4h_to_h)


class OPTAdapter(ArchAdapter):
    """OPT (and the project's Bigram-Backcopy toy models, saved as OPT): learned positions, ReLU MLP."""

    family = "opt"
    layers_path = "model.decoder.layers"
    attn_name = "self_attn"
    mlp_name = ""  # fc1/fc2 live on the layer itself
    attn_in_norm_name = "self_attn_layer_norm"
    mlp_in_norm_name = "final_layer_norm"
    final_norm_path = "model.decoder.final_layer_norm"
    embed_path = "model.decoder.embed_tokens"
    pos_embed_path = "model.decoder.embed_positions"
    # Found by comparing softmax(scores) with hook_pattern (tests/probes/model/test_architectures.py).
    scores_hook_is_pattern = True

    def mlp_forward(self, layer: int, h: Tensor) -> Tensor:
        blk = self.block(layer)
        return blk.fc2(blk.activation_fn(blk.fc1(h)))

    def qkv(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
        return LlamaLikeAdapter.qkv(self, layer)  # type: ignore[arg-type]

    def o(self, layer: int) -> tuple[Tensor, Tensor | None]:
        return _heads_out(self.attn(layer).out_proj, self.n_heads, self.d_head)

    def mlp_weights(self, layer: int) -> dict[str, Tensor | None]:
        blk = self.block(layer)
        return _plain_mlp_weights(blk.fc1, blk.fc2)


class Phi3Adapter(LlamaLikeAdapter):
    """Phi-3: Llama-like with a fused qkv_proj ([q; k; v] rows) and a fused gate_up_proj ([gate; up])."""

    family = "phi3"

    def qkv(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
        lin = self.attn(layer).qkv_proj
        return _fused_qkv(lin.weight, lin.bias, self.d_head, _qkv_consecutive(self.n_heads, self.n_kv_heads))

    def mlp_weights(self, layer: int) -> dict[str, Tensor | None]:
        m = self.mlp(layer)
        gate, up = m.gate_up_proj.weight.detach().chunk(2, dim=0)
        return {"W_in": up.T, "W_gate": gate.T, "W_out": _linear_in_out(m.down_proj), "b_in": None, "b_out": None}


class StableLmAdapter(LlamaLikeAdapter):
    """StableLM: Llama-like names with LayerNorms, partial rotary, optional q/k/v biases, optional parallel
    residual (config.use_parallel_residual) and optional per-head q/k LayerNorms."""

    family = "stablelm"
    norm_type = "layernorm"

    def is_parallel(self) -> bool:
        return bool(getattr(self.config(), "use_parallel_residual", False))

    def mlp_in_norm(self, layer: int) -> Any:
        norm = self.block(layer).post_attention_layernorm
        return norm if norm is not None else self.attn_in_norm(layer)


class PhiAdapter(ArchAdapter):
    """Phi-1/1.5/2: parallel attention and MLP behind one input LayerNorm, partial rotary, biases everywhere."""

    family = "phi"
    parallel_residual = True
    layers_path = "model.layers"
    attn_name = "self_attn"
    attn_in_norm_name = "input_layernorm"
    mlp_in_norm_name = "input_layernorm"  # the same norm feeds both branches
    final_norm_path = "model.final_layernorm"
    embed_path = "model.embed_tokens"
    rotary_path = "model.rotary_emb"

    def qkv(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
        return LlamaLikeAdapter.qkv(self, layer)  # type: ignore[arg-type]

    def o(self, layer: int) -> tuple[Tensor, Tensor | None]:
        return _heads_out(self.attn(layer).dense, self.n_heads, self.d_head)

    def mlp_weights(self, layer: int) -> dict[str, Tensor | None]:
        m = self.mlp(layer)
        return _plain_mlp_weights(m.fc1, m.fc2)


class FalconAdapter(ArchAdapter):
    """Falcon: fused query_key_value (multi-query, per-head [q, k, v], or grouped for the new decoder
    architecture), GELU MLP, LayerNorms, rotary; attention and MLP in parallel unless parallel_attn is off."""

    family = "falcon"
    layers_path = "transformer.h"
    attn_name = "self_attention"
    final_norm_path = "transformer.ln_f"
    embed_path = "transformer.word_embeddings"
    rotary_path = "transformer.rotary_emb"

    def is_parallel(self) -> bool:
        cfg = self.config()
        return bool(cfg.new_decoder_architecture or cfg.parallel_attn)

    def attn_in_norm(self, layer: int) -> Any:
        blk = self.block(layer)
        return getattr(blk, "ln_attn", None) or blk.input_layernorm

    def mlp_in_norm(self, layer: int) -> Any:
        blk = self.block(layer)
        for name in ("ln_mlp", "post_attention_layernorm", "input_layernorm"):
            if getattr(blk, name, None) is not None:
                return getattr(blk, name)
        raise ModelLoadError("This Falcon block has no MLP input norm.")

    def _qkv_index(self) -> tuple[Tensor, Tensor, Tensor]:
        """Blocks (of d_head rows) of query_key_value that hold each q head, k head and v head."""
        cfg, H, KV = self.config(), self.n_heads, self.n_kv_heads
        if cfg.new_decoder_architecture:
            g = H // KV
            q = torch.tensor([kv * (g + 2) + j for kv in range(KV) for j in range(g)])
            return q, torch.arange(KV) * (g + 2) + g, torch.arange(KV) * (g + 2) + g + 1
        if cfg.multi_query:
            return torch.arange(H), torch.tensor([H]), torch.tensor([H + 1])
        return _qkv_interleaved(H)

    def qkv(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
        lin = self.attn(layer).query_key_value
        return _fused_qkv(lin.weight, lin.bias, self.d_head, self._qkv_index())

    def o(self, layer: int) -> tuple[Tensor, Tensor | None]:
        return _heads_out(self.attn(layer).dense, self.n_heads, self.d_head)

    def mlp_weights(self, layer: int) -> dict[str, Tensor | None]:
        m = self.mlp(layer)
        return _plain_mlp_weights(m.dense_h_to_4h, m.dense_4h_to_h)


ADAPTERS: dict[str, type[ArchAdapter]] = {
    "LlamaForCausalLM": LlamaLikeAdapter,
    "MistralForCausalLM": LlamaLikeAdapter,
    "Qwen2ForCausalLM": LlamaLikeAdapter,
    "Qwen3ForCausalLM": LlamaLikeAdapter,
    "Gemma2ForCausalLM": Gemma3Adapter,
    "Gemma3ForCausalLM": Gemma3Adapter,
    "GPT2LMHeadModel": GPT2Adapter,
    "GPTNeoXForCausalLM": NeoXAdapter,
    "OPTForCausalLM": OPTAdapter,
    "Phi3ForCausalLM": Phi3Adapter,
    "PhiForCausalLM": PhiAdapter,
    "StableLmForCausalLM": StableLmAdapter,
    "FalconForCausalLM": FalconAdapter,
}


def adapter_for(hf_model: Any, n_heads: int, n_kv_heads: int, d_head: int) -> ArchAdapter:
    """Pick the adapter for a loaded HF model by its class name."""
    name = type(hf_model).__name__
    if name not in ADAPTERS:
        raise ModelLoadError(
            f"Glasshouse has no weight mapping for architecture {name}. Supported: {', '.join(sorted(ADAPTERS))}. "
            "Add an adapter class in probes/model/architecture.py."
        )
    return ADAPTERS[name](hf_model, n_heads, n_kv_heads, d_head)



@dataclass(frozen=True)
class ModulePaths:
    """Where an architecture keeps its modules, as dotted paths from the HF model's root (the adapter table),
    for code that walks a model by name instead of holding an adapter (the remote traces, probes/remote.py)."""

    architecture: str
    family: str
    layers: str  # the decoder-layer list
    attn: str  # a layer's attention module
    final_norm: str
    unembed: str
    llama_style: bool  # self_attn.{q,k,v,o}_proj, an RMSNorm final norm, no post-attention norm


def module_paths(architecture: str) -> ModulePaths:
    """The module paths of an HF architecture class name (e.g. "LlamaForCausalLM")."""
    if architecture not in ADAPTERS:
        raise ModelLoadError(
            f"Glasshouse has no module table for architecture {architecture}. Supported: "
            f"{', '.join(sorted(ADAPTERS))}. Add an adapter class in probes/model/architecture.py."
        )
    a = ADAPTERS[architecture]
    return ModulePaths(architecture, a.family, a.layers_path, a.attn_name, a.final_norm_path, a.unembed_path,
                       llama_style=a.family == "llama")
