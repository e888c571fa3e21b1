"""Transcoders (saes/architectures/transcoder.py): the loss against plain torch, training on [input | target]
rows, one pass for both hooks, the loss change with the transcoder in place, and SAELens folders both ways."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from probes.errors import CheckpointError, InputError
from saes import registry
from saes.evaluate import transcoder_loss_change
from saes.pipeline import SAESpec, train_sae
from saes.saelens_io import load_sae, save_sae


def _transcoder(arch: str, skip: bool, seed: int = 0):
    cfg = registry.make_config(arch, d_in=6, d_out=4, d_sae=10, k=3, skip=skip, norm_scale=2.0, out_norm_scale=0.5,
                               seed=seed)
    tc = registry.build(cfg)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        tc.b_enc.copy_(torch.randn(10, generator=gen))
        tc.b_dec.copy_(torch.randn(4, generator=gen))
        if skip:
            tc.W_skip.copy_(torch.randn(4, 6, generator=gen))
    return tc


def _by_hand(tc, x: torch.Tensor) -> torch.Tensor:
    """y_hat from the formula, the rule written out (top 3 of ReLU(z), or z where z > threshold)."""
    z = (x * 2.0) @ tc.W_enc.detach() + tc.b_enc.detach()
    if tc.cfg.architecture == "topk_transcoder":
        r = torch.relu(z)
        keep = r >= r.topk(3, dim=-1).values[:, -1:]
        f = torch.where(keep, r, 0.0)
    else:
        f = torch.where(z > tc.threshold.detach(), z, 0.0)
    y_n = f @ tc.W_dec.detach() + tc.b_dec.detach()
    if tc.W_skip is not None:
        y_n = y_n + (x * 2.0) @ tc.W_skip.detach().T
    return y_n / 0.5


@pytest.mark.parametrize("arch", ["topk_transcoder", "jumprelu_transcoder"])
@pytest.mark.parametrize("skip", [False, True])
def test_loss_and_forward_equal_the_formula(arch, skip):
    tc = _transcoder(arch, skip)
    gen = torch.Generator().manual_seed(7)
    x, y = torch.randn(5, 6, generator=gen), torch.randn(5, 4, generator=gen)
    want = _by_hand(tc, x)
    torch.testing.assert_close(tc(x), want, atol=1e-5, rtol=1e-5)
    out = tc.loss(torch.cat([x, y], dim=-1))
    torch.testing.assert_close(out.x_hat, want, atol=1e-5, rtol=1e-5)
    mse = ((want * 0.5 - y * 0.5) ** 2).sum(-1).mean()
    torch.testing.assert_close(out.terms["mse"], mse, atol=1e-5, rtol=1e-5)
    assert set(out.terms) == {"mse", "auxk" if arch == "topk_transcoder" else "l0"}
    out.loss.backward()
    assert tc.W_enc.grad is not None and (tc.W_skip is None or tc.W_skip.grad is not None)


def test_bad_rows_and_specs_are_refused():
    tc = _transcoder("topk_transcoder", skip=True)
    with pytest.raises(InputError, match=r"side by side: width 6 \+ 4 = 10, got 9"):
        tc.loss(torch.zeros(2, 9))
    with pytest.raises(InputError, match="needs its input"):
        tc.decode(torch.zeros(2, 10))
    with pytest.raises(InputError, match="give the output hook"):
        SAESpec("topk_transcoder", 16, 4, "blocks.1.mlp.hook_in", "m").check()
    with pytest.raises(InputError, match="belong to transcoders"):
        SAESpec("topk", 16, 4, "blocks.1.mlp.hook_in", "m", hook_name_out="blocks.1.hook_mlp_out").check()


def _pairs(n: int = 4096, seed: int = 0) -> torch.Tensor:
    """Rows [x | y] where y is a sparse function of x: y = relu(x A - 1.5) B (a toy MLP with rare units)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=gen)
    hidden = torch.relu(x @ torch.randn(8, 24, generator=gen) - 1.5)
    y = hidden @ torch.randn(24, 6, generator=gen) + 0.1 * x[:, :6]
    return torch.cat([x, y], dim=-1)


