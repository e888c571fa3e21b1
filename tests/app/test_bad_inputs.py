"""The bad-input catalogue (docs/cli.md), run in-process through `app.cli.main`.

Each case gives a command line, the exit status (2: usage error, 1: runtime error) and the words
the message must contain (the flag or path at fault). Every case must also end without a
traceback, and the cases marked `before_load` must fail before any model is loaded: the test
replaces `probes.model.loading.load_model` by a function that records the call. The few checks that need
the model (a head or layer beyond its size) use the session fixture `smollm`.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

import probes.model.loading
from app.cli import build_parser, main

CUDA = torch.cuda.is_available()


class Loaded(Exception):
    pass


@pytest.fixture
def no_load(monkeypatch):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise Loaded("a model was loaded")

    monkeypatch.setattr(probes.model.loading, "load_model", refuse)
    return calls


@pytest.fixture
def files(tmp_path):
    """Paths the cases point at: a plain file, a model folder without tokenizer, broken SAE and cache folders."""
    (tmp_path / "a_file").write_text("not a folder")
    model = tmp_path / "no_tokenizer"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 1}))
    (model / "model.safetensors").write_bytes(b"weights")
    garbage_sae = tmp_path / "garbage_sae"
    garbage_sae.mkdir()
    (garbage_sae / "cfg.json").write_text("{not json")
    sae = tmp_path / "sae"
    sae.mkdir()
    (sae / "cfg.json").write_text(json.dumps({"d_in": 576, "d_sae": 64, "hook_name": "blocks.3.hook_resid_post",
                                              "model_name": str(tmp_path / "model_from_cfg")}))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "meta.json").write_text("{garbage")
    plan = tmp_path / "plan.toml"
    plan.write_text('models = ["smollm2-135m"]\n[[corpora]]\ndomain = "prose"\nn = 1\nlength = 4\n'
                    '[[probes]]\nname = "first_token_attention"\n')
    return tmp_path


USAGE = [  # (argv, words the message must contain); exit status 2, before any model loads
    (["sinks", "--n", "0"], ["--n", ">= 1"]),
    (["sinks", "--T", "1"], ["--T"]),
    (["sinks", "--seq-len", "x"], ["--seq-len", "'x'"]),
    (["sinks", "--eps", "1"], ["--eps"]),
    (["sinks", "--eps", "nan"], ["--eps"]),
    (["sinks", "--regimes", ","], ["--regimes", "at least one"]),
    (["sinks", "--regimes", "natural,bogus"], ["--regimes", "bogus"]),
    (["sinks", "--batch-size", "0"], ["--batch-size"]),
    (["sinks", "--device", "tpu"], ["--device", "tpu"]),
    (["sinks", "--dtype", "float8"], ["--dtype", "float8"]),
    (["sinks", "--seed", "-1"], ["--seed"]),
    (["sinks", "--attention", "flash"], ["--attention", "flash"]),
    (["dormant", "--heads", "L1"], ["--heads", "L<layer>H<head>"]),
    (["dormant", "--top", "-1"], ["--top"]),
    (["dormant", "--controls", "x"], ["--controls"]),
    (["extreme", "--ablate-layers", "a"], ["--ablate-layers"]),
    (["extreme", "--ablate-layers", ","], ["--ablate-layers"]),
    (["extreme", "--prompt", " "], ["--prompt", "empty"]),
    (["extreme", "--n", "0"], ["--n"]),
    (["successor", "--threshold", "2"], ["--threshold"]),
    (["successor", "--max-prompts", "0"], ["--max-prompts"]),
    (["successor", "--natural", "-1"], ["--natural"]),
    (["successor", "--norm", "layer"], ["--norm"]),
    (["circuit", "bogus_task"], ["TASK", "bogus_task", "ioi"]),
    (["circuit", "ioi", "--points", "x"], ["--points"]),
    (["circuit", "ioi", "--points", "0,10"], ["--points"]),
    (["circuit", "ioi", "--n", "0"], ["--n"]),
    (["circuit", "ioi", "--steps", "0"], ["--steps"]),
    (["circuit", "ioi", "--method", "acdc"], ["--method", "eap-ig"]),
    (["circuit", "ioi", "--draw", "0"], ["--draw"]),
    (["bb", "train", "--optimizer", "lion"], ["--optimizer", "adamw"]),
    (["bb", "train", "--attention", "sigmoid"], ["--attention", "softmax"]),
    (["bb", "train", "--preset", "gpu"], ["--preset"]),
    (["bb", "train", "--steps", "0"], ["--steps"]),
    (["bb", "train", "--batch", "0"], ["--batch"]),
    (["bb", "train", "--lr", "nan"], ["--lr"]),
    (["bb", "train", "--lr", "-1"], ["--lr"]),
    (["bb", "train", "--layers", "0"], ["--layers"]),
    (["bb", "train", "--seq-len", "1"], ["--seq-len"]),
    (["bb", "train", "--checkpoint-every", "0"], ["--checkpoint-every"]),
    (["bb", "eval"], ["checkpoints"]),
    (["bb", "eval", "x", "--n", "0"], ["--n"]),
    (["sae", "train", "--batch", "0"], ["--batch"]),
    (["sae", "train", "--batch-size", "-5"], ["--batch-size"]),
    (["sae", "train", "--k", "0"], ["--k"]),
    (["sae", "train", "--lr", "nan"], ["--lr"]),
    (["sae", "train", "--lr", "-1"], ["--lr"]),
    (["sae", "train", "--d-sae", "0"], ["--d-sae"]),
    (["sae", "train", "--tokens", "0"], ["--tokens"]),
    (["sae", "train", "--arch", "relu2"], ["--arch", "topk"]),
    (["sae", "train", "--domains", "poetry"], ["--domains", "prose"]),
    (["sae", "train", "--hook", "blocks 6"], ["--hook"]),
    (["sae", "train", "--context-length", "1"], ["--context-length"]),
    (["sae", "train", "--k", "100", "--d-sae", "10"], ["--k", "--d-sae"]),
    (["sae", "train", "--tokens", "10", "--batch", "100"], ["--tokens", "--batch-size"]),
    (["sae", "eval"], ["sae"]),
    (["sae", "eval", "x", "--prompts", "0"], ["--prompts"]),
    (["sae", "eval", "x", "--length", "1"], ["--length"]),
    (["sae", "dashboard", "x", "--features", "-1"], ["--features"]),
    (["export", "x", "--scale", "0"], ["--scale"]),
    (["export", "x", "--width", "0"], ["--width"]),
    (["export", "x", "--format", "gif"], ["--format", "gif"]),
    (["app", "--port", "0"], ["--port"]),
    (["app", "--port", "70000"], ["--port", "70000"]),
    (["app", "--device", "tpu"], ["--device"]),
    (["batch"], ["plan"]),
    (["no-such-command"], ["no-such-command"]),
]

RUNTIME = [  # (argv with {tmp} for the files fixture, words); exit status 1, before any model loads
    (["sinks", "--out", "{tmp}/a_file"], ["{tmp}/a_file", "is a file"]),
    (["sinks", "--out", "{tmp}/a_file/sub"], ["a_file", "is a file"]),
    (["sinks", "--model", "{tmp}/no/such/model"], ["No such folder"]),
    (["sinks", "--model", "{tmp}/no_tokenizer"], ["no_tokenizer", "no tokenizer files"]),
    (["dormant", "--out", "{tmp}/a_file"], ["--out", "is a file"]),
    (["extreme", "--out", "{tmp}/a_file"], ["--out", "is a file"]),
    (["successor", "--out", "{tmp}/a_file"], ["--out", "is a file"]),
    (["circuit", "ioi", "--out", "{tmp}/a_file"], ["--out", "is a file"]),
    (["bb", "train", "--out", "{tmp}/a_file"], ["--out", "is a file"]),
    (["bb", "eval", "{tmp}/no_run"], ["no_run", "no such checkpoint"]),
    (["sae", "train", "--out", "{tmp}/a_file"], ["--out", "is a file"]),
    (["sae", "train", "--cache", "{tmp}/cache", "--out", "{tmp}/sae_out"], ["meta.json"]),
    (["sae", "eval", "{tmp}/no_sae"], ["no_sae", "cfg.json"]),
    (["sae", "eval", "{tmp}/garbage_sae"], ["cfg.json", "JSON"]),
    (["sae", "eval", "{tmp}/sae"], ["model_from_cfg"]),  # the model comes from cfg.json
    (["sae", "dashboard", "{tmp}/sae", "--model", "smollm2-135m", "--out", "{tmp}/a_file"], ["--out", "is a file"]),
    (["batch", "{tmp}/no_plan.toml"], ["no_plan.toml"]),
    (["batch", "{tmp}/plan.toml", "--out", "{tmp}/a_file"], ["--out", "is a file"]),
    (["export", "{tmp}/no_run"], ["RUN_DIR", "no_run"]),
]
if not CUDA:
    RUNTIME.append((["sinks", "--device", "cuda"], ["--device cuda", "--device cpu"]))


def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize(("argv", "words"), USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_usage_errors(argv, words, no_load, capsys):
    code, err = _run(argv, capsys)
    assert code == 2, err
    for word in words:
        assert word in err, (word, err)
    assert "Traceback" not in err and not no_load


@pytest.mark.parametrize(("argv", "words"), RUNTIME, ids=[" ".join(a) for a, _ in RUNTIME])
def test_runtime_errors_before_load(argv, words, files, no_load, capsys, monkeypatch):
    monkeypatch.chdir(files)  # default output folders (runs/...) land in the temporary folder
    tmp = str(files)
    code, err = _run([a.replace("{tmp}", tmp) for a in argv], capsys)
    assert code == 1, err
    for word in words:
        assert word.replace("{tmp}", tmp) in err, (word, err)
    assert "Traceback" not in err and not no_load


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root writes anywhere")
def test_output_folder_not_writable(tmp_path, no_load, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, err = _run(["sinks", "--out", str(locked / "run")], capsys)
    finally:
        locked.chmod(0o700)
    assert code == 1 and "--out" in err and "cannot be written" in err and not no_load


@pytest.mark.parametrize(("argv", "words"), [
    (["dormant", "--heads", "L99H0", "--device", "cpu"], ["--heads", "L99H0", "0..29"]),
    (["extreme", "--ablate-layers", "0,99", "--device", "cpu"], ["--ablate-layers", "99"]),
])
def test_usage_errors_after_load(argv, words, smollm, tmp_path, capsys):
    code, err = _run([*argv, "--out", str(tmp_path)], capsys)
    assert code == 2 and all(w in err for w in words) and "Traceback" not in err, err


def test_hub_without_network_fails_fast(monkeypatch, tmp_path, no_load, capsys):
    import probes.model.preflight as preflight

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(preflight, "hub_reachable", lambda timeout=3.0: "huggingface.co:443: no route")
    monkeypatch.setattr(preflight, "_cached", lambda spec: False)
    code, err = _run(["sinks", "--model", "someone/some-model", "--out", str(tmp_path)], capsys)
    assert code == 1 and "unreachable" in err and "someone/some-model" in err and not no_load


def test_hub_without_network_uses_the_cache(monkeypatch):
    import probes.model.preflight as preflight

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(preflight, "hub_reachable", lambda timeout=3.0: "no route")
    monkeypatch.setattr(preflight, "_cached", lambda spec: True)
    preflight.check_model_spec("someone/some-model")
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # monkeypatch restores the environment afterwards


def test_hub_reachable_reports_a_refused_port(monkeypatch):
    import socket

    from probes.model.preflight import hub_reachable

    with socket.socket() as s:  # a local port nobody listens on: refused at once, no network touched
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    reason = hub_reachable(timeout=1.0)
    assert reason is not None and f"127.0.0.1:{port}" in reason


def test_boundary_classes(monkeypatch, capsys):
    """A genuine bug prints its traceback and how to report it; OS errors and Ctrl-C get one line."""

    def raiser(exc):
        def run(args):
            raise exc

        return run

    for exc, code, words, traceback in [
        (ZeroDivisionError("division by zero"), 1, ["Traceback", "ZeroDivisionError", "bug in Glasshouse"], True),
        (PermissionError(13, "Permission denied", "/some/file"), 1, ["/some/file", "Permission denied"], False),
        (OSError(28, "No space left on device", "/full/disk"), 1, ["/full/disk", "no space left"], False),
        (MemoryError(), 1, ["out of main memory (MemoryError)", "--batch-size"], False),
        (KeyboardInterrupt(), 130, ["interrupted"], False),
    ]:
        parser_args = build_parser().parse_args(["sinks"])
        parser_args.func = raiser(exc)
        from app.cli import run_command

        got = run_command(parser_args)
        err = capsys.readouterr().err
        assert got == code and all(w in err for w in words), (exc, err)
        assert ("Traceback" in err) == traceback


def test_boundary_names_an_import_errors_cause(monkeypatch, capsys):
    """An ImportError (a broken or shadowed package) is named with advice on the environment, not called a bug.

    Guards the old fallback, which printed the traceback and "this is a bug in Glasshouse" for it."""
    from app.cli import run_command

    def run(args):
        raise ImportError("cannot import name 'CUDAProperties' from 'kernels' (/x/benchmarks/kernels.py)")

    parser_args = build_parser().parse_args(["sinks"])
    parser_args.func = run
    assert run_command(parser_args) == 1
    err = capsys.readouterr().err
    assert "glasshouse sinks: error: ImportError: cannot import name 'CUDAProperties' from 'kernels'" in err
    assert "/x/benchmarks/kernels.py may be a file of yours shadowing the installed package 'kernels'" in err
    assert "this is a bug in Glasshouse" not in err


def _all_parsers():
    import argparse

    def walk(parser, name):
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    yield from walk(sub, f"{name} {sub_name}")

    yield from walk(build_parser(), "glasshouse")


def test_every_option_has_help_and_a_shown_default():
    import argparse

    for name, parser in _all_parsers():
        text = parser.format_help()
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
            shown = parser.formatter_class(prog="x")._get_help_string(action)
            if action.option_strings and action.nargs != 0:
                assert "default" in shown.lower(), f"{name} {action.option_strings}: no default in help"
            assert action.type not in (int, float), f"{name} {action.option_strings}: a number without a range"
        for old in ("--T", "--batch ", "--prompts", "--length", "--context-length", "--max-prompts"):
            assert old not in text, f"{name}: the hidden alias {old} shows in --help"


def test_old_spellings_still_work():
    parse = build_parser().parse_args
    assert parse(["sinks", "--T", "16", "--batch", "2"]).seq_len == 16
    assert parse(["sinks", "--T", "16", "--batch", "2"]).batch_size == 2
    assert parse(["sinks", "--seq-len", "16"]).seq_len == 16
    assert parse(["sae", "eval", "x", "--prompts", "4", "--length", "8"]).prompts == 4
    assert parse(["sae", "eval", "x", "--n", "4", "--seq-len", "8"]).length == 8
    assert parse(["bb", "train", "--batch", "4"]).batch_size == 4
    assert parse(["successor", "--max-prompts", "3"]).n == 3
    assert parse(["sae", "train", "--context-length", "16"]).context_length == 16
    assert parse(["sae", "eval", "x"]).model is None  # taken from cfg.json


def test_choices_come_from_the_registries():
    from circuits.tasks import TASKS
    from probes.bb.train import OPTIMIZERS
    from probes.model.loading import DTYPES
    from probes.sinks import REGIMES
    from saes.registry import names

    parser = build_parser()
    actions = {}
    for name, p in _all_parsers():
        for a in p._actions:
            actions[(name, a.dest)] = a
    assert list(actions[("glasshouse sae train", "arch")].choices) == names()
    assert list(actions[("glasshouse bb train", "optimizer")].choices) == list(OPTIMIZERS)
    assert str(actions[("glasshouse circuit", "task")].help).endswith(", ".join(TASKS))  # checked in run_circuit
    assert list(actions[("glasshouse sinks", "dtype")].choices) == list(DTYPES)
    assert parser.parse_args(["sinks", "--regimes", ",".join(REGIMES)]).regimes == ",".join(REGIMES)
    from probes.analyses import dormant_report, sinks_report
    from probes.dormant import ABLATIONS
    from probes.sinks import ATTENTION_MODES

    # the reports' torch-free copies of the probes' names
    assert (sinks_report.REGIMES, sinks_report.ATTENTION) == (REGIMES, ATTENTION_MODES)
    assert dormant_report.ABLATIONS == ABLATIONS


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"layers": []}, ["layers=[]", "at least one"]),
    ({"heads": []}, ["heads=[]"]),
    ({"layers": "5"}, ["layers=", "int"]),
    ({"layers": [1.5]}, ["layers=", "ints"]),
    ({"heads": [True]}, ["heads=", "ints"]),
    ({"layers": [30]}, ["layer", "0..29"]),
    ({"what": "nothing"}, ["nothing", "resid_post"]),
    ({"what": []}, ["Choose from"]),
    ({"batch_size": 0}, ["batch_size"]),
])
def test_capture_checks_its_arguments(smollm, kwargs, words):
    from probes.errors import InputError
    from probes.model.capture import capture

    with pytest.raises(InputError) as err:
        capture(smollm, "One, two", **kwargs)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_capture_accepts_numpy_and_torch_indices(smollm):
    import numpy as np

    from probes.model.capture import capture

    res = capture(smollm, "One, two", layers=np.int64(2), heads=torch.tensor([0, 1]))
    assert res.layers == [2] and res.heads == [0, 1]
