"""Gated SAE (saes/architectures/gated.py) against computations written out here from the paper's formulas.

Every reference is plain torch on the SAE's own parameter values (or numbers worked by hand), never the
SAE's methods; float64 so that 1e-6 tests the formula rather than the rounding.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from saes import registry
from saes.activation_store import TensorSource
from saes.architectures.gated import GatedConfig, GatedSAE
from saes.saelens_io import load_sae, save_sae
from saes.trainer import TrainConfig, train

TOL = {"rtol": 1e-6, "atol": 1e-6}


def gated(d_in=8, d_sae=16, seed=0, **kw) -> GatedSAE:
    """A gated SAE with every parameter random (non-zero biases and r_mag, decoder rows of unequal norms), float64."""
    sae = registry.build(registry.make_config("gated", d_in=d_in, d_sae=d_sae, **kw)).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=g, dtype=torch.float64))
        sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=g, dtype=torch.float64)
                        * (0.5 + 2 * torch.rand(d_sae, 1, generator=g, dtype=torch.float64)))
        for name in ("b_dec", "b_gate", "b_mag", "r_mag"):
            p = getattr(sae, name)
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    assert isinstance(sae, GatedSAE)
    return sae


def inputs(n=32, d_in=8, seed=1) -> torch.Tensor:
    return 2 * torch.randn(n, d_in, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 0.3


def reference(sae: GatedSAE, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The paper's forward pass and loss terms, from the parameter values (detached copies)."""
    W_enc, W_dec, b_dec, b_gate, b_mag, r_mag = (getattr(sae, n).detach().clone()
                                                 for n in ("W_enc", "W_dec", "b_dec", "b_gate", "b_mag", "r_mag"))
    s, lam = sae.cfg.norm_scale, sae.cfg.l1_coefficient
    x_n = x * s
    x_c = x_n - b_dec
    pi_gate = x_c @ W_enc + b_gate
    W_mag = W_enc * torch.exp(r_mag)[None, :]  # the magnitude path's own matrix, as written in the paper
    pi_mag = x_c @ W_mag + b_mag
    f = torch.where(pi_gate > 0, torch.clamp(pi_mag, min=0.0), torch.zeros_like(pi_mag))
    x_n_hat = f @ W_dec + b_dec
    row_norms = torch.sqrt((W_dec**2).sum(dim=1))
    gate_relu = torch.clamp(pi_gate, min=0.0)
    x_n_frozen = gate_relu @ W_dec + b_dec
    return {"pi_gate": pi_gate, "pi_mag": pi_mag, "f": f, "x_hat": x_n_hat / s, "x_c": x_c, "x_n": x_n,
            "x_n_frozen": x_n_frozen, "row_norms": row_norms,
            "mse": ((x_n_hat - x_n) ** 2).sum(dim=1).mean(),
            "l1": lam * (gate_relu * row_norms[None, :]).sum(dim=1).mean(),
            "aux": ((x_n_frozen - x_n) ** 2).sum(dim=1).mean()}


# --- forward -------------------------------------------------------------------------------------
def test_encode_decode_match_the_formulas():
    sae = gated(norm_scale=1.7)
    x = inputs()
    ref = reference(sae, x)
    # the example exercises both halves of the rule: gates closed over a positive magnitude, and the reverse
    assert ((ref["pi_gate"] <= 0) & (ref["pi_mag"] > 0)).any() and ((ref["pi_gate"] > 0) & (ref["pi_mag"] <= 0)).any()
    assert (ref["f"] > 0).any()
    with torch.no_grad():
        assert torch.allclose(sae.pre_acts(x), ref["pi_gate"], **TOL)
        assert torch.allclose(sae.magnitude_pre_acts(x), ref["pi_mag"], **TOL)
        f = sae.encode(x)
        assert torch.allclose(f, ref["f"], **TOL) and torch.equal(f > 0, ref["f"] > 0)
        assert torch.allclose(sae.decode(f), ref["x_hat"], **TOL)
        assert torch.allclose(sae(x.reshape(4, 8, 8)), ref["x_hat"].reshape(4, 8, 8), **TOL)  # leading dims kept


