"""Metrics against independent computations; CE splicing on the embedded model; hook/d_in checks; dashboards."""

from __future__ import annotations

import pytest
import torch

from probes.errors import InputError
from saes import registry
from saes.evaluate import ce_loss_recovered, fvu, reconstruction_metrics
from saes.saelens_io import check_sae_matches_model

HOOK = "blocks.2.hook_resid_post"


def test_fvu_of_predicting_the_mean_is_one_and_from_a_loop():
    x = torch.randn(50, 6) * 3 + 7
    assert fvu(x, x.mean(0, keepdim=True).expand_as(x)) == pytest.approx(1.0, abs=1e-12)
    x_hat = x + 0.5 * torch.randn(50, 6)
    num = sum(float((x[i] - x_hat[i]).pow(2).sum()) for i in range(50))
    mean = [sum(float(x[i, d]) for i in range(50)) / 50 for d in range(6)]
    den = sum((float(x[i, d]) - mean[d]) ** 2 for i in range(50) for d in range(6))
    assert fvu(x, x_hat) == pytest.approx(num / den, rel=1e-6)  # loop subtracts in float32


def test_reconstruction_metrics_by_hand():
    sae = registry.build(registry.make_config("standard", d_in=2, d_sae=3))
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    x = torch.tensor([[1.0, -1.0], [2.0, 3.0]])  # f = [[1,0,0],[2,3,0]], x_hat = [[1,0],[2,3]]
    m = reconstruction_metrics(sae, x)
    assert m.l0 == pytest.approx(1.5) and m.dead == 1 and m.dense == 2
    assert m.mse == pytest.approx(1 / 4)
    assert m.fvu == pytest.approx(1.0 / (0.25 + 0.25 + 4 + 4))  # mean = [1.5, 1]
    assert m.cosine == pytest.approx((1 / 2**0.5 + 1.0) / 2, rel=1e-6)


@pytest.fixture(scope="module")
def ids(smollm):
    from probes.corpus import sample

    return sample("prose", 2, 24, smollm, seed=3).ids


def test_ce_recovered_of_identity_is_one(smollm, ids):
    res = ce_loss_recovered(smollm, lambda x: x, HOOK, ids, ablation="zero")
    assert res.ce_loss_recovered == pytest.approx(1.0, abs=1e-5)
    assert res.kl_spliced == pytest.approx(0.0, abs=1e-5)
    assert res.loss_ablated > res.loss_clean
    clean = smollm.loss_per_token(ids)[:, :].nanmean()
    assert res.loss_clean == pytest.approx(float(clean), rel=1e-5)  # independent: HookedModel.loss_per_token


def test_ce_recovered_zero_reconstruction_is_zero_and_mean_ablation(smollm, ids):
    res = ce_loss_recovered(smollm, torch.zeros_like, HOOK, ids, ablation="zero")
    assert res.ce_loss_recovered == pytest.approx(0.0, abs=1e-6)
    res_mean = ce_loss_recovered(smollm, lambda x: x, HOOK, ids, ablation="mean")
    assert res_mean.ce_loss_recovered == pytest.approx(1.0, abs=1e-5) and res_mean.loss_ablated != res.loss_ablated


def test_sae_width_must_match_hook(smollm):
    sae = registry.build(registry.make_config("topk", d_in=512, d_sae=16, hook_name=HOOK))
    with pytest.raises(InputError, match="d_in=512.*width 576"):
        check_sae_matches_model(sae, smollm)
    sae = registry.build(registry.make_config("topk", d_in=576, d_sae=16, hook_name="blocks.2.hook_nothing"))
    with pytest.raises(InputError, match="no hook"):
        check_sae_matches_model(sae, smollm)


def test_dashboard_top_examples_match_direct_encoding(smollm, ids):
    from app.figures.saes import feature_html
    from saes.activation_store import hook_activations
    from saes.dashboard import feature_dashboards, prompt_features

    sae = registry.build(registry.make_config("standard", d_in=576, d_sae=32, hook_name=HOOK, norm_scale=0.2))
    with torch.no_grad():
        sae.b_enc.fill_(-0.5)
    dash = feature_dashboards(smollm, sae, ids, [0, 5], n_top=3)
    acts = hook_activations(smollm, HOOK, ids)
    direct = torch.relu((acts * 0.2) @ sae.W_enc.detach() - 0.5)[..., 5]
    direct[:, 0] = 0
    entry = dash["features"]["5"]
    assert entry["top_examples"][0]["activation"] == pytest.approx(float(direct.max()), rel=1e-4)
    assert entry["density"] == pytest.approx(float((direct > 0).float().mean()))
    manual = (sae.W_dec[5].detach() / 0.2 * smollm.norm_scales()["ln_final"]) @ smollm.W_U
    assert entry["logit_effects"]["top"][0]["value"] == pytest.approx(float(manual.max()), rel=1e-4)
    assert "<h1>Feature 5" in feature_html(entry)
    per_prompt = prompt_features(smollm, sae, "def add(a, b):", top=3)
    assert len(per_prompt["tokens"]) == len(smollm.to_str_tokens("def add(a, b):"))
