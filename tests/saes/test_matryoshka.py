"""Matryoshka BatchTopK (saes/architectures/matryoshka.py) against computations written out here by hand.

The prefix loss, its AuxK term and every gradient are recomputed in plain torch by an explicit loop over
the prefixes with the batch selection found by a full sort; the selection and thresholds are compared with
BatchTopK's; the trainer, the CLI and the SAELens 6 export / import run on tiny shapes.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import app.commands.sae as sae_cmd
from app.cli import main
from probes.errors import InputError
from saes import registry
from saes.activation_store import TensorSource
from saes.architectures.matryoshka import MatryoshkaConfig, MatryoshkaSAE, default_prefixes
from saes.saelens_io import load_sae, save_sae
from saes.trainer import TrainConfig, train

PREFIXES = (2, 5, 9, 16)


def make(prefixes=PREFIXES, arch="matryoshka_batchtopk", double=True, **kw):
    fields = {"d_in": 8, "d_sae": 16, "k": 3, "aux_k": 3, "seed": 1, "norm_scale": 1.7, **kw}
    if arch == "matryoshka_batchtopk":
        fields["prefixes"] = prefixes
    sae = registry.build(registry.make_config(arch, **fields))
    with torch.no_grad():  # biases off zero so that b_dec and b_enc take part
        sae.b_dec.copy_(torch.randn(8, generator=torch.Generator().manual_seed(11)) * 0.3)
        sae.b_enc.copy_(torch.randn(16, generator=torch.Generator().manual_seed(12)) * 0.2)
    sae.train()
    return sae.double() if double else sae


def batch(n=64, seed=0, dtype=torch.float64):
    return torch.randn(n, 8, generator=torch.Generator().manual_seed(seed), dtype=dtype)


DEAD = torch.tensor([j % 3 == 1 for j in range(16)])  # 5 dead features, top aux_k=3 of them per token


def batch_topk_mask(z, k):
    """The k*B largest entries of ReLU(z) over the whole batch, by a full sort (no ties in random data)."""
    r = torch.relu(z)
    t = r.flatten().sort(descending=True).values[k * z.shape[0] - 1]
    return (r >= t) & (r > 0)


def hand_loss(sae, x, dead=None):
    """The Matryoshka loss written out: an explicit loop over prefixes, AuxK from a per-row sort."""
    k, aux_k, s = sae.cfg.k, sae.cfg.aux_k, sae.cfg.norm_scale
    x_n = x * s
    z = (x_n - sae.b_dec) @ sae.W_enc + sae.b_enc
    f = torch.relu(z) * batch_topk_mask(z.detach(), k)
    terms = {}
    for m in sae.cfg.prefixes:
        rec = f[:, :m] @ sae.W_dec[:m, :] + sae.b_dec
        terms[m] = (rec - x_n).pow(2).sum(dim=1).mean()
    aux = x.new_zeros(())
    if dead is not None:
        e = (x_n - (f @ sae.W_dec + sae.b_dec)).detach()
        z_dead = z.detach().masked_fill(~dead, float("-inf"))
        n = min(aux_k, int(dead.sum()))
        kth = z_dead.sort(dim=1, descending=True).values[:, n - 1 : n]
        f_aux = torch.relu(z) * (z_dead >= kth)
        aux = sae.cfg.aux_coefficient * (f_aux @ sae.W_dec - e).pow(2).sum(dim=1).mean()
    total = sum(terms.values()) + aux
    return total, terms, aux, f


@pytest.mark.parametrize("dead", [False, True])
def test_prefix_loss_equals_an_explicit_loop_over_prefixes(dead):
    sae = make()
    x = batch()
    mask = DEAD if dead else None
    with torch.no_grad():
        out = sae.loss(x, dead_mask=mask)
        total, terms, aux, f = hand_loss(sae, x, mask)
    assert sorted(out.terms) == sorted(["mse", "mse_prefix_2", "mse_prefix_5", "mse_prefix_9", "auxk"])
    assert float(out.terms["mse"]) == pytest.approx(float(terms[16]), rel=1e-6, abs=1e-6)
    for m in PREFIXES[:-1]:
        assert float(out.terms[f"mse_prefix_{m}"]) == pytest.approx(float(terms[m]), rel=1e-6, abs=1e-6), m
    assert float(out.terms["auxk"]) == pytest.approx(float(aux), rel=1e-6, abs=1e-6)
    assert (float(aux) > 0) == dead
    assert float(out.loss) == pytest.approx(float(total), rel=1e-6, abs=1e-6)  # the SUM over prefixes (+ AuxK)
    assert torch.allclose(out.feature_acts, f, rtol=1e-6, atol=1e-6)
    assert torch.allclose(out.x_hat, (f @ sae.W_dec + sae.b_dec) / 1.7, rtol=1e-6, atol=1e-6)
    # inner prefixes reconstruct worse than the whole dictionary: each term is its own, not copies of "mse"
    assert len({round(float(v), 6) for v in terms.values()}) == len(PREFIXES)


@pytest.mark.parametrize("dead", [False, True])
def test_gradients_equal_those_of_the_hand_written_loss(dead):
    sae = make()
    x = batch(seed=3)
    mask = DEAD if dead else None
    sae.zero_grad(set_to_none=True)
    sae.loss(x, dead_mask=mask).loss.backward()
    ours = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad(set_to_none=True)
    hand_loss(sae, x, mask)[0].backward()
    for name, p in sae.named_parameters():
        assert torch.allclose(ours[name], p.grad, rtol=1e-6, atol=1e-9), name
        assert float(p.grad.abs().sum()) > 0, name


def test_early_features_get_gradient_from_every_prefix_term():
    sae = make()
    x = batch(seed=5)
    out = sae.loss(x)
    f = out.feature_acts.detach()
    fired = (f > 0).sum(0)
    early = int(fired[: PREFIXES[0]].argmax())  # a feature of the first prefix
    late = PREFIXES[-2] + int(fired[PREFIXES[-2]:].argmax())  # a feature only in the whole dictionary
    assert fired[early] > 0 and fired[late] > 0
    x_n = x * sae.cfg.norm_scale
    per_term = {}
    assert float(out.terms["auxk"]) == 0  # no dead mask: only the reconstruction terms
    for name, term in out.terms.items():
        if name == "auxk":
            continue
        (g,) = torch.autograd.grad(term, sae.W_dec, retain_graph=True)
        per_term[name] = g
    for name, g in per_term.items():
        assert float(g[early].norm()) > 0, f"the first prefix's feature gets gradient from {name}"
        if name != "mse":
            assert float(g[late].norm()) == 0, f"a last-group feature gets none from {name}"
    assert float(per_term["mse"][late].norm()) > 0
    # closed form: d/dW_dec[j] of sum_m mean_b ||rec_m - x_n||^2 = sum_{m > j} (2/B) sum_b f_bj (rec_m - x_n)_b
    (g_total,) = torch.autograd.grad(out.loss, sae.W_dec)
    with torch.no_grad():
        recs = {m: f[:, :m] @ sae.W_dec[:m] + sae.b_dec for m in PREFIXES}
        for j in (early, late):
            expected = sum(2 / x.shape[0] * f[:, j] @ (recs[m] - x_n) for m in PREFIXES if j < m)
            assert torch.allclose(g_total[j], expected, rtol=1e-6, atol=1e-9), j


def test_selection_and_thresholds_equal_batchtopks():
    mat, btk = make(), make(arch="batchtopk")
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.equal(getattr(mat, name), getattr(btk, name)), name
    for seed in range(4):  # the threshold EMA over several batches
        x = batch(seed=20 + seed)
        f_m, f_b = mat.loss(x).feature_acts, btk.loss(x).feature_acts
        assert torch.equal(f_m, f_b)
        assert torch.equal(f_m > 0, batch_topk_mask(mat.pre_acts(x), 3))  # k*B over the whole batch and dictionary
        assert int((f_m > 0).sum()) == 3 * 64
        assert torch.equal(mat.threshold, btk.threshold)
    calib = [batch(seed=40 + i) for i in range(3)]
    mat.calibrate_thresholds(calib)
    btk.calibrate_thresholds(calib)
    assert torch.equal(mat.threshold, btk.threshold) and float(mat.threshold) > 0
    mat.eval()
    btk.eval()
    x = batch(seed=50)
    assert torch.equal(mat.encode(x), btk.encode(x))  # inference: the global threshold, as BatchTopK
    z = mat.pre_acts(x)
    assert torch.equal(mat.encode(x), z * (z > mat.threshold))


def test_one_prefix_is_exactly_batchtopk():
    mat, btk = make(prefixes=(16,)), make(arch="batchtopk")
    x = batch(seed=7)
    a, b = mat.loss(x, dead_mask=DEAD), btk.loss(x, dead_mask=DEAD)
    assert a.terms.keys() == b.terms.keys() == {"mse", "auxk"}
    assert torch.equal(a.loss, b.loss)
    a.loss.backward()
    b.loss.backward()
    for (name, p), q in zip(mat.named_parameters(), btk.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad), name


def test_default_prefixes_for_any_d_sae():
    assert default_prefixes(2304) == (144, 288, 576, 1152, 2304)
    assert default_prefixes(100) == (6, 12, 25, 50, 100)
    assert default_prefixes(16) == (1, 2, 4, 8, 16)
    assert default_prefixes(8) == (1, 2, 4, 8)
    assert default_prefixes(1) == (1,)
    for d in range(1, 300):
        p = default_prefixes(d)
        assert p[-1] == d and all(b > a >= 1 for a, b in zip(p, p[1:], strict=False))
        assert MatryoshkaConfig(d_sae=d).prefixes == p
    cfg = registry.make_config("matryoshka_batchtopk", d_in=8, d_sae=64)
    assert isinstance(cfg, MatryoshkaConfig) and cfg.prefixes == (4, 8, 16, 32, 64) and cfg.k == 32
    # a JSON list comes back as the same tuple (cfg.json, checkpoints)
    again = registry.make_config("matryoshka_batchtopk", **json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


@pytest.mark.parametrize(("prefixes", "message"), [
    ((4, 2, 16), r"strictly increasing.*Sort them and drop repeats"),
    ((4, 4, 16), r"strictly increasing"),
    ((4, 8), r"must be d_sae=16.*append 16"),
    ((4, 32), r"must be d_sae=16.*drop the sizes above 16 or raise d_sae to 32"),
    ((0, 16), r"at least 1 feature.*Drop the sizes below 1; e\.g\. prefixes=\(1, 2, 4, 8, 16\)"),
    ((-3, 16), r"at least 1 feature.*Drop the sizes below 1"),
    ((2.5, 16), r"whole numbers.*Give increasing prefix sizes ending at d_sae=16"),
    (("4", 16), r"whole numbers.*Give increasing"),
    ((True, 16), r"whole numbers.*Give increasing"),
    ("4,16", r"a list of feature counts.*e\.g\. prefixes="),
])
def test_bad_prefixes_are_input_errors_saying_what_to_do(prefixes, message):
    with pytest.raises(InputError, match=message):
        registry.make_config("matryoshka_batchtopk", d_in=8, d_sae=16, prefixes=prefixes)


def test_bad_prefixes_in_a_saved_folder_are_refused(tmp_path):
    sae = make(double=False)
    sae.loss(batch(dtype=torch.float32))
    save_sae(sae.eval(), tmp_path / "sae")
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["prefixes"] == list(PREFIXES)
    cfg.update(prefixes=[2, 9, 5, 16])
    (tmp_path / "sae" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="strictly increasing"):
        load_sae(tmp_path / "sae")


def test_saelens6_export_and_import_reproduce_encode_and_decode(tmp_path):
    sae = make(double=False)
    for seed in range(3):
        sae.loss(batch(seed=seed, dtype=torch.float32))  # sets the threshold EMA
    sae.eval()
    folder = save_sae(sae, tmp_path / "sae")
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["architecture"] == "jumprelu" and cfg["glasshouse_architecture"] == "matryoshka_batchtopk"
    assert cfg["prefixes"] == list(PREFIXES) and cfg["metadata"]["sae_lens_version"] == "6.0.0"
    t = load_file(str(folder / "sae_weights.safetensors"))
    assert set(t) == {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"}
    assert torch.allclose(t["threshold"], sae.threshold.expand(16))
    x = batch(seed=99, dtype=torch.float32)
    # what SAELens 6's JumpReLUSAE computes from the file (raw activations, apply_b_dec_to_input)
    z = (x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]
    f_file = z * (z > t["threshold"])
    x_hat_file = f_file @ t["W_dec"] + t["b_dec"]
    with torch.no_grad():
        f, x_hat = sae.encode(x), sae(x)
        assert torch.equal(f > 0, f_file > 0) and float((f > 0).sum(-1).float().mean()) > 0
        assert torch.allclose(f, f_file, atol=1e-5) and torch.allclose(x_hat, x_hat_file, atol=1e-5)
        back = load_sae(folder)
        assert type(back) is MatryoshkaSAE and back.cfg == sae.cfg and not back.training
        assert torch.allclose(back.threshold, sae.threshold)
        assert torch.equal(back.encode(x) > 0, f > 0)
        assert torch.allclose(back.encode(x), f, atol=1e-5) and torch.allclose(back(x), x_hat, atol=1e-5)
        assert torch.allclose(back.decode(f), sae.decode(f), atol=1e-5)


def test_saelens6_matryoshka_training_folder_is_read(tmp_path):
    # written by hand in the layout of SAELens 6's TrainingSAE.save_model (training architecture name,
    # matryoshka_widths without d_sae, k as a float, the topk_threshold buffer, decoder rows not unit)
    g = torch.Generator().manual_seed(4)
    w = {"W_enc": torch.randn(8, 16, generator=g), "b_enc": torch.randn(16, generator=g) * 0.1,
         "W_dec": torch.randn(16, 8, generator=g) * 0.5, "b_dec": torch.randn(8, generator=g) * 0.1,
         "topk_threshold": torch.tensor(0.8, dtype=torch.float64)}
    folder = tmp_path / "mat"
    folder.mkdir()
    save_file(w, str(folder / "sae_weights.safetensors"))
    cfg = {"d_in": 8, "d_sae": 16, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": True,
           "normalize_activations": "none", "reshape_activations": "none", "architecture": "matryoshka_batchtopk",
           "k": 4.0, "matryoshka_widths": [4, 8], "use_matryoshka_aux_loss": False, "topk_threshold_lr": 0.01,
           "aux_loss_coefficient": 1.0, "rescale_acts_by_decoder_norm": True,
           "metadata": {"sae_lens_version": "6.54.12", "model_name": "smollm2-135m",
                        "hook_name": "blocks.3.hook_resid_post", "hook_head_index": None}}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    sae = load_sae(folder)
    assert type(sae) is MatryoshkaSAE and sae.cfg.prefixes == (4, 8, 16) and sae.cfg.k == 4
    # SAELens at inference (as its save_inference_model writes it): pre-activations times ||W_dec[j]||, a
    # JumpReLU at topk_threshold, codes divided by ||W_dec[j]|| before decoding
    x = torch.randn(32, 8, generator=g)
    n = w["W_dec"].norm(dim=1)
    z = ((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]) * n
    f_ref = z * (z > 0.8)
    x_hat_ref = (f_ref / n) @ w["W_dec"] + w["b_dec"]
    with torch.no_grad():
        f = sae.encode(x)
        assert torch.equal(f > 0, f_ref > 0) and int((f > 0).sum()) > 0
        assert torch.allclose(f, f_ref, rtol=1e-5, atol=1e-5)
        assert torch.allclose(sae(x), x_hat_ref, rtol=1e-5, atol=1e-5)


def data(n=2048, d=8, seed=0):
    """Two frequent directions (on half the tokens each) over 24 rare ones: a nesting a first prefix can learn."""
    g, fixed = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(123)
    common, rare = torch.randn(2, d, generator=fixed) * 2, torch.randn(24, d, generator=fixed)
    c = (torch.rand(n, 2, generator=g) + 0.5) * (torch.rand(n, 2, generator=g) < 0.5)
    r = torch.rand(n, 24, generator=g) * (torch.rand(n, 24, generator=g) < 0.08)
    return c @ common + r @ rare + 0.01 * torch.randn(n, d, generator=g)


def train_cfg(tmp, steps=40, **sae):
    return TrainConfig(sae={"architecture": "matryoshka_batchtopk", "d_in": 8, "d_sae": 32, "k": 3, **sae},
                       total_tokens=64 * steps, batch_size=64, lr=3e-3, warmup_steps=3, dead_window_tokens=256,
                       log_every=2, checkpoint_every=5, calibrate_batches=4, out_dir=str(tmp), progress=False)


def test_training_lowers_the_loss_and_every_prefix_term(tmp_path):
    res = train(train_cfg(tmp_path), TensorSource(data()))
    sae = res.sae
    assert isinstance(sae, MatryoshkaSAE) and sae.cfg.prefixes == (2, 4, 8, 16, 32)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 20 and lines[-1]["loss"] < lines[0]["loss"] and lines[-1]["fvu"] < lines[0]["fvu"]
    last = lines[-1]  # the loss logged is the sum of its terms
    assert last["loss"] == pytest.approx(sum(v for k_, v in last.items() if k_.startswith("mse") or k_ == "auxk"))
    # held-out tokens, batch selection: every term below that of the SAE the trainer started from (same seed,
    # same norm scale, b_dec at the mean)
    start = registry.build(registry.make_config("matryoshka_batchtopk", **sae.cfg.to_dict()))
    held = data(n=1024, seed=7)
    with torch.no_grad():
        start.b_dec.copy_((held * start.cfg.norm_scale).mean(0))
        sae.train()
        before, after = start.loss(held), sae.loss(held)
    assert float(after.loss) < 0.75 * float(before.loss)
    for name in ("mse", "mse_prefix_2", "mse_prefix_4", "mse_prefix_8", "mse_prefix_16"):
        assert float(after.terms[name]) < float(before.terms[name]), name
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(32), atol=1e-5)
    saved = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert saved["architecture"] == "jumprelu" and saved["glasshouse_architecture"] == "matryoshka_batchtopk"


def test_resume_equals_uninterrupted_and_thresholds_are_calibrated(tmp_path):
    source = TensorSource(data())
    full = train(train_cfg(tmp_path / "full", steps=12), source)
    train(train_cfg(tmp_path / "resumed", steps=12), source, stop_after=7)  # killed after step 7; checkpoint at 5
    resumed = train(train_cfg(tmp_path / "resumed", steps=12), source)
    assert resumed.resumed_from == 5
    for name, value in full.sae.state_dict().items():
        assert torch.equal(value, resumed.sae.state_dict()[name]), name
    # calibrated at the end from the final weights, as BatchTopK: the mean (k*B)-th largest ReLU(z) of the
    # trainer's calibration stream (seed + 2)
    batches = source.iter_batches(64, seed=2)
    with torch.no_grad():
        zs = [full.sae.pre_acts(next(batches)) for _ in range(4)]
    kth = torch.stack([torch.relu(z).flatten().sort(descending=True).values[3 * 64 - 1] for z in zs]).mean()
    assert float(full.sae.threshold) == pytest.approx(float(kth), rel=1e-5) and not full.sae.training


def test_resume_takes_prefixes_as_list_or_tuple_and_refuses_other_prefixes(tmp_path):
    source = TensorSource(data())
    train(train_cfg(tmp_path, steps=8, prefixes=[4, 16, 32]), source, stop_after=5)
    with pytest.raises(InputError, match=r"sae\.prefixes.*\[4, 16, 32\].*\(8, 16, 32\)"):
        train(train_cfg(tmp_path, steps=8, prefixes=(8, 16, 32)), source)
    res = train(train_cfg(tmp_path, steps=8, prefixes=(4, 16, 32)), source)
    assert res.resumed_from == 5 and res.sae.cfg.prefixes == (4, 16, 32)


def test_sparsity_flag_is_refused_for_matryoshka(tmp_path, capsys):
    assert main(["sae", "train", "--arch", "matryoshka_batchtopk", "--sparsity", "0.1", "--out", str(tmp_path)]) == 2
    assert "sets its sparsity with --k" in capsys.readouterr().err


def test_cli_trains_matryoshka(smollm, tmp_path, monkeypatch):
    monkeypatch.setattr(sae_cmd, "load_from_args", lambda args: smollm)
    out = tmp_path / "run"
    assert main(["sae", "train", "--arch", "matryoshka_batchtopk", "--hook", "blocks.3.hook_resid_post",
                 "--d-sae", "64", "--k", "8", "--tokens", "1024", "--batch", "256", "--context-length", "32",
                 "--out", str(out)]) == 0
    trained = json.loads((out / "matryoshka_batchtopk" / "sae_train.json").read_text())
    assert trained["steps"] == 4 and trained["final_batch_metrics"]["l0"] == pytest.approx(8.0)
    assert {f"mse_prefix_{m}" for m in (4, 8, 16, 32)} <= set(trained["final_batch_metrics"])
    sae = load_sae(out / "matryoshka_batchtopk" / "sae", smollm)
    assert isinstance(sae, MatryoshkaSAE) and sae.cfg.prefixes == (4, 8, 16, 32, 64) and sae.cfg.k == 8