def test_hand_worked_example():
    # d_in 2, d_sae 2, s 1. x = [1.5, 1], b_dec = [0.5, 0] -> x_c = [1, 1]; x_c W_enc = [1, 1]
    # pi_gate = [1, 1] + [0.5, -1] = [1.5, 0]        (feature 1's gate is exactly 0: closed)
    # pi_mag  = [1, 1] * exp([ln 2, 0]) + [-1, 0.5] = [1, 1.5]
    # f = [1 * 1, 0 * 1.5] = [1, 0];  x_hat = [1, 0] W_dec + b_dec = [2, 0] + [0.5, 0] = [2.5, 0]
    # mse = 1^2 + 1^2 = 2;  l1 = 0.5 * (1.5 * ||[2, 0]|| + 0 * 1) = 1.5
    # aux: ReLU(pi_gate) W_dec + b_dec = [3, 0] + [0.5, 0] = [3.5, 0] -> 2^2 + 1^2 = 5
    sae = registry.build(registry.make_config("gated", d_in=2, d_sae=2, l1_coefficient=0.5, decoder_norm="free"))
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, -1.0], [0.0, 2.0]]))
        sae.b_gate.copy_(torch.tensor([0.5, -1.0]))
        sae.r_mag.copy_(torch.tensor([math.log(2.0), 0.0]))
        sae.b_mag.copy_(torch.tensor([-1.0, 0.5]))
        sae.W_dec.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
        sae.b_dec.copy_(torch.tensor([0.5, 0.0]))
    x = torch.tensor([[1.5, 1.0]])
    out = sae.loss(x)
    assert torch.allclose(out.feature_acts, torch.tensor([[1.0, 0.0]]), atol=1e-6)
    assert torch.allclose(out.x_hat, torch.tensor([[2.5, 0.0]]), atol=1e-6)
    terms = {k: float(v.detach()) for k, v in out.terms.items()}
    assert terms == pytest.approx({"mse": 2.0, "l1": 1.5, "aux": 5.0}, abs=1e-6)
    assert float(out.loss.detach()) == pytest.approx(8.5, abs=1e-6) and out.l0() == 1.0


# --- loss terms ------------------------------------------------------------------------------------
def test_loss_terms_match_the_formulas():
    sae = gated(norm_scale=1.7, l1_coefficient=0.7, decoder_norm="free")
    x = inputs()
    ref = reference(sae, x)
    out = sae.loss(x)
    assert set(out.terms) == {"mse", "l1", "aux"}
    for name in ("mse", "l1", "aux"):
        assert torch.allclose(out.terms[name], ref[name], **TOL), name
    assert torch.allclose(out.loss, ref["mse"] + ref["l1"] + ref["aux"], **TOL)
    assert torch.allclose(out.x_hat, ref["x_hat"], **TOL) and torch.allclose(out.feature_acts, ref["f"], **TOL)
    assert float(ref["aux"]) != pytest.approx(float(ref["mse"]))  # the gate's own reconstruction differs from f's
    with torch.no_grad():
        sae.sparsity_scale.fill_(3.0)  # the steering scale multiplies the coefficient (saes/config.py adapt_scale)
    assert torch.allclose(sae.loss(x).terms["l1"], 3 * ref["l1"], **TOL)


def _grads(sae: GatedSAE, x: torch.Tensor, term: str) -> dict[str, torch.Tensor]:
    """.grad of every parameter after backward of one loss term alone (None read as zero)."""
    sae.zero_grad(set_to_none=True)
    sae.loss(x).terms[term].backward()
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in sae.named_parameters()}


