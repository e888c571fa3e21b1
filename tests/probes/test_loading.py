"""The model layer against the plain HF eager model (atol 1e-4) and its canonical facts."""

from __future__ import annotations

import pytest
import torch

from probes import load_model
from probes.capture import capture

ATOL = 1e-4


def _check_bridge_logits(model, ref):
    with torch.no_grad():
        logits = model.bridge(ref.input_ids, attention_mask=ref.attention_mask)
    real = ref.attention_mask.bool()
    assert torch.allclose(logits[real], ref.logits[real], atol=ATOL)


def test_smollm_facts(smollm):
    f = smollm.facts
    assert (f.n_layers, f.n_heads, f.n_kv_heads, f.d_model, f.d_head) == (30, 9, 3, 576, 64)
    assert f.architecture == "LlamaForCausalLM" and f.family == "llama"
    assert f.prepends_bos is False
    assert f.d_vocab == 49152 and f.n_ctx == 8192


def test_same_spec_gives_same_object(smollm):
    assert load_model("smollm2-135m", device="cpu") is smollm
    assert load_model("SmolLM2-135M", device="cpu") is smollm


def test_bridge_logits_equal_hf_eager(smollm_with_ref):
    _check_bridge_logits(*smollm_with_ref)


def test_nnsight_logits_equal_hf_eager_and_share_weights(smollm_with_ref):
    model, ref = smollm_with_ref
    lm = model.nnsight
    with lm.trace(ref.input_ids[:1]):
        out = lm.output.save()
    n = int(ref.attention_mask[0].sum())
    assert torch.allclose(out.logits[0, :n], ref.logits[0, :n], atol=ATOL)
    nn_param = next(lm._module.parameters())
    assert lm._module is model.hf_model
    assert nn_param.data_ptr() == next(model.hf_model.parameters()).data_ptr()


def test_hooked_pattern_equals_hf_output_attentions(smollm_with_ref):
    model, ref = smollm_with_ref
    n = int(ref.attention_mask[0].sum())
    result = capture(model, ref.input_ids[:1, :n], what=["pattern"], layers=[0, 7, 29])
    for i, layer in enumerate([0, 7, 29]):
        assert torch.allclose(result["pattern"][0, i], ref.attentions[layer][0, :, :n, :n], atol=ATOL)


def test_embedded_model_predicts_thursday(smollm):
    tokens = smollm.to_tokens("The days of the week are Monday, Tuesday, Wednesday,")
    logits = smollm.forward(tokens)
    assert smollm.to_string([int(logits[0, -1].argmax())]) == " Thursday"


def test_bos_option(smollm):
    plain = smollm.to_tokens("Hello world")
    with_bos = smollm.to_tokens("Hello world", prepend_bos=True)
    assert with_bos.ids[0, 0] == smollm.tokenizer.bos_token_id
    assert torch.equal(with_bos.ids[0, 1:], plain.ids[0])
    assert with_bos.prepend_bos and not plain.prepend_bos


@pytest.mark.slow
def test_gemma_facts_and_logits(gemma_with_ref):
    model, ref = gemma_with_ref
    f = model.facts
    assert (f.n_layers, f.n_heads, f.n_kv_heads) == (18, 4, 1)
    assert f.prepends_bos is True and f.family == "gemma"
    _check_bridge_logits(model, ref)
    n = int(ref.attention_mask[0].sum())
    result = capture(model, ref.input_ids[:1, :n], what=["pattern"], layers=[0, 17])
    assert torch.allclose(result["pattern"][0, 1], ref.attentions[17][0, :, :n, :n], atol=ATOL)
    tokens = model.to_tokens("The days of the week are Monday, Tuesday, Wednesday,")
    assert tokens.ids[0, 0] == model.tokenizer.bos_token_id
