"""Tiny random models of every family the architecture table accepts, with the features that set
each family apart (GQA, attention biases, q/k norms, sliding windows shorter than the prompt,
soft-capping, parallel residuals, partial rotary, fused QKV, tied embeddings, BOS or none).

Each is built seeded, saved to a folder with a word-level tokenizer and loaded through
`probes.load_model` like a user's folder; `before_wrap` records plain HF eager outputs first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

SPECIAL = ["<unk>", "<bos>", "<pad>"]
VOCAB = len(SPECIAL) + 256  # a byte-level tokenizer without merges: one token per byte
PROMPT = "When Mary and John went to the store, John gave a drink to"  # 58 tokens, far past a window of 4
WINDOW = 4
D, H, KV, DH, MLP = 64, 4, 2, 16, 96


@dataclass(frozen=True)
class Family:
    name: str  # the row in docs/support.md
    architecture: str  # the HF class
    features: str  # what sets it apart (the matrix shows it)
    make: Callable[[], Any]  # -> an HF model (seeded, random)
    bos: bool = True  # the tokenizer prepends <bos>


def _common(**kw: Any) -> dict[str, Any]:
    base = dict(vocab_size=VOCAB, hidden_size=D, intermediate_size=MLP, num_hidden_layers=2, num_attention_heads=H,
                num_key_value_heads=KV, max_position_embeddings=64, initializer_range=0.15, bos_token_id=1,
                eos_token_id=1, pad_token_id=2)
    base.update(kw)
    return base


def _build(cls_name: str, cfg_name: str, **kw: Any) -> Any:
    import transformers

    cfg = getattr(transformers, cfg_name)(**kw)
    cfg._attn_implementation = "eager"
    return getattr(transformers, cls_name)(cfg)


def _llama() -> Any:
    return _build("LlamaForCausalLM", "LlamaConfig", **_common(tie_word_embeddings=True))


def _mistral() -> Any:
    return _build("MistralForCausalLM", "MistralConfig", **_common(sliding_window=WINDOW, tie_word_embeddings=False))


def _qwen2() -> Any:
    return _build("Qwen2ForCausalLM", "Qwen2Config", **_common(tie_word_embeddings=True))


def _qwen3() -> Any:
    return _build("Qwen3ForCausalLM", "Qwen3Config", **_common(head_dim=DH, tie_word_embeddings=False))


def _gemma2() -> Any:
    return _build("Gemma2ForCausalLM", "Gemma2Config", **_common(
        head_dim=DH, num_hidden_layers=3, sliding_window=WINDOW, attn_logit_softcapping=20.0,
        final_logit_softcapping=15.0, query_pre_attn_scalar=DH, hidden_activation="gelu_pytorch_tanh"))


def _gemma3() -> Any:
    return _build("Gemma3ForCausalLM", "Gemma3TextConfig", **_common(
        head_dim=DH, num_hidden_layers=3, sliding_window=WINDOW, sliding_window_pattern=2, query_pre_attn_scalar=DH,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"]))


def _gpt2() -> Any:
    return _build("GPT2LMHeadModel", "GPT2Config", vocab_size=VOCAB, n_positions=64, n_embd=D, n_layer=2, n_head=H,
                  n_inner=MLP, initializer_range=0.15, bos_token_id=1, eos_token_id=1)


def _neox() -> Any:
    return _build("GPTNeoXForCausalLM", "GPTNeoXConfig", vocab_size=VOCAB, hidden_size=D, num_hidden_layers=2,
                  num_attention_heads=H, intermediate_size=MLP, max_position_embeddings=64, rotary_pct=0.5,
                  use_parallel_residual=True, initializer_range=0.15, bos_token_id=1, eos_token_id=1)


def _opt() -> Any:
    return _build("OPTForCausalLM", "OPTConfig", vocab_size=VOCAB, hidden_size=D, num_hidden_layers=2,
                  num_attention_heads=H, ffn_dim=MLP, max_position_embeddings=64, word_embed_proj_dim=D,
                  init_std=0.15, bos_token_id=1, eos_token_id=1, pad_token_id=2)


def _phi3() -> Any:
    return _build("Phi3ForCausalLM", "Phi3Config", **_common(tie_word_embeddings=False))


def _phi() -> Any:
    return _build("PhiForCausalLM", "PhiConfig", **_common(num_key_value_heads=H, partial_rotary_factor=0.5))


def _stablelm() -> Any:
    return _build("StableLmForCausalLM", "StableLmConfig", **_common(partial_rotary_factor=0.25, use_qkv_bias=True))


def _falcon() -> Any:
    return _build("FalconForCausalLM", "FalconConfig", vocab_size=VOCAB, hidden_size=D, num_hidden_layers=2,
                  num_attention_heads=H, new_decoder_architecture=False, multi_query=True, parallel_attn=True,
                  bias=True, alibi=False, initializer_range=0.15, bos_token_id=1, eos_token_id=1)


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("llama", "LlamaForCausalLM", "GQA, tied embeddings", _llama),
    Family("mistral", "MistralForCausalLM", "GQA, sliding window 4 < prompt", _mistral, bos=False),
    Family("qwen2", "Qwen2ForCausalLM", "GQA, q/k/v biases, tied embeddings", _qwen2, bos=False),
    Family("qwen3", "Qwen3ForCausalLM", "GQA, q/k norms", _qwen3),
    Family("gemma2", "Gemma2ForCausalLM", "GQA, sliding window, logit soft-capping, sandwich norms", _gemma2),
    Family("gemma3", "Gemma3ForCausalLM", "GQA, sliding window, q/k norms, sandwich norms", _gemma3),
    Family("gpt2", "GPT2LMHeadModel", "fused QKV, learned positions, tied embeddings", _gpt2, bos=False),
    Family("neox", "GPTNeoXForCausalLM", "parallel residual, partial rotary, fused QKV", _neox, bos=False),
    Family("opt", "OPTForCausalLM", "learned positions (offset 2), biases", _opt),
    Family("phi3", "Phi3ForCausalLM", "fused QKV and gate/up, GQA", _phi3),
    Family("phi", "PhiForCausalLM", "parallel residual, partial rotary, biases", _phi, bos=False),
    Family("stablelm", "StableLmForCausalLM", "partial rotary, q/k/v biases, LayerNorm", _stablelm),
    Family("falcon", "FalconForCausalLM", "parallel residual, multi-query, fused QKV", _falcon, bos=False),
]}


def tokenizer(bos: bool) -> Any:
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {w: i for i, w in enumerate(SPECIAL + alphabet)}
    tk = Tokenizer(models.BPE(vocab, [], unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    if bos:
        tk.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<bos>", pad_token="<pad>",
                                   eos_token="<bos>")


def randomize(hf: Any) -> None:
    """Norm scales in [0.5, 1.5] (Gemma's 1 + w: w in [-0.5, 0.5]) and small random biases, so every part matters."""
    gemma = "Gemma" in type(hf).__name__
    with torch.no_grad():
        for name, prm in hf.named_parameters():
            if "norm" in name or "ln" in name.split(".")[-2]:
                if name.endswith("weight"):
                    prm.uniform_(-0.5, 0.5) if gemma else prm.uniform_(0.5, 1.5)
                else:
                    prm.normal_(0, 0.1)
            elif name.endswith("bias"):
                prm.normal_(0, 0.1)


def save(family: Family, folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    hf = family.make()
    randomize(hf)
    hf.save_pretrained(folder)
    tokenizer(family.bos).save_pretrained(folder)
    return folder