def test_aux_term_sends_no_gradient_into_the_decoder():
    sae = gated(norm_scale=1.7, decoder_norm="free")
    x = inputs()
    ref = reference(sae, x)
    grads = _grads(sae, x, "aux")
    for name in ("W_dec", "r_mag", "b_mag"):
        assert torch.count_nonzero(grads[name]) == 0, name
    # by hand: d aux / d pi_gate = (2 / B) (x_frozen - x_n) W_dec^T, where pi_gate > 0. It reaches b_gate, W_enc
    # and b_dec, the last only through the encoder's input x_c = x_n - b_dec: d / d b_dec = -W_enc g.sum(0). A b_dec
    # that was not frozen in the reconstruction would add (2 / B) sum_b (x_frozen - x_n) to that.
    B = x.shape[0]
    g = (2 / B) * ((ref["x_n_frozen"] - ref["x_n"]) @ sae.W_dec.detach().T) * (ref["pi_gate"] > 0)
    W_enc = sae.W_enc.detach()
    assert torch.allclose(grads["b_gate"], g.sum(0), **TOL)
    assert torch.allclose(grads["W_enc"], ref["x_c"].T @ g, **TOL)
    assert torch.allclose(grads["b_dec"], -(W_enc @ g.sum(0)), **TOL)
    assert torch.count_nonzero(grads["b_gate"]) > 0


def test_l1_term_reaches_the_gate_path_only():
    sae = gated(norm_scale=1.7, l1_coefficient=0.7, decoder_norm="free")
    x = inputs()
    ref = reference(sae, x)
    grads = _grads(sae, x, "l1")
    for name in ("r_mag", "b_mag", "W_dec"):  # the magnitude path's own parameters, and the decoder (norms as values)
        assert torch.count_nonzero(grads[name]) == 0, name
    # by hand: d l1 / d pi_gate[b, j] = (lam / B) ||W_dec[j]|| 1[pi_gate > 0]
    B, lam = x.shape[0], 0.7
    g = (lam / B) * ref["row_norms"][None, :] * (ref["pi_gate"] > 0)
    assert torch.allclose(grads["b_gate"], g.sum(0), **TOL)
    assert torch.allclose(grads["W_enc"], ref["x_c"].T @ g, **TOL)
    assert torch.allclose(grads["b_dec"], -(sae.W_enc.detach() @ g.sum(0)), **TOL)
    assert torch.count_nonzero(grads["b_gate"]) > 0


def test_mse_term_leaves_the_gate_bias_alone():
    # The gate is a step: the reconstruction trains the magnitude path and the decoder, never b_gate.
    sae = gated(norm_scale=1.7)
    grads = _grads(sae, inputs(), "mse")
    assert torch.count_nonzero(grads["b_gate"]) == 0
    for name in ("W_enc", "r_mag", "b_mag", "W_dec", "b_dec"):
        assert torch.count_nonzero(grads[name]) > 0, name


def test_fold_decoder_norm_keeps_outputs():
    sae = gated(norm_scale=1.7, decoder_norm="free")
    x = inputs()
    with torch.no_grad():
        before = sae(x)
        sae.fold_decoder_norm()
        assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(16, dtype=torch.float64), atol=1e-12)
        assert torch.allclose(sae(x), before, **TOL)


def test_parameters_and_defaults():
    cfg = GatedConfig()
    assert (cfg.architecture, cfg.l1_coefficient, cfg.decoder_norm, cfg.target_l0) == ("gated", 1.0, "unit", None)
    sae = registry.build(registry.make_config("gated", d_in=8, d_sae=16))
    names = {n for n, _ in sae.named_parameters()}
    assert names == {"W_enc", "W_dec", "b_dec", "b_gate", "b_mag", "r_mag"}  # SAELens 6's names; no b_enc
    for name in ("b_gate", "b_mag", "r_mag"):
        assert torch.count_nonzero(getattr(sae, name)) == 0, name
    assert torch.equal(sae.W_enc, sae.W_dec.T)
    x = torch.randn(10, 8)
    with torch.no_grad():  # at initialisation the two paths agree, so the gate's reconstruction is f's
        out = sae.loss(x)
    assert float(out.terms["aux"]) == pytest.approx(float(out.terms["mse"]), rel=1e-6)
    with pytest.raises(NotImplementedError, match="encode"):
        sae.activation(torch.zeros(2, 16))


