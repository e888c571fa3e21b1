"""SAELens layout: round trip, a folder written by hand, truncated/altered files, unknown architecture."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from probes.errors import CheckpointError, InputError
from saes import registry
from saes.saelens_io import load_sae, save_sae


@pytest.mark.parametrize("name", registry.sae_names())  # transcoders: tests/saes/test_transcoder.py
def test_round_trip_same_outputs(tmp_path, name):
    sae = registry.build(registry.make_config(name, d_in=8, d_sae=16, k=3, seed=2, norm_scale=2.5))
    sae.train()
    x = torch.randn(64, 8)
    sae.loss(x)  # sets batch thresholds
    sae.eval()
    save_sae(sae, tmp_path / "sae")
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["metadata"]["hook_name"] == "blocks.6.hook_resid_post" and cfg["hook_layer"] == 6
    assert cfg["normalize_activations"] == "none" and cfg["glasshouse_folded_norm_scale"] == 2.5
    # rows in the file have norm 1/s, and the file says so; the trained setting is kept beside it
    assert cfg["decoder_norm"] == "free" and cfg["glasshouse_trained_decoder_norm"] == sae.cfg.decoder_norm
    assert cfg["architecture"] == ("jumprelu" if name in ("batchtopk", "matryoshka_batchtopk", "mutual_choice", "feature_choice") else name)
    back = load_sae(tmp_path / "sae")
    assert type(back) is type(sae) and back.cfg == sae.cfg  # lossless: the norm scale is unfolded again
    for key, value in sae.weights().items():
        assert torch.allclose(back.weights()[key], value, rtol=1e-6, atol=1e-7), key
    x_new = torch.randn(64, 8, generator=torch.Generator().manual_seed(9))  # not on a threshold boundary
    assert torch.allclose(back(x_new), sae(x_new), atol=1e-5)


def test_hand_written_saelens_folder(tmp_path):
    d_in, d_sae = 4, 3
    w_enc = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 0, 0]])
    tensors = {"W_enc": w_enc, "b_enc": torch.tensor([0.0, -0.5, 0.0]), "W_dec": w_enc.T.contiguous() * 2,
               "b_dec": torch.tensor([0.0, 0.0, 0.0, 1.0]), "threshold": torch.tensor([0.5, 0.5, 2.0])}
    folder = tmp_path / "gemma-scope-like"
    folder.mkdir()
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({
        "architecture": "jumprelu", "d_in": d_in, "d_sae": d_sae, "dtype": "float32", "device": "cpu",
        "model_name": "gemma-2-2b", "hook_name": "blocks.3.hook_resid_post", "hook_layer": 3, "hook_head_index": None,
        "activation_fn_str": "relu", "apply_b_dec_to_input": True, "normalize_activations": "none"}))
    sae = load_sae(folder)
    assert sae.cfg.architecture == "jumprelu"
    x = torch.tensor([[1.0, 1.0, 1.0, 5.0]])
    # by hand: x - b_dec = [1,1,1,4]; z = [1, 0.5, 1]; f = z * (z > [0.5, 0.5, 2]) = [1, 0, 0]
    assert torch.allclose(sae.encode(x), torch.tensor([[1.0, 0.0, 0.0]]))
    assert torch.allclose(sae(x), torch.tensor([[2.0, 0.0, 0.0, 1.0]]))


def test_saelens_topk_as_standard_with_topk_activation(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    save_file({"W_enc": torch.eye(3), "b_enc": torch.zeros(3), "W_dec": torch.eye(3), "b_dec": torch.zeros(3)},
              str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"architecture": "standard", "d_in": 3, "d_sae": 3, "hook_name": "blocks.0.hook_resid_pre",
                                                 "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 1}}))
    sae = load_sae(folder)
    assert sae.cfg.architecture == "topk"
    assert torch.equal(sae(torch.tensor([[1.0, 3.0, 2.0]])), torch.tensor([[0.0, 3.0, 0.0]]))


def _saved(tmp_path):
    sae = registry.build(registry.make_config("topk", d_in=8, d_sae=16, k=3))
    return save_sae(sae, tmp_path / "sae")


def test_truncated_weights_is_checkpoint_error(tmp_path):
    folder = _saved(tmp_path)
    path = folder / "sae_weights.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or altered"):
        load_sae(folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    del cfg["weights_sha256"]  # as SAELens writes it: no checksum; the reader itself must notice
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_sae(folder)


def test_altered_weights_is_checkpoint_error(tmp_path):
    folder = _saved(tmp_path)
    path = folder / "sae_weights.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_sae(folder)


def test_wrong_shapes_missing_files_unknown_architecture(tmp_path):
    folder = _saved(tmp_path)
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg.pop("weights_sha256")
    (folder / "cfg.json").write_text(json.dumps({**cfg, "d_in": 9}))
    with pytest.raises(CheckpointError, match="W_enc has shape"):
        load_sae(folder)
    cfg.pop("glasshouse_architecture")
    (folder / "cfg.json").write_text(json.dumps({**cfg, "architecture": "crosscoder"}))
    with pytest.raises(InputError, match="Unknown SAE architecture 'crosscoder'"):
        load_sae(folder)
    (folder / "cfg.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_sae(folder)
    with pytest.raises(CheckpointError, match="no cfg.json"):
        load_sae(tmp_path / "nowhere")