@pytest.mark.parametrize("arch", ["topk_transcoder", "jumprelu_transcoder"])
def test_training_on_pairs_predicts_the_target(arch):
    rows = _pairs()
    spec = SAESpec(arch, 48, 6, "in", "toy", hook_name_out="out", d_out=6, skip=True)
    trained = train_sae(rows, spec, batch_size=256, total_tokens=256 * 300, lr=3e-3, progress=False)
    tc = trained.sae
    assert tc.cfg.d_in == 8 and tc.cfg.d_out == 6 and tc.W_skip is not None
    x, y = rows[:1024, :8], rows[:1024, 8:]
    with torch.no_grad():
        fvu = float((tc(x) - y).pow(2).sum() / (y - y.mean(0)).pow(2).sum())
    ones = torch.cat([rows[:, :8], torch.ones(len(rows), 1)], dim=1)
    linear = ones[:1024] @ torch.linalg.lstsq(ones, rows[:, 8:]).solution  # the best affine map (about 0.50)
    linear_fvu = float((linear - y).pow(2).sum() / (y - y.mean(0)).pow(2).sum())
    assert fvu < 0.9 * linear_fvu, (fvu, linear_fvu)  # the sparse features add what the skip's map cannot


def test_one_pass_gives_both_hooks_and_the_same_transcoder(smollm):
    from probes.sinks import inputs_for_regime
    from saes.multi import train_many, window_rows

    ids = inputs_for_regime(smollm, "natural", 4, 17, seed=1)
    spec = SAESpec("topk_transcoder", 64, 8, "blocks.2.mlp.hook_in", "smollm2-135m",
                   hook_name_out="blocks.2.hook_mlp_out")
    fields = {"batch_size": 32, "total_tokens": 32 * 4, "progress": False}
    together = train_many(smollm, [spec], ids, **fields)[0].sae
    rows = window_rows(smollm, ["blocks.2.mlp.hook_in"], ids)["blocks.2.mlp.hook_in"]
    out = window_rows(smollm, ["blocks.2.hook_mlp_out"], ids)["blocks.2.hook_mlp_out"]
    from dataclasses import replace

    alone = train_sae(torch.cat([rows, out], dim=-1), replace(spec, d_out=out.shape[-1]), **fields).sae
    for name, value in together.state_dict().items():
        torch.testing.assert_close(value, alone.state_dict()[name], atol=0, rtol=0, msg=name)


def _identity_transcoder(model, layer: int, identity: bool):
    """A skip transcoder from hook_mlp_out to itself whose features never fire: y_hat = x W_skip^T."""
    d = model.facts.d_model
    cfg = registry.make_config("topk_transcoder", d_in=d, d_out=d, d_sae=8, k=2, skip=True,
                               hook_name=f"blocks.{layer}.hook_mlp_out", hook_name_out=f"blocks.{layer}.hook_mlp_out")
    tc = registry.build(cfg)
    with torch.no_grad():
        tc.b_enc.fill_(-1e6)
        tc.W_skip.copy_(torch.eye(d) if identity else torch.zeros(d, d))
    return tc


def test_loss_change_is_clean_for_an_identity_and_ablated_for_zero(smollm):
    """Exact anchors: predicting the MLP output itself gives the clean loss, predicting zeros the ablated one;
    the clean loss is HookedModel.loss_per_token's (itself checked against HF)."""
    from probes.sinks import inputs_for_regime

    ids = inputs_for_regime(smollm, "natural", 3, 20, seed=4)
    same = transcoder_loss_change(smollm, _identity_transcoder(smollm, 3, identity=True), ids)
    zero = transcoder_loss_change(smollm, _identity_transcoder(smollm, 3, identity=False), ids)
    assert same.loss_spliced == pytest.approx(same.loss_clean, abs=1e-5) and same.kl_spliced < 1e-6
    assert zero.loss_spliced == pytest.approx(zero.loss_ablated, abs=1e-5)
    assert zero.loss_ablated > zero.loss_clean + 0.01  # the anchors differ, so the checks can fail
    clean = float(smollm.loss_per_token(ids, attention="patterns").mean())
    assert same.loss_clean == pytest.approx(clean, abs=1e-5)
    assert same.hook_name == "blocks.3.hook_mlp_out -> blocks.3.hook_mlp_out"