# --- training, SAELens 6 folders ---------------------------------------------------------------------
def data(n=2048, d=8, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(24, d, generator=g)
    codes = torch.rand(n, 24, generator=g) * (torch.rand(n, 24, generator=g) < 0.1)
    return codes @ basis + 0.01 * torch.randn(n, d, generator=g)


def train_cfg(out, **sae) -> TrainConfig:
    return TrainConfig(sae={"architecture": "gated", "d_in": 8, "d_sae": 32, **sae}, total_tokens=64 * 30,
                       batch_size=64, lr=1e-2, warmup_steps=3, dead_window_tokens=256, log_every=2,
                       checkpoint_every=5, out_dir=str(out), progress=False)


def test_training_lowers_the_loss_and_writes_a_saelens_folder(tmp_path):
    res = train(train_cfg(tmp_path / "run", l1_coefficient=0.05), TensorSource(data()))
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"mse", "l1", "aux"} <= set(lines[0])
    # 30 steps: loss about 68 -> 2.3 and FVU 4.1 -> 0.12 (the tied initialisation reconstructs badly)
    assert lines[-1]["loss"] < 0.2 * lines[0]["loss"] and lines[-1]["fvu"] < 0.3
    assert lines[-1]["aux"] < lines[0]["aux"]  # the gate path learns to reconstruct through its own term
    assert 0 < lines[-1]["l0"] < 32
    sae = res.sae
    assert isinstance(sae, GatedSAE) and torch.allclose(sae.W_dec.norm(dim=1), torch.ones(32), atol=1e-5)
    assert torch.count_nonzero(sae.b_gate) > 0 and torch.count_nonzero(sae.r_mag) > 0  # every parameter trained
    back = load_sae(tmp_path / "run" / "sae")
    x = data(64, seed=5)
    with torch.no_grad():
        assert isinstance(back, GatedSAE) and torch.allclose(back(x), sae(x), atol=1e-5)


def test_resume_equals_uninterrupted(tmp_path):
    source = TensorSource(data())
    full = train(train_cfg(tmp_path / "full", target_l0=4.0), source)
    train(train_cfg(tmp_path / "resumed", target_l0=4.0), source, stop_after=7)
    resumed = train(train_cfg(tmp_path / "resumed", target_l0=4.0), source)
    assert resumed.resumed_from == 5 and float(full.sae.sparsity_scale) != 1.0  # the controller ran, and resumed
    for name, value in full.sae.state_dict().items():
        assert torch.equal(value, resumed.sae.state_dict()[name]), name


def test_target_l0_steers_the_l1_coefficient(tmp_path):
    def late_l0(folder):
        lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
        return sum(ln["l0"] for ln in lines[-10:]) / 10

    n = 64 * 120
    cfg = train_cfg(tmp_path / "target", target_l0=4.0, target_rate=0.1)
    cfg.total_tokens = n
    steered = train(cfg, TensorSource(data(n)))
    plain_cfg = train_cfg(tmp_path / "fixed")
    plain_cfg.total_tokens = n
    plain = train(plain_cfg, TensorSource(data(n)))
    assert float(plain.sae.sparsity_scale) == 1.0 and float(steered.sae.sparsity_scale) > 1.0  # L0 above 4: lambda up
    l0, plain_l0 = late_l0(tmp_path / "target"), late_l0(tmp_path / "fixed")
    assert 3.0 <= l0 <= 5.0 < plain_l0, (l0, plain_l0)  # measured: 4.1 against 7.6, lambda x 3.6


