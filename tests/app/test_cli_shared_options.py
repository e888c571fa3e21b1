"""Every analysis command exposes the shared options (app/commands/_common.py analysis_parser) identically.

An option is compared by everything a user meets: its spellings, dest, default, help, choices, metavar,
nargs, and what its type makes of a set of probe strings (the value, or the error message). No model loads.
"""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from app.cli import _subparsers, build_parser

SHARED = ["--model", "--device", "--dtype", "--out", "--seed"]
BACKEND = ["--backend", "--layers"]
PROBES = ["-1", "0", "1", "2", "7", "1.5", "4294967296", "cpu", "cuda", "cuda:1", "mps", "tpu", "float32", "x", ""]
# commands with a --device of their own, kept as they were: `info` (a looser --device / --dtype)
# info takes a looser --device; bb train trains a toy model (no model spec), its --device defaults to auto
OWN_DEVICE = {"glasshouse info", "glasshouse bb train"}


def _type_behaviour(action: argparse.Action) -> tuple[Any, ...]:
    if action.type is None:
        return ("str",)
    out: list[Any] = [getattr(action.type, "__name__", repr(action.type))]
    for text in PROBES:
        try:
            out.append(("ok", action.type(text)))
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            out.append(("error", str(exc)))
    return tuple(out)


def fingerprint(action: argparse.Action, *, with_help: bool = True) -> tuple[Any, ...]:
    choices = None if action.choices is None else list(action.choices)
    return (tuple(action.option_strings), action.dest, repr(action.default), str(action.help) if with_help else None,
            choices, action.metavar, action.nargs, action.const, type(action).__name__, _type_behaviour(action))


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.option_strings[0]: a for a in parser._actions if a.option_strings and a.option_strings[0] != "-h"}


def visible_order(parser: argparse.ArgumentParser) -> list[str]:
    return [a.option_strings[0] for a in parser._actions
            if a.option_strings and a.option_strings[0] != "-h" and a.help != argparse.SUPPRESS]


@pytest.fixture(scope="module")
def parsers() -> dict[str, argparse.ArgumentParser]:
    return {p.prog: p for p in _subparsers(build_parser())}


@pytest.fixture(scope="module")
def analysis(parsers: dict[str, argparse.ArgumentParser]) -> dict[str, argparse.ArgumentParser]:
    """The commands that load a model and write an output folder: those with --model and --out."""
    found = {name: p for name, p in parsers.items() if {"--model", "--out"} <= set(options(p))}
    expected = {"circuit", "dormant", "extreme", "sinks", "successor", "sae train", "sae eval", "sae dashboard"}
    assert {name.removeprefix("glasshouse ") for name in found} >= expected
    return found


def test_every_analysis_command_opens_with_the_shared_block(analysis: dict[str, argparse.ArgumentParser]) -> None:
    for name, parser in analysis.items():
        order = visible_order(parser)
        assert order[: len(SHARED)] == SHARED, name
        if "--backend" in order:
            assert order[len(SHARED) : len(SHARED) + len(BACKEND)] == BACKEND, name


def test_the_shared_options_are_identical(analysis: dict[str, argparse.ArgumentParser]) -> None:
    reference = options(analysis["glasshouse sinks"])
    for name, parser in analysis.items():
        opts = options(parser)
        for flag in SHARED[1:]:
            assert fingerprint(opts[flag]) == fingerprint(reference[flag]), (name, flag)
        model = opts["--model"]
        # --model: the same option; only its default may be the SAE folder's cfg.json (sae eval / dashboard)
        assert fingerprint(model, with_help=False)[:2] == fingerprint(reference["--model"], with_help=False)[:2]
        assert fingerprint(model)[4:] == fingerprint(reference["--model"])[4:], name
        if model.default is None:
            assert "cfg.json" in str(model.help), name
        else:
            assert (model.default, model.help) == (reference["--model"].default, reference["--model"].help), name


