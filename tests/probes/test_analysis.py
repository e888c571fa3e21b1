"""probes.analysis: a declared analysis reaches every consumer, and the runner batches, resumes and cancels.

A throwaway Analysis is declared in this file only; the command line, batch plans, the atlas and the remote
(nnsight ndif-local) runner must offer it without anything in app/ naming it. Its numbers are checked
against plain torch on the HF model (1e-4 relative) and local against remote (1e-4 relative).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch

from probes.analyses.values import integers, integers_check
from probes.analysis import (
    Analysis,
    AtlasView,
    FigureSpec,
    register_analysis,
    run_analysis,
    setting,
    settings_info,
    unregister_analysis,
)
from probes.errors import InputError
from probes.progress import Cancelled, Reporter
from probes.rows import ProbeRows, Row, by_key, line, tensor_rows


@dataclass(frozen=True)
class LastNormSettings:
    layer: int = setting(2, "layer whose resid_post is measured", minimum=0)
    scale: float = setting(1.0, "a factor on the result", minimum=0.0, open_low=True)
    batch_size: int = setting(2, "sequences per forward pass", minimum=1)


def collect(model: Any, ids: torch.Tensor, s: LastNormSettings) -> dict[str, torch.Tensor]:
    return {"norm": model.residual_norms(ids, dtype=torch.float64)[:, s.layer, -1].sum()}


def reduce(model: Any, sums: dict[str, torch.Tensor], n: int, s: LastNormSettings) -> dict[str, Any]:
    return {"norm": sums["norm"] / n * s.scale}


def rows(result: dict[str, Any]) -> list[Row]:
    return tensor_rows("last_norm", result["norm"].reshape(1), ("position",))


def headline(r: ProbeRows) -> dict[str, Any]:
    return {"last_norm": by_key(r["throwaway_norm"], "last_norm", "position")[0]}


THROWAWAY = Analysis(
    name="throwaway_norm", description="norm of the last position's residual (a test analysis)",
    method="tests/probes/test_analysis.py", settings=LastNormSettings, collect=collect, reduce=reduce, rows=rows,
    remote=True,
    atlas=(AtlasView("throwaway_norm", "Throwaway", headline,
                     figure=FigureSpec("curves", "t", lambda r: {"series": [line({0: 1.0})]})),),
)


@pytest.fixture
def declared():
    register_analysis(THROWAWAY)
    yield THROWAWAY
    unregister_analysis(THROWAWAY.name)


def hf_last_norm(smollm: Any, ids: torch.Tensor, layer: int) -> float:
    with torch.no_grad():
        out = smollm.hf_model(ids, output_hidden_states=True)
    return float(out.hidden_states[layer + 1][:, -1].double().norm(dim=-1).mean())


def test_settings_are_typed_and_checked() -> None:
    info = settings_info(LastNormSettings)
    assert [i.type for i in info.values()] == [int, float, int]
    problems = THROWAWAY.check({"layer": -1, "scale": 0.0, "nope": 1, "batch_size": True})
    assert len(problems) == 4 and "at least 0" in problems[0] and "above 0.0" in problems[1]
    assert "no setting 'nope'" in problems[2] and "batch_size" in problems[3]
    with pytest.raises(InputError, match="at least 0"):
        THROWAWAY.make_settings({"layer": -1})
    assert THROWAWAY.make_settings({"scale": 2}).scale == 2.0


def test_a_settings_field_without_setting_is_refused() -> None:
    @dataclass(frozen=True)
    class Bad:
        batch_size: int = 8

    with pytest.raises(TypeError, match="setting"):
        settings_info(Bad)


def test_runner_matches_hf_and_resumes_after_a_kill(smollm: Any, tmp_path: Any) -> None:
    ids = smollm.to_tokens(["One, two, three, four, five, six", "Monday, Tuesday, Wednesday, Thursday, Friday",
                            "a b c d e f g h i j", "The cat sat on the mat and"]).ids[:, :6]
    s = THROWAWAY.make_settings({"layer": 3})
    expected = hf_last_norm(smollm, ids, 3)
    full = run_analysis(THROWAWAY, smollm, s, ids)
    assert abs(float(full["norm"]) - expected) <= 1e-4 * expected

    calls = []

    def dying(model: Any, chunk: torch.Tensor, st: Any) -> dict[str, torch.Tensor]:
        calls.append(len(chunk))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return collect(model, chunk, st)

    killed = Analysis(**{**THROWAWAY.__dict__, "collect": dying})
    ckpt = tmp_path / "sums.pt"
    with pytest.raises(KeyboardInterrupt):
        run_analysis(killed, smollm, s, ids, checkpoint=ckpt)
    assert ckpt.exists()
    resumed = run_analysis(killed, smollm, s, ids, checkpoint=ckpt)
    assert calls == [2, 2, 2]  # batch 1, the killed batch 2, then batch 2 again: batch 1 is not recomputed
    assert torch.equal(resumed["norm"], full["norm"]) and not ckpt.exists()
    other = THROWAWAY.make_settings({"layer": 4})  # another run's checkpoint is not reused
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        run_analysis(killed, smollm, s, ids, checkpoint=ckpt)
    assert ckpt.exists()
    assert abs(float(run_analysis(THROWAWAY, smollm, other, ids, checkpoint=ckpt)["norm"])
               - hf_last_norm(smollm, ids, 4)) <= 1e-4 * hf_last_norm(smollm, ids, 4)


def test_a_corrupt_checkpoint_says_what_to_do(smollm: Any, tmp_path: Any) -> None:
    ckpt = tmp_path / "sums.pt"
    ckpt.write_bytes(b"not a checkpoint")
    ids = smollm.to_tokens(["One, two, three"]).ids
    with pytest.raises(Exception, match="delete it"):
        run_analysis(THROWAWAY, smollm, THROWAWAY.make_settings(), ids, checkpoint=ckpt)


def test_cancel_stops_before_the_next_batch(smollm: Any) -> None:
    ids = smollm.to_tokens(["One, two, three, four"] * 4).ids
    rep = Reporter(cancel=lambda: rep.done >= 1)
    with pytest.raises(Cancelled):
        run_analysis(THROWAWAY, smollm, THROWAWAY.make_settings(), ids, reporter=rep)
    assert rep.done == 1


def test_a_declared_analysis_reaches_cli_batch_atlas_and_remote(declared: Analysis, smollm: Any) -> None:
    from app.atlas.registry import atlas_entries
    from app.batch import parse_plan, registry
    from app.cli import build_parser
    from probes.corpus import sample

    args = build_parser().parse_args(["throwaway-norm", "--layer", "1", "--scale", "0.5", "--n", "2"])
    assert (args.layer, args.scale, args.n) == (1, 0.5, 2)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["throwaway-norm", "--scale", "0"])  # the declared open lower bound

    plan = parse_plan({"models": ["smollm2-135m"], "corpora": [{"domain": "code", "n": 2, "length": 8}],
                       "probes": [{"name": "throwaway_norm", "settings": {"layer": 1}}]})
    assert [u.probe for u in plan.units()] == ["throwaway_norm"]
    entry = registry.get("throwaway_norm")
    assert entry.defaults() == {"layer": 2, "scale": 1.0, "batch_size": 2}

    view = next(e for e in atlas_entries() if e.name == "throwaway_norm")
    assert view.probes == {"throwaway_norm": {"small": {}, "standard": {}}}

    corpus = sample("code", 2, 8, smollm.tokenizer, seed=0)
    local = entry.run(smollm, {"layer": 1}, corpus, 0)
    assert entry.run_remote is not None
    remote = entry.run_remote(smollm.nnsight, {"layer": 1}, corpus, 0, "local")
    expected = hf_last_norm(smollm, corpus.ids, 1)
    assert abs(local[0]["value"] - expected) <= 1e-4 * expected
    assert abs(remote[0]["value"] - local[0]["value"]) <= 1e-4 * local[0]["value"]


def test_unregistered_analysis_leaves_the_batch_registry(smollm: Any) -> None:
    from app.batch import registry

    register_analysis(THROWAWAY)
    assert "throwaway_norm" in registry.names()
    unregister_analysis(THROWAWAY.name)
    assert "throwaway_norm" not in registry.names()


# --- a throwaway report: a whole run whose result is its own saved document, local and remote -------------

@dataclass(frozen=True)
class ReportSettings:
    at_layers: str = setting("0,1", "layers whose last-position norm is reported", check=integers_check,
                             aliases=("which_layers",))
    copies: int = setting(2, "copies of the prompt", minimum=1)


def report_check(model: Any, s: ReportSettings) -> list[tuple[str, str]]:
    bad = [layer for layer in integers(s.at_layers) if layer >= model.facts.n_layers]
    return [("at_layers", f"{bad}: beyond the model")] if bad else []


def report_compute(model: Any, s: ReportSettings, run: Any) -> dict[str, Any]:
    ids = model.to_tokens(["One, two, three"] * s.copies).ids
    norms = model.residual_norms(ids, dtype=torch.float64)[:, :, -1].mean(0)
    out: dict[str, Any] = {"kind": "throwaway_doc", "norms": {str(la): float(norms[la]) for la in integers(s.at_layers)}}
    if model.backend != "local":
        out["left_out"] = "the local part"
    return out


def report_rows(result: dict[str, Any]) -> list[Row]:
    return [{"metric": "norm", "value": v, "layer": int(k), "head": None, "position": None}
            for k, v in result["norms"].items()]


REPORT = Analysis(
    name="throwaway_report", command="throwaway-doc", document="throwaway_doc", description="a test report",
    method="tests/probes/test_analysis.py", settings=ReportSettings, compute=report_compute, rows=report_rows,
    uses_corpus=False, remote=True, model_check=report_check,
)


def test_a_declared_report_writes_its_own_document_checks_its_settings_and_runs_remotely(
        smollm: Any, tmp_path: Any, monkeypatch: Any, capsys: Any) -> None:
    """The generated command: a list setting checked while parsing (and its old spelling), a setting the model
    cannot satisfy refused as a usage error naming the option, the document written under its own kind with
    numbers equal to HF hidden states (1e-4 relative); the batch probe runs the same compute on a RemoteModel,
    which leaves out the local part."""
    import json

    import app.commands.analyses as generated
    from app.batch import registry
    from app.cli import build_parser, main

    register_analysis(REPORT)
    try:
        parse = build_parser().parse_args
        assert parse(["throwaway-doc", "--which-layers", "3"]).at_layers == "3"
        with pytest.raises(SystemExit):
            parse(["throwaway-doc", "--at-layers", "0,x"])
        monkeypatch.setattr(generated, "load_from_args", lambda args: smollm)
        assert main(["throwaway-doc", "--at-layers", "0,99", "--out", str(tmp_path / "bad")]) == 2
        assert "--at-layers [99]: beyond the model" in capsys.readouterr().err
        assert main(["throwaway-doc", "--at-layers", "1,3", "--copies", "1", "--out", str(tmp_path / "ok")]) == 0
        saved = json.loads((tmp_path / "ok" / "throwaway_doc.json").read_text())
        assert saved["kind"] == "throwaway_doc" and "left_out" not in saved
        ids = smollm.to_tokens(["One, two, three"]).ids
        for layer in (1, 3):
            expected = hf_last_norm(smollm, ids, layer)
            assert abs(saved["norms"][str(layer)] - expected) <= 1e-4 * expected
        entry = registry.get("throwaway_report")
        assert entry.run_remote is not None
        local = entry.run(smollm, {"at_layers": "1,3"}, None, 0)
        remote = entry.run_remote(smollm.nnsight, {"at_layers": "1,3"}, None, 0, "local")
        assert [r["layer"] for r in remote] == [1, 3]
        assert all(abs(a["value"] - b["value"]) <= 1e-4 * a["value"] for a, b in zip(local, remote, strict=True))
        with pytest.raises(InputError, match="at_layers"):
            REPORT.make_settings({"at_layers": "one"})
    finally:
        unregister_analysis(REPORT.name)
