"""The `glasshouse` command line: models and info, as text and JSON."""

from __future__ import annotations

import json

from app.cli import main


def test_info_json_reports_canonical_facts(smollm, capsys):
    assert main(["info", "smollm2-135m", "--json", "--device", "cpu"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert (facts["n_layers"], facts["n_heads"], facts["n_kv_heads"]) == (30, 9, 3)


def test_info_text(smollm, capsys):
    assert main(["info", "smollm2-135m", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "n_layers" in out and "30" in out


def test_models_lists_embedded(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    specs = {r["spec"]: r for r in rows}
    assert specs["smollm2-135m"]["default"] and specs["smollm2-135m"]["installed"]
    assert "gemma3-270m" in specs


def test_unknown_model_is_one_clear_line(capsys):
    assert main(["info", "not-a-model-anywhere"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("glasshouse info: error: Unknown model") and "Traceback" not in err
