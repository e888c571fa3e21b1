"""Tiny random models wrapped as HookedModels (no weights from disk, no bridge: only its cfg)."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from probes.model.hooked_model import HookedModel


class StubTokenizer:
    bos_token_id = None
    pad_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        return SimpleNamespace(input_ids=[1 + (ord(c) % 40) for c in text])

    def convert_ids_to_tokens(self, ids):
        return [f"t{i}" for i in ids]

    def convert_tokens_to_string(self, tokens):
        return "".join(tokens)


def _wrap(hf, n_layers, n_heads, n_kv, d_model, d_mlp, n_ctx) -> HookedModel:
    cfg = SimpleNamespace(n_layers=n_layers, n_heads=n_heads, n_key_value_heads=n_kv, d_head=d_model // n_heads,
                          d_model=d_model, d_mlp=d_mlp, n_ctx=n_ctx)
    hf.eval()
    return HookedModel("tiny", "random", hf, StubTokenizer(), SimpleNamespace(cfg=cfg))


def tiny_llama(seed: int = 0, n_layers: int = 2, n_heads: int = 4, n_kv: int = 2, d_model: int = 32) -> HookedModel:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=60, hidden_size=d_model, intermediate_size=48, num_hidden_layers=n_layers,
                      num_attention_heads=n_heads, num_key_value_heads=n_kv, max_position_embeddings=64,
                      attn_implementation="eager", tie_word_embeddings=False)
    hf = LlamaForCausalLM(cfg)
    with torch.no_grad():  # random norms so that the norm scales are exercised
        for name, prm in hf.named_parameters():
            if "norm" in name:
                prm.uniform_(0.5, 1.5)
    return _wrap(hf, n_layers, n_heads, n_kv, d_model, 48, 64)


def tiny_gpt2(seed: int = 0, n_layers: int = 2, n_heads: int = 4, d_model: int = 32) -> HookedModel:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=60, n_positions=64, n_embd=d_model, n_layer=n_layers, n_head=n_heads,
                     attn_implementation="eager")
    hf = GPT2LMHeadModel(cfg)
    with torch.no_grad():
        for name, prm in hf.named_parameters():
            if "bias" in name:
                prm.normal_(0, 0.1)
    return _wrap(hf, n_layers, n_heads, n_heads, d_model, 4 * d_model, 64)
