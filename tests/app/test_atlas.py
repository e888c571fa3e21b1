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
# 2 windows x 12 tokens; circuits (2 examples, one edge count: each patched run of the whole graph costs
# tens of CPU seconds on this model) only in the slow test.
TINY = Budget("tiny", {"domain": "prose", "n": 2, "length": 12}, settings_of="small",
              overrides={"circuit": {"n": 2, "counts": "300"}, "successor_in_context": {"max_prompts": 4}})
ENTRIES = [e for e in atlas_entries() if not e.name.startswith("circuit_")]
CHEAP = atlas_entries(["sinks", "first_token_attention", "residual_norms"])  # the resume test's analyses


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def atlas(smollm, tmp_path_factory):
    out = tmp_path_factory.mktemp("atlas")
    return run_atlas([MODEL], out, TINY, ENTRIES, loader=lambda plan, spec: smollm, progress=False)


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


def test_peak_ablation_and_hidden_sinks_equal_library(atlas, smollm, windows):
    from probes.extreme import peak_ablation
    from probes.hidden_sinks import detect_hidden_sinks

    ref = peak_ablation(smollm, windows[:4])  # what `glasshouse extreme` runs on its first 4 windows
    h = headline(atlas, "peak_ablation")
    at = ref.measure_layer
    worst = min(ref.rows, key=lambda r: r["sink"])
    assert h["measure_layer"] == at and h["clean_sink_norm"] == pytest.approx(float(ref.clean_sink[at]), rel=1e-5)
    assert h["strongest_ablation"] == f"{worst['component']} L{worst['layer']}"
    assert h["sink_norm_kept"] == pytest.approx(worst["sink"] / float(ref.clean_sink[at]), rel=1e-5)
    # hidden sinks in plain torch: alpha_k = mean of column k over the queries that see it, k >= 1
    pattern = capture(smollm, windows, what=["pattern"])["pattern"].double()  # [n, layer, head, q, k]
    T = pattern.shape[-1]
    alpha = torch.stack([pattern[..., k:, k].mean(dim=-1) for k in range(T)], dim=-1)
    seen = alpha[..., 1 : T - 8 + 1] > 0.1  # keys seen by at least 8 queries
    rate = 100 * seen.any(dim=-1).double().mean(dim=0)
    h = headline(atlas, "hidden_sinks")
    assert h["mean_hidden_rate"] == pytest.approx(rate.mean().item(), abs=1e-6)
    assert h["heads_with_hidden_sinks"] == int((rate > 50).sum())
    lib = detect_hidden_sinks(smollm, windows, min_queries=8)
    assert h["top_sink_token_count"] == (next(iter(lib.token_counts.values())) if lib.token_counts else 0)
    assert int(seen.sum()) == sum(lib.token_counts.values())


def test_sinks_by_regime_equal_library(atlas, smollm):
    from probes.sinks import compute_sinks, inputs_for_regime

    for regime in ("random", "repeat"):
        ids = inputs_for_regime(smollm, regime, 2, 12, seed=0, prepend_bos=False)
        pattern = capture(smollm, ids, what=["pattern"])["pattern"].double()
        alpha0 = pattern[..., :, 0].mean(dim=-1)
        h = headline(atlas, f"sinks_{regime}")
        assert h["sink1_percent"] == pytest.approx(100 * (alpha0 > 0.3).double().mean().item(), rel=1e-6)
        assert h["sink1_percent"] == pytest.approx(compute_sinks(smollm, ids, eps=0.3, prepend_bos=False).sink1)


def test_successor_in_context_equals_library(atlas, smollm):
    from probes.successor.in_context import in_context_scores

    ic = in_context_scores(smollm, max_prompts=4)  # the tiny budget's prompts per task
    top = ic.ranking(1)[0]
    h = headline(atlas, "successor_in_context")
    assert h["best_head"] == f"L{top['layer']}H{top['head']}"
    assert h["best_mean_dla"] == pytest.approx(top["mean_dla"], rel=1e-5)
    assert h["best_rank_accuracy"] == pytest.approx(
        sum(top["per_task_rank_accuracy"].values()) / len(ic.task_names), rel=1e-6)
    assert h["model_task_accuracy"] == pytest.approx(sum(ic.model_task_accuracy) / len(ic.task_names))


