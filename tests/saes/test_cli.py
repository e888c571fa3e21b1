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
