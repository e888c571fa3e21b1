"""The model layer against the plain HF eager model (atol 1e-4) and its canonical facts."""

from __future__ import annotations

import pytest
import torch

from probes import load_model
from probes.model.capture import capture

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


@pytest.mark.parametrize("spec", ["x" * 300, "/" + "x" * 300])
def test_a_name_too_long_for_the_os_is_a_model_load_error(spec):
    """A typed spec longer than the OS allows for a file name fails with ModelLoadError, not OSError."""
    from probes.errors import ModelLoadError
    from probes.model.model_specs import resolve_spec

    with pytest.raises(ModelLoadError):
        resolve_spec(spec)


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


def _gguf_reference(spec: str, ref, monkeypatch):
    """The plain HF model loaded from the GGUF itself (no cache), on the fixtures' reference batch,
    counting how often the GGUF file is parsed."""
    import gguf

    from probes.model import model_cache
    from probes.model.loading import _from_pretrained
    from probes.model.model_specs import resolve_spec

    parsed: list[str] = []
    real = gguf.GGUFReader

    def counting(path, *args, **kwargs):
        parsed.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", counting)
    resolved = resolve_spec(spec)
    hf_model, tokenizer = _from_pretrained(resolved.location, resolved.gguf_file, torch.float32)
    assert len(parsed) == 1  # tokenizer, config and weights from one parse (transformers alone: three)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    from tests.conftest import REFERENCE_PROMPTS

    enc = tokenizer(REFERENCE_PROMPTS, return_tensors="pt", padding=True)
    assert torch.equal(enc.input_ids, ref.input_ids) and torch.equal(enc.attention_mask, ref.attention_mask)
    with torch.no_grad():
        logits = hf_model.eval()(enc.input_ids, attention_mask=enc.attention_mask).logits
    return logits, model_cache


def _check_cached_equals_gguf(model, ref, spec, monkeypatch):
    from pathlib import Path

    from probes.model import model_cache

    root = model_cache.cache_root()
    if root is None:
        pytest.skip(f"the conversion cache is off ({model_cache.CACHE_ENV}); the fixture loaded the GGUF")
    folder = Path(model.hf_model.name_or_path)
    assert folder.parent == root and folder.name.startswith(spec)  # the fixture's model is the cached copy
    logits, _ = _gguf_reference(spec, ref, monkeypatch)
    assert torch.equal(logits, ref.logits)  # bit for bit, padded positions included


def test_cached_copy_gives_the_gguf_logits_bit_for_bit(smollm_with_ref, monkeypatch):
    _check_cached_equals_gguf(*smollm_with_ref, "smollm2-135m", monkeypatch)


@pytest.mark.slow
def test_gemma_cached_copy_gives_the_gguf_logits_bit_for_bit(gemma_with_ref, monkeypatch):
    _check_cached_equals_gguf(*gemma_with_ref, "gemma3-270m", monkeypatch)


def test_unusable_cache_folder_falls_back_to_the_gguf_with_a_warning(monkeypatch, tmp_path, caplog):
    import logging

    from probes.model import model_cache
    from probes.model.loading import _cached_folder
    from probes.model.model_specs import resolve_spec

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(model_cache.CACHE_ENV, str(blocker))
    caplog.set_level(logging.WARNING, logger="glasshouse.model_cache")
    assert _cached_folder(resolve_spec("smollm2-135m")) is None
    assert any("loading the GGUF" in r.getMessage() for r in caplog.records)
    monkeypatch.setenv(model_cache.CACHE_ENV, "off")
    assert _cached_folder(resolve_spec("smollm2-135m")) is None


def test_api_refuses_a_folder_without_tokenizer_files(tmp_path):
    """load_model itself (not only the CLI) refuses a model folder that has no tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from probes import load_model
    from probes.errors import ModelLoadError

    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "no_tokenizer")
    with pytest.raises(ModelLoadError, match="no tokenizer files"):
        load_model(str(tmp_path / "no_tokenizer"))
