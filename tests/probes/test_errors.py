"""Bad input gets one clear GlasshouseError naming the problem and the fix."""

from __future__ import annotations

import json

import pytest
import torch

from probes import InputError, ModelLoadError, load_model


def test_unknown_spec_offline():
    with pytest.raises(ModelLoadError, match="Unknown model 'no-such-model-xyz'.*HF_HUB_OFFLINE"):
        load_model("no-such-model-xyz")


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ModelLoadError, match="no weights"):
        load_model(str(tmp_path))


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(str(tmp_path))


def test_missing_folder():
    with pytest.raises(ModelLoadError, match="No such folder"):
        load_model("./does/not/exist")


def test_corrupt_weights_file(tmp_path, smollm):
    smollm.tokenizer.save_pretrained(tmp_path)  # a real tokenizer: only the weights are broken
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 8,
                                                       "vocab_size": 16, "n_positions": 8}))
    (tmp_path / "model.safetensors").write_bytes(b"\x00\x01 not a safetensors file")
    with pytest.raises(ModelLoadError, match="Could not load the model"):
        load_model(str(tmp_path))


def test_bad_dtype_and_device():
    with pytest.raises(ModelLoadError, match="Unknown dtype"):
        load_model("smollm2-135m", dtype="float8")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="no CUDA GPU"):
            load_model("smollm2-135m", device="cuda")


def test_empty_prompt(smollm):
    with pytest.raises(InputError, match="empty"):
        smollm.to_tokens("   ")
    with pytest.raises(InputError, match="No prompts"):
        smollm.to_tokens([])


def test_prompt_longer_than_context(smollm):
    too_long = torch.zeros(smollm.facts.n_ctx + 1, dtype=torch.long)
    with pytest.raises(InputError, match=r"8193 tokens but smollm2-135m takes at most 8192"):
        smollm.tokens_from_ids(too_long)


def test_token_outside_vocabulary(smollm):
    with pytest.raises(InputError, match="outside the vocabulary"):
        smollm.tokens_from_ids([[1, 2, 10**6]])


def test_layer_and_head_out_of_range(smollm):
    with pytest.raises(InputError, match="layers 0..29"):
        smollm.check_layer(30)
    with pytest.raises(InputError, match="heads 0..8"):
        smollm.W_OV(0, 9)