def check_circuit(atlas, smollm, task):
    from circuits.discover import discover

    settings = atlas.summary["analyses"][f"circuit_{task}"]["settings"]["circuit"]
    counts = [int(c) for c in settings["counts"].split(",")]
    ref = discover(smollm, task, n=settings["n"], method="eap", which=settings["which"], counts=counts, seed=0,
                   progress=False, extend_to=None)
    (curve,) = ref.curves
    h = headline(atlas, f"circuit_{task}")
    assert h["area"] == pytest.approx(curve.area, abs=1e-9)
    assert h["edges_to_80"] == curve.edges_to_80
    assert h[f"faithfulness_at_{max(counts)}"] == pytest.approx(curve.faithfulness[-1], abs=1e-9)
    assert h["clean_metric"] == pytest.approx(float(ref.base.clean), abs=1e-9)
    assert h["empty_metric"] == pytest.approx(float(ref.base.baseline), abs=1e-9)
    assert h["circuit_edges"] == len(ref.circuits[curve.label]["edges"])


@pytest.mark.slow
def test_every_task_circuit_equals_discover(smollm, tmp_path):
    from circuits.tasks import TASKS

    circuits = atlas_entries([f"circuit_{t}" for t in TASKS])
    run = run_atlas([MODEL], tmp_path, TINY, circuits, loader=lambda plan, spec: smollm, progress=False)
    for task in TASKS:
        check_circuit(run, smollm, task)


def test_sae_metrics_equal_plain_torch(atlas, smollm, windows):
    from saes.analysis import SAE, train_small_sae

    info = atlas.summary["analyses"]["sae"]
    sae = train_small_sae(smollm, SAE.make_settings(info["settings"]["sae"]), 12, seed=0)  # deterministic on CPU
    layer = smollm.facts.n_layers // 2
    x = capture(smollm, windows, what=["resid_post"])["resid_post"][:, layer, 1:].reshape(-1, smollm.facts.d_model)
    with torch.no_grad():
        f = sae.encode(x.float())
        x_hat = sae.decode(f)
    x, x_hat = x.double(), x_hat.double()
    fvu = ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    h = headline(atlas, "sae")
    assert h["hook"] == f"blocks.{layer}.hook_resid_post"
    assert h["fvu"] == pytest.approx(fvu.item(), rel=1e-4)
    assert h["l0"] == pytest.approx((f > 0).double().sum(-1).mean().item(), rel=1e-6)
    assert h["dead_fraction"] == pytest.approx(((f > 0).sum(0) == 0).double().mean().item())
    density = (f > 0).double().mean(0)
    first = int(h["top_features"].split()[0])
    assert density[first] == density.max()
    # CE loss recovered with a zero ablation, by hand: (L_zero - L_sae) / (L_zero - L_clean)
    def loss(replace):
        def hook(act, hook):
            new = act.clone()
            new[:, 1:] = replace(act[:, 1:])
            return new
        logits = smollm.run_with_hooks(windows, fwd_hooks=[(h["hook"], hook)])[:, :-1].float()
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten()).item()

    with torch.no_grad():
        clean = torch.nn.functional.cross_entropy(smollm.forward(windows)[:, :-1].float().flatten(0, 1),
                                                  windows[:, 1:].flatten()).item()
        spliced = loss(lambda a: sae.decode(sae.encode(a.float())).to(a.dtype))
        zero = loss(torch.zeros_like)
    assert h["ce_loss_recovered"] == pytest.approx((zero - spliced) / (zero - clean), rel=1e-3)


def test_summary_file_table_and_report_are_self_contained(atlas):
    on_disk = json.loads((atlas.folder / "summary.json").read_text())
    assert on_disk["table"] == json.loads(json.dumps(atlas.summary["table"]))
    numbers = {(r["analysis"], r["number"]) for r in on_disk["table"]}
    assert ("sinks", "sink1_percent") in numbers and ("successor_heads", "best_head") in numbers
    assert set(on_disk["run"]["analysis_seconds"][MODEL]) == {e.name for e in ENTRIES}
    assert on_disk["run"]["model_seconds"][MODEL] > 0
    assert on_disk["versions"]["torch"] == torch.__version__
    text = atlas.report.read_text()
    assert not re.search(r"<script[^>]*\bsrc\s*=", text), "the report must not load any script"
    assert not re.search(r"<link[^>]*href\s*=\s*[\"']https?:", text)
    assert text.count("Plotly.newPlot") == len(ENTRIES)
    assert "<table>" in text and MODEL in text
    assert sorted(p.name for p in (atlas.folder / "figures").iterdir()) == sorted(
        f"{e.name}.plotly.json" for e in ENTRIES)


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
