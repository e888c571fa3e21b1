"""The atlas (docs/atlas.md): a tiny-budget run on the embedded model, checked number by number against
independent computations (capture + plain torch, or the library function), resumed after a kill, and
its report self-contained."""

from __future__ import annotations

import json
import re

import pytest
import torch

from app.atlas import Budget, atlas_entries, build_plan, run_atlas
from app.atlas.registry import AtlasEntry, every_budget
from app.cli import main
from probes.corpus import sample
from probes.model.capture import capture

MODEL = "smollm2-135m"
TINY = Budget("tiny", {"domain": "prose", "n": 2, "length": 12}, settings_of="small")
CHEAP = atlas_entries(["sinks", "first_token_attention", "residual_norms"])  # the resume test's analyses


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def atlas(smollm, tmp_path_factory):
    out = tmp_path_factory.mktemp("atlas")
    return run_atlas([MODEL], out, TINY, loader=lambda plan, spec: smollm, progress=False)


@pytest.fixture(scope="module")
def windows(smollm):
    return sample("prose", 2, 12, smollm.tokenizer, seed=0).ids


def headline(atlas, name):
    return atlas.summary["analyses"][name]["headline"][MODEL]


def test_sinks_and_first_token_equal_plain_torch(atlas, smollm, windows):
    pattern = capture(smollm, windows, what=["pattern"])["pattern"].double()  # [n, layer, head, q, k]
    alpha0 = pattern[..., :, 0].mean(dim=-1)  # column 0 averaged over every query (all see key 0)
    h = headline(atlas, "sinks")
    assert h["sink1_percent"] == pytest.approx(100 * (alpha0 > 0.3).double().mean().item(), rel=1e-6)
    assert h["sink_heads"] == int(((alpha0 > 0.3).double().mean(0) > 0.5).sum())
    bos = torch.full((2, 1), smollm.tokenizer.bos_token_id, dtype=windows.dtype)
    with_bos = capture(smollm, torch.cat([bos, windows], 1), what=["pattern"])["pattern"].double()[..., :, 0]
    assert headline(atlas, "sinks_bos")["sink1_percent"] == pytest.approx(
        100 * (with_bos.mean(dim=-1) > 0.3).double().mean().item(), rel=1e-6)
    fta = pattern[:, :, :, 1:, 0].mean(dim=(0, 3))  # [layer, head]
    h = headline(atlas, "first_token_attention")
    assert h["mean_attention_on_first"] == pytest.approx(fta.mean().item(), rel=1e-4)
    assert h["max_attention_on_first"] == pytest.approx(fta.max().item(), rel=1e-4)
    layer, head = divmod(int(fta.argmax()), fta.shape[1])
    assert h["max_head"] == f"L{layer}H{head}"
    assert h["share_heads_over_half"] == pytest.approx((fta > 0.5).double().mean().item())


def test_residual_and_extreme_equal_independent(atlas, smollm, windows):
    from probes.extreme import extreme_tokens

    norms = capture(smollm, windows, what=["resid_post"])["resid_post"].double().norm(dim=-1).mean(0)  # [layer, pos]
    ratio = norms[:, 0] / norms[:, 1:].mean(dim=1)
    h = headline(atlas, "residual_norms")
    assert h["max_first_over_rest"] == pytest.approx(ratio.max().item(), rel=1e-4)
    assert h["at_layer"] == int(ratio.argmax())
    s = extreme_tokens(smollm, windows).summary()
    h = headline(atlas, "extreme_tokens")
    peak = int(s["resid_sink"].argmax())
    assert h["peak_layer"] == peak == s["peak_layer"]
    assert h["peak_sink_norm"] == pytest.approx(float(s["resid_sink"][peak]), rel=1e-5)
    assert h["peak_over_rest"] == pytest.approx(float(s["resid_sink"][peak] / s["resid_rest_mean"][peak]), rel=1e-5)
    assert h["mean_logit_gap"] == pytest.approx(float(torch.nanmean(s["logit_gap"])), rel=1e-4)


