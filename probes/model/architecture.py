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

from typing import Any

import torch
from torch import Tensor

from probes.errors import ModelLoadError


def _linear_in_out(linear: Any) -> Tensor:
    """An nn.Linear's weight as [in, out] (x @ W)."""
    return linear.weight.detach().T


def _split_heads_in_out(w: Tensor, n: int, d_head: int) -> Tensor:
    """[d_model, n*d_head] -> [n, d_model, d_head]."""
    return w.reshape(w.shape[0], n, d_head).permute(1, 0, 2)


# Families whose TransformerLens bridge fills `attn.hook_attn_scores` with the softmax output instead of the
# logits (found by comparing softmax(scores) with hook_pattern; tests/probes/model/test_architectures.py).
SCORES_HOOK_IS_PATTERN = frozenset({"opt"})


class ArchAdapter:
    """Base adapter: subclasses map one HF family onto canonical modules and weights."""

    family = "base"
    norm_type = "layernorm"
    norm_offset = 0.0  # Gemma's RMSNorm multiplies by (1 + w)

    def __init__(self, hf_model: Any, n_heads: int, n_kv_heads: int, d_head: int) -> None:
        self.hf = hf_model
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.d_head = d_head

    # --- modules -------------------------------------------------------------------------
    def layers(self) -> Any:
        raise NotImplementedError

    def block(self, layer: int) -> Any:
        return self.layers()[layer]

    def attn(self, layer: int) -> Any:
        raise NotImplementedError

    def mlp(self, layer: int) -> Any:
        raise NotImplementedError

    def attn_in_norm(self, layer: int) -> Any:
        raise NotImplementedError

    def mlp_in_norm(self, layer: int) -> Any:
        raise NotImplementedError

    def attn_out_norm(self, layer: int) -> Any:
        return None

    def mlp_out_norm(self, layer: int) -> Any:
        return None

    def final_norm(self) -> Any:
        raise NotImplementedError

    def embed(self) -> Any:
        raise NotImplementedError

    def pos_embed(self) -> Any:
        return None

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
        return None

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

    def layers(self) -> Any:
        return self.hf.model.layers

    def attn(self, layer: int) -> Any:
        return self.block(layer).self_attn

    def mlp(self, layer: int) -> Any:
        return self.block(layer).mlp

    def attn_in_norm(self, layer: int) -> Any:
        return self.block(layer).input_layernorm

    def mlp_in_norm(self, layer: int) -> Any:
        return self.block(layer).post_attention_layernorm

    def final_norm(self) -> Any:
        return self.hf.model.norm

    def embed(self) -> Any:
        return self.hf.model.embed_tokens

    def rotary(self) -> Any:
        return getattr(self.hf.model, "rotary_emb", None)

    def qkv(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
        a = self.attn(layer)
        wq = _split_heads_in_out(_linear_in_out(a.q_proj), self.n_heads, self.d_head)
        wk = _split_heads_in_out(_linear_in_out(a.k_proj), self.n_kv_heads, self.d_head)
        wv = _split_heads_in_out(_linear_in_out(a.v_proj), self.n_kv_heads, self.d_head)

        def bias(lin: Any, n: int) -> Tensor | None:
            return None if getattr(lin, "bias", None) is None else lin.bias.detach().reshape(n, self.d_head)

        return wq, wk, wv, bias(a.q_proj, self.n_heads), bias(a.k_proj, self.n_kv_heads), bias(a.v_proj, self.n_kv_heads)

    def o(self, layer: int) -> tuple[Tensor, Tensor | None]:
        o_proj = self.attn(layer).o_proj
        w = _linear_in_out(o_proj).reshape(self.n_heads, self.d_head, -1)
        return w, None if getattr(o_proj, "bias", None) is None else o_proj.bias.detach()

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

    def mlp_in_norm(self, layer: int) -> Any:
        return self.block(layer).pre_feedforward_layernorm

    def attn_out_norm(self, layer: int) -> Any:
        return self.block(layer).post_attention_layernorm

    def mlp_out_norm(self, layer: int) -> Any:
        return self.block(layer).post_feedforward_layernorm

    def embed_scale(self) -> float:
        return float(self.hf.config.hidden_size) ** 0.5


class GPT2Adapter(ArchAdapter):
    """GPT-2: transformer.h[i] with fused Conv1D c_attn, GELU MLP, LayerNorm, learned positions."""

    family = "gpt2"

    def layers(self) -> Any:
        return self.hf.transformer.h

    def attn(self, layer: int) -> Any:
        return self.block(layer).attn

    def mlp(self, layer: int) -> Any:
        return self.block(layer).mlp

    def attn_in_norm(self, layer: int) -> Any:
        return self.block(layer).ln_1

    def mlp_in_norm(self, layer: int) -> Any:
        return self.block(layer).ln_2

    def final_norm(self) -> Any:
        return self.hf.transformer.ln_f

    def embed(self) -> Any:
        return self.hf.transformer.wte

    def pos_embed(self) -> Any:
        return self.hf.transformer.wpe

    def qkv(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
        c_attn = self.attn(layer).c_attn  # Conv1D: weight is [in, out]
        w = c_attn.weight.detach()
        b = c_attn.bias.detach()
        d = w.shape[0]
        ws = [_split_heads_in_out(w[:, i * d : (i + 1) * d], self.n_heads, self.d_head) for i in range(3)]
        bs = [b[i * d : (i + 1) * d].reshape(self.n_heads, self.d_head) for i in range(3)]
        return ws[0], ws[1], ws[2], bs[0], bs[1], bs[2]

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


class NeoXAdapter(ArchAdapter):
    """GPT-NeoX / Pythia: per-head interleaved query_key_value, parallel attention and MLP."""

    family = "neox"

    def is_parallel(self) -> bool:
        return bool(getattr(self.config(), "use_parallel_residual", True))

    def rotary(self) -> Any:
        return self.hf.gpt_neox.rotary_emb

    def layers(self) -> Any:
        return self.hf.gpt_neox.layers

    def attn(self, layer: int) -> Any:
        return self.block(layer).attention

    def mlp(self, layer: int) -> Any:
        return self.block(layer).mlp

    def attn_in_norm(self, layer: int) -> Any:
        return self.block(layer).input_layernorm

    def mlp_in_norm(self, layer: int) -> Any:
        return self.block(layer).post_attention_layernorm

    def final_norm(self) -> Any:
        return self.hf.gpt_neox.final_layer_norm

    def embed(self) -> Any:
        return self.hf.gpt_neox.embed_in

    def qkv(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
        lin = self.attn(layer).query_key_value
        w = lin.weight.detach().reshape(self.n_heads, 3, self.d_head, -1)  # [H, 3, d_head, d_model]
        b = lin.bias.detach().reshape(self.n_heads, 3, self.d_head)
        ws = [w[:, i].transpose(1, 2) for i in range(3)]
        return ws[0], ws[1], ws[2], b[:, 0], b[:, 1], b[:, 2]

    def o(self, layer: int) -> tuple[Tensor, Tensor | None]:
        dense = self.attn(layer).dense
        return _linear_in_out(dense).reshape(self.n_heads, self.d_head, -1), dense.bias.detach()

    def mlp_weights(self, layer: int) -> dict[str, Tensor | None]:
        m = self.mlp(layer)
        return {
            "W_in": _linear_in_out(m.dense_h_to_4h),
            "W_gate": None,
            "W_out": _linear_in_out(m.dense_4h_to_h),
            "b_in": m.dense_h_to_4h.bias.detach(),
            "b_out": m.dense_4h_to_h.bias.detach(),
        }


class OPTAdapter(ArchAdapter):
    """OPT (and the project's Bigram-Backcopy toy models, saved as OPT): learned positions, ReLU MLP."""

    family = "opt"

    def layers(self) -> Any:
        return self.hf.model.decoder.layers

    def attn(self, layer: int) -> Any:
        return self.block(layer).self_attn

    def mlp(self, layer: int) -> Any:
        return self.block(layer)  # fc1/fc2 live on the layer itself

    def attn_in_norm(self, layer: int) -> Any:
        return self.block(layer).self_attn_layer_norm

    def mlp_in_norm(self, layer: int) -> Any:
        return self.block(layer).final_layer_norm

    def final_norm(self) -> Any:
        return self.hf.model.decoder.final_layer_norm

    def embed(self) -> Any:
        return self.hf.model.decoder.embed_tokens

    def pos_embed(self) -> Any:
        return self.hf.model.decoder.embed_positions

    def qkv(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
        return LlamaLikeAdapter.qkv(self, layer)  # type: ignore[arg-type]

    def o(self, layer: int) -> tuple[Tensor, Tensor | None]:
        out_proj = self.attn(layer).out_proj
        w = _linear_in_out(out_proj).reshape(self.n_heads, self.d_head, -1)
        return w, None if out_proj.bias is None else out_proj.bias.detach()

    def mlp_weights(self, layer: int) -> dict[str, Tensor | None]:
        blk = self.block(layer)
        return {
            "W_in": _linear_in_out(blk.fc1),
            "W_gate": None,
            "W_out": _linear_in_out(blk.fc2),
            "b_in": None if blk.fc1.bias is None else blk.fc1.bias.detach(),
            "b_out": None if blk.fc2.bias is None else blk.fc2.bias.detach(),
        }


def _split_fused_rows(w: Tensor, sizes: list[int]) -> list[Tensor]:
    """Split an nn.Linear's [out, in] weight (or [out] bias) along out into consecutive blocks."""
    return list(torch.split(w, sizes, dim=0))


class Phi3Adapter(LlamaLikeAdapter):
    """Phi-3: Llama-like with a fused qkv_proj ([q; k; v] rows) and a fused gate_up_proj ([gate; up])."""

    family = "phi3"

    def qkv(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
        lin = self.attn(layer).qkv_proj
        sizes = [self.n_heads * self.d_head, self.n_kv_heads * self.d_head, self.n_kv_heads * self.d_head]
        wq, wk, wv = (x.detach().T for x in _split_fused_rows(lin.weight, sizes))
        return (_split_heads_in_out(wq, self.n_heads, self.d_head), _split_heads_in_out(wk, self.n_kv_heads, self.d_head),
                _split_heads_in_out(wv, self.n_kv_heads, self.d_head), None, None, None)

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

    def layers(self) -> Any:
        return self.hf.model.layers

    def attn(self, layer: int) -> Any:
        return self.block(layer).self_attn

    def mlp(self, layer: int) -> Any:
        return self.block(layer).mlp

    def attn_in_norm(self, layer: int) -> Any:
        return self.block(layer).input_layernorm

    def mlp_in_norm(self, layer: int) -> Any:
        return self.block(layer).input_layernorm  # the same norm feeds both branches

    def final_norm(self) -> Any:
        return self.hf.model.final_layernorm

    def embed(self) -> Any:
        return self.hf.model.embed_tokens

    def rotary(self) -> Any:
        return self.hf.model.rotary_emb

    def qkv(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
        return LlamaLikeAdapter.qkv(self, layer)  # type: ignore[arg-type]

    def o(self, layer: int) -> tuple[Tensor, Tensor | None]:
        dense = self.attn(layer).dense
        return _linear_in_out(dense).reshape(self.n_heads, self.d_head, -1), dense.bias.detach()

    def mlp_weights(self, layer: int) -> dict[str, Tensor | None]:
        m = self.mlp(layer)
        return {"W_in": _linear_in_out(m.fc1), "W_gate": None, "W_out": _linear_in_out(m.fc2),
                "b_in": m.fc1.bias.detach(), "b_out": m.fc2.bias.detach()}


class FalconAdapter(ArchAdapter):
    """Falcon: fused query_key_value (multi-query, per-head [q, k, v], or grouped for the new decoder
    architecture), GELU MLP, LayerNorms, rotary; attention and MLP in parallel unless parallel_attn is off."""

    family = "falcon"

    def is_parallel(self) -> bool:
        cfg = self.config()
        return bool(cfg.new_decoder_architecture or cfg.parallel_attn)

    def layers(self) -> Any:
        return self.hf.transformer.h

    def attn(self, layer: int) -> Any:
        return self.block(layer).self_attention

    def mlp(self, layer: int) -> Any:
        return self.block(layer).mlp

    def attn_in_norm(self, layer: int) -> Any:
        blk = self.block(layer)
        return getattr(blk, "ln_attn", None) or blk.input_layernorm

    def mlp_in_norm(self, layer: int) -> Any:
        blk = self.block(layer)
        for name in ("ln_mlp", "post_attention_layernorm", "input_layernorm"):
            if getattr(blk, name, None) is not None:
                return getattr(blk, name)
        raise ModelLoadError("This Falcon block has no MLP input norm.")

    def final_norm(self) -> Any:
        return self.hf.transformer.ln_f

    def embed(self) -> Any:
        return self.hf.transformer.word_embeddings

    def rotary(self) -> Any:
        return getattr(self.hf.transformer, "rotary_emb", None)

    def _qkv_index(self) -> tuple[Tensor, Tensor, Tensor]:
        """Row blocks (of d_head rows) of query_key_value that hold each q head, k head and v head."""
        cfg, H, KV = self.config(), self.n_heads, self.n_kv_heads
        if cfg.new_decoder_architecture:
            g = H // KV
            q = torch.tensor([kv * (g + 2) + j for kv in range(KV) for j in range(g)])
            return q, torch.arange(KV) * (g + 2) + g, torch.arange(KV) * (g + 2) + g + 1
        if cfg.multi_query:
            return torch.arange(H), torch.tensor([H]), torch.tensor([H + 1])
        return torch.arange(H) * 3, torch.arange(H) * 3 + 1, torch.arange(H) * 3 + 2

    def qkv(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
        lin = self.attn(layer).query_key_value
        w = lin.weight.detach().reshape(-1, self.d_head, lin.weight.shape[1])  # [blocks, d_head, d_model]
        b = None if lin.bias is None else lin.bias.detach().reshape(-1, self.d_head)
        idx = self._qkv_index()
        ws = [w[i].transpose(1, 2) for i in idx]
        bs: list[Tensor | None] = [None if b is None else b[i] for i in idx]
        return ws[0], ws[1], ws[2], bs[0], bs[1], bs[2]

    def o(self, layer: int) -> tuple[Tensor, Tensor | None]:
        dense = self.attn(layer).dense
        return _linear_in_out(dense).reshape(self.n_heads, self.d_head, -1), (
            None if dense.bias is None else dense.bias.detach())

    def mlp_weights(self, layer: int) -> dict[str, Tensor | None]:
        m = self.mlp(layer)
        return {"W_in": _linear_in_out(m.dense_h_to_4h), "W_gate": None, "W_out": _linear_in_out(m.dense_4h_to_h),
                "b_in": None if m.dense_h_to_4h.bias is None else m.dense_h_to_4h.bias.detach(),
                "b_out": None if m.dense_4h_to_h.bias is None else m.dense_4h_to_h.bias.detach()}


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

