"""GPT-2, GPT-NeoX and OPT through the same folder path: tiny random models saved locally (no network).

Each is compared with its own plain HF eager outputs (computed before the bridge is booted) and
checked for canonical weights that reproduce the heads.
"""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    OPTConfig,
    OPTForCausalLM,
    PreTrainedTokenizerFast,
)

from probes import load_model
from probes.errors import InputError
from probes.extreme import extreme_tokens
from probes.model.capture import capture
from tests.probes.model.weights_check import check_weights_reproduce_heads

WORDS = ["<unk>", "<bos>", "<pad>"] + [f"w{i}" for i in range(61)]
PROMPT = "w1 w2 w3 w4 w5 w6 w7"
SPECS = {
    "gpt2": (GPT2LMHeadModel, lambda: GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                                  bos_token_id=1, eos_token_id=1)),
    "neox": (GPTNeoXForCausalLM, lambda: GPTNeoXConfig(vocab_size=64, max_position_embeddings=32, hidden_size=32,
                                                        num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)),
    "opt": (OPTForCausalLM, lambda: OPTConfig(vocab_size=64, max_position_embeddings=32, hidden_size=32, num_hidden_layers=2,
                                              num_attention_heads=4, ffn_dim=64, word_embed_proj_dim=32,
                                              enable_bias=False, tie_word_embeddings=False)),
}


def _tokenizer() -> PreTrainedTokenizerFast:
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<bos>", pad_token="<pad>")


@pytest.mark.parametrize("family", sorted(SPECS))
def test_tiny_model_folder(family, tmp_path):
    cls, make_config = SPECS[family]
    torch.manual_seed(0)
    cls(make_config()).save_pretrained(tmp_path)
    _tokenizer().save_pretrained(tmp_path)
    ref = {}

    def record(hf_model, tokenizer):
        ids = tokenizer(PROMPT, return_tensors="pt").input_ids
        with torch.no_grad():
            out = hf_model(ids, output_attentions=True)
        ref.update(ids=ids, logits=out.logits, attentions=out.attentions)

    model = load_model(str(tmp_path), device="cpu", before_wrap=record)
    assert model.facts.family == family and model.facts.n_heads == 4 and model.facts.n_layers == 2
    with torch.no_grad():
        logits = model.bridge(ref["ids"])
    assert torch.allclose(logits, ref["logits"], atol=1e-5)
    check_weights_reproduce_heads(model, [0, 1], prompt=PROMPT, atol=1e-5)
    # attention logits: softmax(scores) is the pattern, except for OPT, whose bridge has no logits
    T = ref["ids"].shape[1]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    if model.attn_scores_are_pattern:
        with pytest.raises(InputError, match="no attention logits"):
            capture(model, PROMPT, what=["scores"])
    else:
        scores = capture(model, PROMPT, what=["scores"])["scores"][0]
        torch.testing.assert_close(scores.masked_fill(~causal, float("-inf")).softmax(-1),
                                   torch.stack([a[0] for a in ref["attentions"]]), atol=1e-5, rtol=1e-4)
    # the extreme-token logit gap (from scores, or from log-probabilities for OPT) by hand, from HF's attentions
    gap = extreme_tokens(model, ref["ids"]).logit_gap[0]  # [layer, head, T]
    for layer in range(2):
        log_a = ref["attentions"][layer][0].log()
        i = T - 1
        torch.testing.assert_close(gap[layer, :, i], log_a[:, i, 0] - log_a[:, i, 1:i].mean(-1), atol=1e-4, rtol=1e-4)


def test_learned_positions_are_aligned(tmp_path):
    """W_pos[p] is the vector the model adds at position p (OPT stores it at row p + 2)."""
    torch.manual_seed(0)
    OPTForCausalLM(SPECS["opt"][1]()).save_pretrained(tmp_path)
    _tokenizer().save_pretrained(tmp_path)
    model = load_model(str(tmp_path), device="cpu")
    assert model.W_pos.shape == (32, 32)
    ids = torch.tensor([[3, 4, 5]])
    with torch.no_grad():
        pos = model.adapter.pos_embed()(torch.ones_like(ids), position_ids=torch.arange(3)[None])
    assert torch.allclose(pos[0], model.W_pos[:3])
