"""`glasshouse sae train|eval|dashboard` end to end on a tiny setting (the model comes from the fixture)."""

from __future__ import annotations

import json

import pytest

import app.commands.sae as sae_cmd
from app.cli import main

HOOK = "blocks.3.hook_resid_post"


def test_sae_cli_train_eval_dashboard(smollm, tmp_path, monkeypatch):
    monkeypatch.setattr(sae_cmd, "load_from_args", lambda args: smollm)
    out = tmp_path / "run"
    train = ["sae", "train", "--arch", "topk", "--hook", HOOK, "--d-sae", "64", "--k", "8", "--tokens", "1024",
             "--batch", "256", "--context-length", "32", "--out", str(out)]
    assert main(train) == 0
    trained = json.loads((out / "topk" / "sae_train.json").read_text())
    assert trained["steps"] == 4 and trained["tokens"] == 1024 and trained["final_batch_metrics"]["l0"] == pytest.approx(8.0)
    sae_dir = out / "topk" / "sae"
    assert json.loads((sae_dir / "cfg.json").read_text())["hook_name"] == HOOK
    # Same folder again: the finished checkpoint is resumed, nothing retrained.
    assert main(train) == 0
    assert json.loads((out / "topk" / "sae_train.json").read_text())["resumed_from_step"] == 4

    assert main(["sae", "eval", str(sae_dir), "--prompts", "2", "--length", "16", "--out", str(tmp_path / "eval")]) == 0
    ev = json.loads((tmp_path / "eval" / "sae_eval.json").read_text())
    assert ev["reconstruction"]["l0"] == pytest.approx(8.0)  # TopK keeps exactly k (ReLU(z) > 0 here on every token)
    assert ev["reconstruction"]["n_tokens"] == 2 * 15  # one 16-token prompt per domain, position 0 left out
    assert (tmp_path / "eval" / "density.html").exists()

    assert main(["sae", "dashboard", str(sae_dir), "--features", "0", "5", "--prompts", "2", "--length", "16",
                 "--out", str(tmp_path / "dash")]) == 0
    dash = json.loads((tmp_path / "dash" / "sae_dashboard.json").read_text())
    assert set(dash["features"]) == {"0", "5"} and dash["model"]
    assert (tmp_path / "dash" / "feature_5.html").read_text().startswith("<")

    # A cache built at another hook is refused, with the way out in the message.
    bad = train[:5] + ["blocks.4.hook_resid_post"] + train[6:] + ["--cache", str(out / "activations")]
    assert main(bad) == 1


def test_transcoder_cli_train_and_eval(smollm, tmp_path, monkeypatch, capsys):
    """`sae train --hook-out`: one cache of [input | target] rows from one pass, a transcoder trained on them, and
    `sae eval` on its folder measuring FVU against the output hook and the loss with the MLP output replaced."""
    import torch

    from saes.activation_store import CachedActivations
    from saes.multi import activations_at

    monkeypatch.setattr(sae_cmd, "load_from_args", lambda args: smollm)
    out = tmp_path / "tc"
    train = ["sae", "train", "--arch", "topk_transcoder", "--hook", "blocks.3.mlp.hook_in", "--hook-out",
             "blocks.3.hook_mlp_out", "--skip", "--d-sae", "64", "--k", "8", "--tokens", "512", "--batch", "128",
             "--context-length", "32", "--out", str(out)]
    assert main(train) == 0
    cache = CachedActivations(out / "activations")
    d = smollm.facts.d_model
    assert cache.hook_name_out == "blocks.3.hook_mlp_out" and cache.d_in == 2 * d and cache.d_out == d
    rows = cache.rows(0, 31)  # the first window (position 0 left out) holds its input and target side by side
    from probes.corpus import sample

    ids = sample("prose", 8, 32, smollm, seed=0).ids[:1]
    got = activations_at(smollm, ["blocks.3.mlp.hook_in", "blocks.3.hook_mlp_out"], ids)
    torch.testing.assert_close(rows, torch.cat([got["blocks.3.mlp.hook_in"], got["blocks.3.hook_mlp_out"]], -1)[0, 1:])
    cfg = json.loads((out / "topk_transcoder" / "sae" / "cfg.json").read_text())
    assert cfg["hook_name_out"] == "blocks.3.hook_mlp_out" and cfg["d_out"] == d and cfg["skip"] is True
    assert main(["sae", "eval", str(out / "topk_transcoder" / "sae"), "--prompts", "2", "--length", "16",
                 "--out", str(tmp_path / "ev")]) == 0
    ev = json.loads((tmp_path / "ev" / "sae_eval.json").read_text())
    assert ev["ce"]["hook_name"] == "blocks.3.mlp.hook_in -> blocks.3.hook_mlp_out"
    assert ev["reconstruction"]["n_tokens"] == 2 * 15 and ev["reconstruction"]["l0"] == pytest.approx(8.0)
    assert ev["ce"]["loss_ablated"] > ev["ce"]["loss_clean"]  # the MLP's output zeroed costs loss


@pytest.mark.parametrize(("extra", "message"), [
    (["--arch", "topk_transcoder"], "give the output hook"),
    (["--arch", "topk", "--hook-out", "blocks.3.hook_mlp_out"], "belong to transcoders"),
    (["--arch", "topk", "--skip"], "belong to transcoders"),
])
def test_transcoder_flags_are_checked_before_the_model_loads(tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.setattr(sae_cmd, "load_from_args", lambda args: pytest.fail("the model was loaded"))
    assert main(["sae", "train", *extra, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
