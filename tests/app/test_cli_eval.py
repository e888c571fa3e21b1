"""`glasshouse eval` (app/commands/accuracy.py) in-process: its saved numbers are score_task's and the
sweeps', its figures are drawn, and bad input is refused before the model loads."""

from __future__ import annotations

import json

import pytest

from app.cli import main


def _saved(folder) -> dict:
    return json.loads((folder / "eval.json").read_text())


def test_accuracy_of_a_user_file_equals_score_task(smollm, tmp_path, capsys):
    from probes.accuracy import score_task
    from probes.tasks import load_task

    path = tmp_path / "mine.jsonl"
    rows = [{"prompt": f"The capital of {c} is", "answer": f" {city}", "choices": [" Paris", " Rome", " Berlin"]}
            for c, city in (("France", "Paris"), ("Italy", "Rome"), ("Germany", "Berlin"))] * 2
    path.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "out"
    assert main(["eval", str(path), "--split", "all", "--device", "cpu", "--out", str(out)]) == 0
    saved = _saved(out)
    want = score_task(smollm, load_task(str(path)), "all")
    assert saved["accuracy"] == want.accuracy and saved["n"] == 6 and saved["intervention"] is None
    assert "accuracy" in capsys.readouterr().out


def test_gamma_and_a_layer_sweep_write_their_results_and_figure(smollm, tmp_path):
    from probes.accuracy import score_task
    from probes.hidden_sinks import scaling_edits
    from probes.tasks import load_task

    out = tmp_path / "g"
    assert main(["eval", "capitals", "--n", "12", "--gamma", "0.3", "--heads", "L2H1,L5H0", "--split", "all",
                 "--device", "cpu", "--out", str(out)]) == 0
    edits = scaling_edits(smollm, [(2, 1), (5, 0)], 0.3)
    assert _saved(out)["accuracy"] == score_task(smollm, load_task("capitals", n=12), "all", edits=edits).accuracy
    sweep = tmp_path / "s"
    assert main(["eval", "capitals", "--n", "12", "--sweep", "layers", "--layers", "0,1", "--gammas", "0.5,2",
                 "--device", "cpu", "--out", str(sweep)]) == 0
    saved = _saved(sweep)
    assert saved["kind"] == "zerotuning_layers" and saved["layers"] == [0, 1] and saved["gammas"] == [0.5, 2.0]
    assert (sweep / "accuracy_by_gamma.html").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["eval", "nope"], "Unknown task 'nope'"),
    (["eval", "capitals", "--sweep", "heads"], "--sweep heads needs --gamma"),
    (["eval", "capitals", "--gammas", "0.5,x"], "not a comma-separated list"),
    (["eval", "capitals", "--gamma", "0"], "--gamma"),
    (["eval", "capitals", "--gamma", "0.5", "--heads", "3.1"], "L<layer>H<head>"),
])
def test_bad_input_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch, argv, message):
    import app.commands.accuracy as command

    monkeypatch.setattr(command, "load_from_args", lambda args: pytest.fail("the model was loaded"))
    assert main([*argv, "--out", str(tmp_path / "o")]) in (1, 2)
    assert message in capsys.readouterr().err


def test_bad_heads_are_refused(smollm, tmp_path, capsys):
    assert main(["eval", "capitals", "--gamma", "0.5", "--heads", "L99H0", "--device", "cpu",
                 "--out", str(tmp_path / "h")]) == 2
    assert "beyond the model" in capsys.readouterr().err


def test_circuits_tasks_are_scored_in_the_same_format(smollm, tmp_path):
    from circuits.tasks.as_taskset import generated_taskset
    from probes.accuracy import score_task

    out = tmp_path / "ioi"
    assert main(["eval", "ioi", "--n", "8", "--split", "all", "--device", "cpu", "--out", str(out)]) == 0
    want = score_task(smollm, generated_taskset("ioi", smollm, n=8, seed=0), "all")
    assert _saved(out)["accuracy"] == want.accuracy and _saved(out)["n"] == 8
