"""Folders written by the real SAELens 6 (tests/saes/fixtures/saelens6, made by scripts/make_saelens_fixtures.py).

Each folder is read by load_sae and must give SAELens's own encode / decode outputs on the fixed
input (stored beside the folders), or be refused with a message naming the field. NaN / inf weights
are refused at load, and reconstruction_metrics refuses NaN input.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from probes.errors import CheckpointError, InputError
from saes import registry
from saes.evaluate import reconstruction_metrics
from saes.saelens_io import load_sae, save_sae

FIXTURES = Path(__file__).parent / "fixtures" / "saelens6"
EXPECTED = load_file(str(FIXTURES / "expected.safetensors"))
READ = {"standard": "standard", "standard_no_b_dec_in": "standard", "topk": "topk", "topk_rescale": "topk",
        "topk_no_b_dec_in": "topk", "jumprelu": "jumprelu", "topk_training": "topk", "topk_training_inference": "topk",
        "jumprelu_training": "jumprelu", "batchtopk_training_inference": "jumprelu", "gated": "gated",
        "gated_no_b_dec_in": "gated", "gated_training": "gated"}


@pytest.mark.parametrize("name", sorted(READ))
def test_saelens6_folder_computes_what_saelens_computes(name):
    sae = load_sae(FIXTURES / name)
    assert sae.cfg.architecture == READ[name]
    assert sae.cfg.hook_name == "blocks.3.hook_resid_post" and sae.cfg.model_name == "smollm2-135m"  # from metadata
    x = EXPECTED["x"]
    with torch.no_grad():
        f = sae.encode(x)
        x_hat = sae.decode(f)
    f_ref, x_hat_ref = EXPECTED[f"{name}.feature_acts"], EXPECTED[f"{name}.x_hat"]
    assert torch.equal(f > 0, f_ref > 0), "the same features fire"
    assert torch.allclose(f, f_ref, rtol=1e-5, atol=1e-5)
    assert torch.allclose(x_hat, x_hat_ref, rtol=1e-5, atol=1e-4)
    assert float((f_ref > 0).sum(-1).float().mean()) > 0  # a fixture where nothing fires would prove nothing


@pytest.mark.parametrize(("name", "field"), [("topk_training", "rescale_acts_by_decoder_norm"),
                                             ("standard_no_b_dec_in", "apply_b_dec_to_input"),
                                             ("gated_no_b_dec_in", "apply_b_dec_to_input")])
def test_each_folded_field_matters(tmp_path, name, field):
    # read with the field flipped, the same weights give other outputs: the fixture tests the field
    folder = tmp_path / name
    shutil.copytree(FIXTURES / name, folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg[field] = not cfg[field]
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with torch.no_grad():
        x_hat = load_sae(folder)(EXPECTED["x"])
    assert (x_hat - EXPECTED[f"{name}.x_hat"]).abs().max() > 0.1


def test_constant_norm_rescale_is_refused_naming_the_field():
    with pytest.raises(InputError, match="'normalize_activations' = 'constant_norm_rescale' is not supported"):
        load_sae(FIXTURES / "standard_constant_norm_rescale")


@pytest.mark.parametrize(("field", "value"), [("reshape_activations", "hook_z"), ("normalize_activations", "layer_norm"),
                                              ("architecture", "crosscoder")])
def test_other_computation_fields_are_refused(tmp_path, field, value):
    folder = tmp_path / "f"
    shutil.copytree(FIXTURES / "standard", folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg[field] = value
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match=f"'{value}'"):
        load_sae(folder)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load(tmp_path, bad):
    folder = tmp_path / "f"
    shutil.copytree(FIXTURES / "topk", folder)
    w = load_file(str(folder / "sae_weights.safetensors"))
    w["b_enc"][3] = bad
    save_file(w, str(folder / "sae_weights.safetensors"))
    with pytest.raises(CheckpointError, match="tensor 'b_enc' holds 1 NaN or inf value"):
        load_sae(folder)


def test_our_folders_load_in_saelens_layout_and_keep_our_fields(tmp_path):
    # what SAELens 6 reads from our folder: v6 metadata, an architecture it knows, only its tensors
    sae = registry.build(registry.make_config("mutual_choice", d_in=8, d_sae=16, k=3, norm_scale=2.0))
    sae.threshold.fill_(0.25)
    save_sae(sae, tmp_path / "mc")
    cfg = json.loads((tmp_path / "mc" / "cfg.json").read_text())
    assert cfg["architecture"] == "jumprelu" and cfg["metadata"]["sae_lens_version"].startswith("6.")
    assert set(load_file(str(tmp_path / "mc" / "sae_weights.safetensors"))) == {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"}
    assert cfg["underuse_coefficient"] == sae.cfg.underuse_coefficient
    back = load_sae(tmp_path / "mc")
    assert type(back) is type(sae) and float(back.threshold) == pytest.approx(0.25)


def test_reconstruction_metrics_refuses_nan_input():
    sae = registry.build(registry.make_config("topk", d_in=8, d_sae=16, k=3))
    x = torch.randn(10, 8)
    x[4, 1] = float("nan")
    with pytest.raises(InputError, match="NaN or inf in 1 of 10 rows.*row 4"):
        reconstruction_metrics(sae, x)