def test_dormant_and_successor_equal_library(atlas, smollm, windows):
    from probes.dormant import COLUMN_ENTROPY_MIN, ROW_ENTROPY_MAX, head_statistics
    from probes.successor.score import score_heads

    prose = head_statistics(smollm, windows)
    code = head_statistics(smollm, sample("code", 2, 12, smollm.tokenizer, seed=0).ids)
    diff = prose["dormancy"] - code["dormancy"]
    h = headline(atlas, "dormant_heads")
    k = int(diff.abs().argmax())
    assert h["max_dormancy_gap"] == pytest.approx(float(diff.flatten()[k]), abs=1e-6)
    assert h["gap_head"] == f"L{k // diff.shape[1]}H{k % diff.shape[1]}"
    assert h["domain_dependent_heads"] == int((diff.abs() > 0.2).sum())
    sink = (prose["row_entropy"] < ROW_ENTROPY_MAX) & (prose["column_entropy"] > COLUMN_ENTROPY_MIN)
    assert h["entropy_sink_heads"] == int(sink.sum())
    scores = score_heads(smollm).scores
    h = headline(atlas, "successor_heads")
    assert h["max_successor_score"] == pytest.approx(float(scores.max()), abs=1e-9)
    assert h["best_head"] == f"L{int(scores.argmax()) // scores.shape[1]}H{int(scores.argmax()) % scores.shape[1]}"


def test_summary_file_table_and_report_are_self_contained(atlas):
    on_disk = json.loads((atlas.folder / "summary.json").read_text())
    assert on_disk["table"] == json.loads(json.dumps(atlas.summary["table"]))
    numbers = {(r["analysis"], r["number"]) for r in on_disk["table"]}
    assert ("sinks", "sink1_percent") in numbers and ("successor_heads", "best_head") in numbers
    assert set(on_disk["run"]["analysis_seconds"][MODEL]) == {e.name for e in atlas_entries()}
    assert on_disk["run"]["model_seconds"][MODEL] > 0
    assert on_disk["versions"]["torch"] == torch.__version__
    text = atlas.report.read_text()
    assert not re.search(r"<script[^>]*\bsrc\s*=", text), "the report must not load any script"
    assert not re.search(r"<link[^>]*href\s*=\s*[\"']https?:", text)
    assert text.count("Plotly.newPlot") == len(atlas_entries())
    assert "<table>" in text and MODEL in text
    assert sorted(p.name for p in (atlas.folder / "figures").iterdir()) == sorted(
        f"{e.name}.plotly.json" for e in atlas_entries())


def test_kill_and_resume_give_the_same_summary(atlas, smollm, tmp_path):
    def kill(stage, k, unit):
        if k == 1 and stage == "rows":  # unit 1's rows are written, its done-marker is not
            raise Killed

    with pytest.raises(Killed):
        run_atlas([MODEL], tmp_path, TINY, CHEAP, loader=lambda plan, spec: smollm, progress=False, hook=kill)
    resumed = run_atlas([MODEL], tmp_path, TINY, CHEAP, loader=lambda plan, spec: smollm, progress=False)
    assert (resumed.batch.skipped, resumed.batch.computed) == (1, len(CHEAP) - 1)
    names = {e.name for e in CHEAP}
    assert resumed.summary["analyses"] == {k: v for k, v in atlas.summary["analyses"].items() if k in names}
    assert resumed.summary["table"] == [r for r in atlas.summary["table"] if r["analysis"] in names]
    assert set(resumed.summary["run"]["analysis_seconds"][MODEL]) == names  # earlier units' times are kept


def test_one_entry_adds_an_analysis_and_shared_units_run_once():
    sinks = atlas_entries(["sinks"])[0]
    twin = AtlasEntry(name="sinks_again", title="same probe, same settings (a default spelled out)",
                      probes={"sinks": {b: {**s, "prepend_bos": False} for b, s in sinks.probes["sinks"].items()}},
                      headline=lambda rows: {"n_rows": len(rows["sinks"])})
    other = AtlasEntry(name="sinks_eps", title="another eps", probes={"sinks": every_budget({"eps": 0.5})},
                       headline=lambda rows: {})
    plan = build_plan([MODEL], TINY, [sinks, twin, other])
    assert [(u.probe, u.settings["eps"]) for u in plan.units()] == [("sinks", 0.3), ("sinks", 0.5)]


def test_cli_refuses_bad_input_before_loading(tmp_path, capsys):
    assert main(["atlas", MODEL, "--budget", "huge", "--out", str(tmp_path)]) == 2
    assert main(["atlas", MODEL, "--analyses", "sinks,nope", "--out", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["atlas", str(tmp_path / "no-such-model"), "--out", str(tmp_path / "o")]) == 1
    assert "no-such-model" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