def test_an_input_hook_after_the_output_hook_is_refused(smollm):
    from probes.sinks import inputs_for_regime

    tc = _identity_transcoder(smollm, 3, identity=True)
    tc.cfg.hook_name = "blocks.5.hook_mlp_out"
    with pytest.raises(InputError, match="runs after its output hook"):
        transcoder_loss_change(smollm, tc, inputs_for_regime(smollm, "natural", 1, 8, seed=4))


@pytest.mark.parametrize("arch", ["topk_transcoder", "jumprelu_transcoder"])
@pytest.mark.parametrize("skip", [False, True])
def test_our_folder_round_trip(tmp_path, arch, skip):
    tc = _transcoder(arch, skip)
    tc.cfg.hook_name, tc.cfg.hook_name_out = "blocks.1.mlp.hook_in", "blocks.1.hook_mlp_out"
    save_sae(tc, tmp_path / "tc")
    cfg = json.loads((tmp_path / "tc" / "cfg.json").read_text())
    assert cfg["apply_b_dec_to_input"] is False and cfg["d_out"] == 4
    if arch == "jumprelu_transcoder":
        assert cfg["architecture"] == ("jumprelu_skip_transcoder" if skip else "jumprelu_transcoder")
    back = load_sae(tmp_path / "tc")
    x = torch.randn(7, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(back(x), tc(x), atol=1e-5, rtol=1e-5)
    assert back.cfg.hook_name_out == "blocks.1.hook_mlp_out"


def _saelens_folder(path, arch: str, tensors: dict[str, torch.Tensor], **extra) -> None:
    path.mkdir()
    cfg = {"architecture": arch, "d_in": 6, "d_sae": 10, "d_out": 4, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": False, "normalize_activations": "none", "hook_name_out": "blocks.1.hook_mlp_out",
           "hook_layer_out": 1, "hook_head_index_out": None,
           "metadata": {"sae_lens_version": "6.54.0", "model_name": "m", "hook_name": "blocks.1.mlp.hook_in"}, **extra}
    (path / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "sae_weights.safetensors"))


@pytest.mark.parametrize("arch", ["transcoder", "skip_transcoder", "jumprelu_transcoder"])
def test_saelens_transcoders_compute_what_saelens_computes(tmp_path, arch):
    gen = torch.Generator().manual_seed(5)
    t = {"W_enc": torch.randn(6, 10, generator=gen), "b_enc": torch.randn(10, generator=gen),
         "W_dec": torch.randn(10, 4, generator=gen), "b_dec": torch.randn(4, generator=gen)}
    if arch == "skip_transcoder":
        t["W_skip"] = torch.randn(4, 6, generator=gen)
    if arch == "jumprelu_transcoder":
        t["threshold"] = torch.rand(10, generator=gen)
    _saelens_folder(tmp_path / "tc", arch, t)
    tc = load_sae(tmp_path / "tc")
    x = torch.randn(9, 6, generator=gen)
    pre = x @ t["W_enc"] + t["b_enc"]  # SAELens: no b_dec on the input
    f = torch.relu(pre) * (pre > t["threshold"]) if "threshold" in t else torch.relu(pre)
    want = f @ t["W_dec"] + t["b_dec"] + (x @ t["W_skip"].T if "W_skip" in t else 0.0)
    with torch.no_grad():
        torch.testing.assert_close(tc(x), want, atol=1e-4, rtol=1e-5)


def test_a_transcoder_folder_without_its_output_hook_is_refused(tmp_path):
    t = {"W_enc": torch.zeros(6, 10), "b_enc": torch.zeros(10), "W_dec": torch.zeros(10, 4), "b_dec": torch.zeros(4)}
    _saelens_folder(tmp_path / "tc", "transcoder", t, hook_name_out="")
    with pytest.raises(CheckpointError, match="hook_name_out"):
        load_sae(tmp_path / "tc")