def test_backend_options_are_identical(analysis: dict[str, argparse.ArgumentParser]) -> None:
    with_backend = {n: options(p) for n, p in analysis.items() if "--backend" in options(p)}
    from app.commands.analyses import command_name
    from app.declared import analyses

    declared = {command_name(a) for a in analyses() if a.remote}
    assert declared, "no declared analysis runs remotely"
    assert {n.removeprefix("glasshouse ") for n in with_backend} == {"sinks", "dormant", "extreme", "successor",
                                                                      *declared}
    reference = with_backend["glasshouse sinks"]
    for name, opts in with_backend.items():
        for flag in BACKEND:
            assert fingerprint(opts[flag]) == fingerprint(reference[flag]), (name, flag)


def test_device_and_dtype_are_the_same_wherever_they_appear(parsers: dict[str, argparse.ArgumentParser]) -> None:
    reference = options(parsers["glasshouse sinks"])
    having = [n for n, p in parsers.items() if "--device" in options(p) and n not in OWN_DEVICE]
    assert {"glasshouse app", "glasshouse atlas"} <= set(having)
    for name in having:
        opts = options(parsers[name])
        for flag in ("--device", "--dtype"):
            assert fingerprint(opts[flag]) == fingerprint(reference[flag]), (name, flag)


def test_window_and_bos_options_are_identical(analysis: dict[str, argparse.ArgumentParser]) -> None:
    reference = options(analysis["glasshouse sinks"])
    seen_bos, seen_window = 0, 0
    for name, parser in analysis.items():
        opts = options(parser)
        if "--bos" in opts:
            seen_bos += 1
            assert fingerprint(opts["--bos"]) == fingerprint(reference["--bos"]), name
            # the --no-bos help may say more; everything else is the same
            assert fingerprint(opts["--no-bos"], with_help=False) == fingerprint(reference["--no-bos"], with_help=False)
            group = next(g for g in parser._mutually_exclusive_groups if opts["--bos"] in g._group_actions)
            assert opts["--no-bos"] in group._group_actions, name
        if "--seq-len" in opts and opts["--seq-len"].dest == "seq_len":
            seen_window += 1
            assert fingerprint(opts["--seq-len"], with_help=False)[:3] == fingerprint(
                reference["--seq-len"], with_help=False)[:3], name
            assert _type_behaviour(opts["--seq-len"]) == _type_behaviour(reference["--seq-len"]), name
            assert _type_behaviour(opts["--n"]) == _type_behaviour(reference["--n"]), name
            assert fingerprint(opts["--T"])[:2] == (("--T",), "seq_len"), name
            assert opts["--T"].help == argparse.SUPPRESS, name
    from app.commands.analyses import command_name
    from app.declared import analyses

    hand_written = {"sinks", "dormant", "extreme", "circuit", "sae"}  # the three reports are counted as 3 below
    generated = [a for a in analyses() if command_name(a) not in hand_written]
    on_corpus = [a for a in generated if a.uses_corpus]
    assert all("--domain" in options(analysis[f"glasshouse {command_name(a)}"]) for a in on_corpus)
    declared = len(on_corpus)  # every generated command on corpus windows takes --n and --seq-len
    with_bos = sum("prepend_bos" in a.info() for a in generated)
    assert (seen_bos, seen_window) == (3 + with_bos, 3 + declared)  # sinks, dormant, extreme and the declared


def test_a_different_shared_option_is_caught() -> None:
    """The fingerprint sees a changed range, help or default (so the tests above can fail)."""
    from app.commands._common import SEED, int_range

    def seed(**kw: Any) -> argparse.Action:
        p = argparse.ArgumentParser()
        return p.add_argument("--seed", **{"type": SEED, "default": 0, "help": "random seed", **kw})

    assert fingerprint(seed()) == fingerprint(seed())
    assert fingerprint(seed(type=int_range(0, 2**31))) != fingerprint(seed())
    assert fingerprint(seed(help="seed")) != fingerprint(seed())
    assert fingerprint(seed(default=1)) != fingerprint(seed())