def test_saelens6_round_trip_same_encode_decode(tmp_path):
    sae = gated(norm_scale=2.5, decoder_norm="free").float()
    sae.eval()
    save_sae(sae, tmp_path / "sae")
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["architecture"] == "gated" and cfg["metadata"]["sae_lens_version"].startswith("6.")
    tensors = load_file(str(tmp_path / "sae" / "sae_weights.safetensors"))
    assert set(tensors) == {"W_enc", "W_dec", "b_dec", "b_gate", "b_mag", "r_mag"}
    # the norm scale s is folded as SAELens computes: W_enc * s, W_dec / s, b_dec / s; the path biases and r_mag as they are
    assert torch.allclose(tensors["W_enc"], sae.W_enc.detach() * 2.5, atol=1e-6)
    assert torch.equal(tensors["r_mag"], sae.r_mag.detach()) and torch.equal(tensors["b_gate"], sae.b_gate.detach())
    back = load_sae(tmp_path / "sae")
    assert isinstance(back, GatedSAE) and back.cfg == sae.cfg
    x = inputs().float()
    with torch.no_grad():
        f, f_back = sae.encode(x), back.encode(x)
        assert torch.equal(f > 0, f_back > 0) and torch.allclose(f_back, f, atol=1e-5)
        assert torch.allclose(back.decode(f_back), sae.decode(f), atol=1e-5)
    # what SAELens itself computes from the file (raw activations, no norm scale), written out here
    x_c = x - tensors["b_dec"]
    pi_gate = x_c @ tensors["W_enc"] + tensors["b_gate"]
    pi_mag = x_c @ (tensors["W_enc"] * tensors["r_mag"].exp()) + tensors["b_mag"]
    f_saelens = (pi_gate > 0).float() * torch.relu(pi_mag)
    assert torch.allclose(f, f_saelens, atol=1e-4)
    assert torch.allclose(f_saelens @ tensors["W_dec"] + tensors["b_dec"], sae.decode(f), atol=1e-4)


# --- the CLI -----------------------------------------------------------------------------------------
def test_cli_trains_gated_with_its_l1_coefficient(smollm, tmp_path, monkeypatch, capsys):
    import app.commands.sae as sae_cmd
    from app.cli import main

    monkeypatch.setattr(sae_cmd, "load_from_args", lambda args: smollm)
    out = tmp_path / "run"
    argv = ["sae", "train", "--arch", "gated", "--hook", "blocks.3.hook_resid_post", "--d-sae", "64", "--k", "8",
            "--tokens", "1024", "--batch", "256", "--context-length", "32"]
    assert main([*argv, "--out", str(out)]) == 0  # default: lambda steered to L0 = --k, as for standard
    saved = json.loads((out / "gated" / "train_config.json").read_text())["sae"]
    assert saved["architecture"] == "gated" and saved["target_l0"] == 8.0 and "l1_coefficient" not in saved
    sae = load_sae(out / "gated" / "sae")
    assert isinstance(sae, GatedSAE) and sae.cfg.target_l0 == 8.0 and sae.cfg.l1_coefficient == 1.0
    # --sparsity is gated's L1 coefficient (the activation cache of the first run is reused)
    fixed = ["--sparsity", "0.25", "--cache", str(out / "activations"), "--out", str(tmp_path / "fixed")]
    assert main([*argv, *fixed]) == 0
    saved = json.loads((tmp_path / "fixed" / "gated" / "train_config.json").read_text())["sae"]
    assert saved["l1_coefficient"] == 0.25 and "target_l0" not in saved
    capsys.readouterr()
    assert main(["sae", "train", "--arch", "topk", "--sparsity", "1", "--out", str(tmp_path / "no")]) == 2
    assert "--sparsity applies to gated, jumprelu, jumprelu_transcoder and standard; topk sets its sparsity with --k" in capsys.readouterr().err
