"""The figures package draws every result kind from its to_dict() data (docs/app.md, "Figures").

For each kind: the figures drawn from the live result's to_dict() (tensors inside) equal those drawn
from its JSON round trip (json.dumps / json.loads); the numbers in the traces equal the result's
tensors, recomputed here with plain torch; `glasshouse export` of a saved result JSON writes the
files; a JSON with no known kind is a clear error. No model is loaded: the results are built from
small random tensors.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from app.cli import main
from app.figures import registry
from app.figures.registry import UnknownKindError, draw, draw_file
from app.figures.theme import token_label
from probes.dormant import DormantResult, HeadRow
from probes.extreme import ExtremeResult, PeakAblation
from probes.io import to_jsonable
from probes.results import save_result
from probes.sinks import SinkResult

TOKENS = [["<s>", " the", "\n", "cat", ""], ["<s>", "a", " b", "\t", "&"], ["<s>", "x", "y", "z", " "]]
N, L, H, T = 3, 2, 3, 5


def _round_trip(data):
    return json.loads(json.dumps(to_jsonable(data)))


def _same(live: dict, saved: dict) -> None:
    assert list(live) == list(saved)
    for name in live:
        a, b = live[name], saved[name]
        if isinstance(a, str):
            assert a == b, name
        else:
            assert a.to_json() == b.to_json(), name


def sink_result(seed: int = 0, regime: str = "natural") -> SinkResult:
    gen = torch.Generator().manual_seed(seed)
    alpha = torch.rand(N, L, H, T, generator=gen) * 0.5
    alpha[..., 0] += 0.4
    eps = 0.3
    above = alpha[..., 0] > eps
    rate = 100.0 * (alpha > eps).float().mean(dim=(0, 1, 2))
    return SinkResult(alpha=alpha, sink_rate=rate, sink1=float(rate[0]), head_rate=100.0 * above.float().mean(0),
                      sample_rate=100.0 * above.float().mean(dim=(1, 2)), str_tokens=TOKENS,
                      ids=torch.zeros(N, T, dtype=torch.long), eps=eps, regime=regime, prepend_bos=True,
                      first_is_bos=True, metadata={"model": "toy", "settings": {}, "seed": seed})


def extreme_result() -> ExtremeResult:
    gen = torch.Generator().manual_seed(1)
    resid = torch.rand(N, L, T, generator=gen) * 10 + 1
    resid[..., 0] *= 50
    return ExtremeResult(sink_attention=torch.rand(N, L, H, generator=gen),
                         value_norm=torch.rand(N, L, H, T, generator=gen), resid_norm=resid,
                         logit_gap=torch.rand(N, L, H, T, generator=gen), str_tokens=TOKENS,
                         metadata={"model": "toy"})


def peak_ablation() -> PeakAblation:
    clean = torch.tensor([10.0, 400.0])
    rows = [{"component": c, "layer": layer, "sink": 5.0, "rest_max": 2.0,
             "sink_by_layer": torch.tensor([9.0 + layer, 20.0 + layer])} for c in ("mlp", "attn") for layer in (0, 1)]
    return PeakAblation(clean, torch.tensor([3.0, 4.0]), 1, rows, {"model": "toy"})


def dormant_result() -> DormantResult:
    gen = torch.Generator().manual_seed(2)
    dorm = {d: torch.rand(L, H, generator=gen) for d in ("prose", "code")}
    ent = {d: torch.rand(L, H, generator=gen) * 3 for d in dorm}
    rows = [HeadRow(1, 2, "top", {d: float(dorm[d][1, 2]) for d in dorm}, float(dorm["prose"][1, 2] - dorm["code"][1, 2]),
                    {d: {"zero_out_attn": 0.01, "move_attn_to_bos": 0.002} for d in dorm})]
    return DormantResult(("prose", "code"), dorm, {"prose": 3.0, "code": 2.0}, rows, {"model": "toy"},
                         row_entropy=ent, column_entropy={d: 3 - e for d, e in ent.items()})


def successor_scores() -> dict:
    items = ["Monday", "Tuesday", "Wednesday"]
    scores = [[0.1, 0.9, 0.2], [0.3, 0.0, 0.5]]
    return {"kind": "successor_scores", "metadata": {"settings": {"norm": "auto", "source": "mlp0"}},
            "dataset": {"tasks": [{"name": "days", "items": items, "pairs": [[0, 1], [1, 2]]}], "skipped": {}},
            "scores": scores, "per_task": {"days": scores}, "chance": 0.33, "task_chance": {"days": 0.33},
            "threshold": 0.4, "ranking": [{"layer": 0, "head": 1, "score": 0.9, "per_task": {"days": 0.9}}],
            "successor_heads": [], "top_head": {"layer": 0, "head": 1, "per_task": {"days": 0.9}},
            "top_confusion": {"days": [{"source": " Monday", "predicted": " Tuesday", "expected": " Tuesday"},
                                       {"source": "Tuesday", "predicted": "Monday", "expected": "Wednesday"}]}}


def in_context() -> dict:
    return {"kind": "successor_in_context", "metadata": {}, "dla": {"days": [[0.5, -1.0, 2.0], [0.0, 1.5, -0.5]]},
            "chance": {"days": 0.1}, "ranking": [{"layer": 0, "head": 2, "mean_dla": 2.0,
                                                  "per_task_rank_accuracy": {"days": 0.75}}]}


def circuit() -> dict:
    nodes = [{"id": "input", "kind": "input", "span": None, "head": None, "row": 0.0},
             {"id": "a0.h1", "kind": "head", "span": None, "head": 1, "row": 1.0},
             {"id": "logits", "kind": "logits", "span": None, "head": None, "row": 3.0}]
    edges = [{"src": "input", "dst": "a0.h1", "slot_name": "q", "src_span": None, "dst_span": None, "score": 0.5},
             {"src": "a0.h1", "dst": "logits", "slot_name": "", "src_span": None, "dst_span": None, "score": -0.25}]
    return {"kind": "circuit", "task": {"name": "ioi"},
            "curves": [{"label": "eap", "edges": [1, 10], "faithfulness": [0.2, float("nan")], "area": 0.5}],
            "circuits": {"eap": {"position_aware": False, "spans": [], "nodes": nodes, "edges": edges, "n_heads": 4,
                                 "n_layers": 2, "n_edges": 2}}}


def bb_evaluation() -> dict:
    metrics = [{"step": s, "attn_sink_nontrigger": [0.1 * s, 0.2 * s], "attn_sink_trigger": [0.0, 0.1],
                "value_norm_sink": [1.0, 1.0], "value_norm_others": [2.0, 0.0], "resid_norm_sink": [3.0, 3.0],
                "resid_norm_others": [1.0, 1.5], "backcopy_risk": 1.0, "bigram_risk": 0.5} for s in (0, 10)]
    return {"kind": "bb_evaluation", "checkpoint": "runs/bb/x/step_10", "step": 10,
            "settings": {"attention": "softmax", "optimizer": "adamw", "layers": 2, "d_model": 8, "batch": 4},
            "measures": {"token_attn_sink": {"a": 0.9, " ": 0.2}, "sink_by_position": {"0-4": 0.8, "4-8": 0.5}},
            "training_metrics": metrics, "triggers": [" "]}


def sae_dashboard() -> dict:
    example = {"tokens": ["<s>", " cat", "\n"], "activations": [0.0, 2.0, 0.5], "activation": 2.0, "focus": 1}
    entry = {"feature": 3, "density": 0.25, "max_activation": 2.0, "top_examples": [example],
             "quantile_examples": [{"range": [0.0, 2.0], "count": 2, "examples": [example]}],
             "histogram": {"counts": [1, 1], "edges": [0.0, 1.0, 2.0]},
             "logit_effects": {"top": [{"token": " dog", "id": 1, "value": 0.5}],
                               "bottom": [{"token": "<b>", "id": 2, "value": -0.5}]},
             "neighbours": [{"feature": 1, "cosine": 0.4}]}
    return {"kind": "sae_dashboard", "hook_name": "blocks.0.hook_resid_post", "features": {"3": entry}}


def zerotuning() -> dict:
    """The three ZeroTuning results (probes/zerotuning.py), built by hand."""
    from probes.accuracy import AccuracyResult
    from probes.zerotuning import HeadSweep, LayerSweep, TunedHeads

    layers = LayerSweep("capitals", "dev", 0, [0.5, 2.0], [0, 1], 0.5, [[0.5, 0.75], [0.25, 0.5]], 4)
    heads = HeadSweep("capitals", "dev", 0, 0.5, 0.5, [[0.0, 0.25], [-0.25, 0.0]], 4, {"settings": {"layers": [0, 1]}})
    before = AccuracyResult("capitals", "test", "choices", 4, 2, 0.5, 0.15, 0.85)
    after = AccuracyResult("capitals", "test", "choices", 4, 3, 0.75, 0.3, 0.95)
    return {"zerotuning_layers": layers, "zerotuning_heads": heads,
            "zerotuning_tuned": TunedHeads("capitals", 0, 0.5, [(0, 1)], heads, before, after)}


def live_results() -> dict:
    """kind -> a live result (an object with to_dict, or the dict a command writes)."""
    sinks = {"natural": sink_result(0, "natural"), "random": sink_result(1, "random")}
    return {
        "sink_result": sink_result(),
        "sinks": {"kind": "sinks", "regimes": {r: s.to_dict() for r, s in sinks.items()}},
        "extreme_result": extreme_result(),
        "peak_ablation": peak_ablation(),
        "extreme": {"kind": "extreme", "measurements": extreme_result().to_dict(), "ablation": peak_ablation().to_dict()},
        "dormant": dormant_result(),
        "successor_scores": successor_scores(),
        "successor_in_context": in_context(),
        "successor": {"kind": "successor", "first_order": successor_scores(), "in_context": in_context()},
        "circuit": circuit(),
        "bb_train": {"kind": "bb_train", "settings": bb_evaluation()["settings"],
                     "metrics": bb_evaluation()["training_metrics"]},
        "bb_evaluation": bb_evaluation(),
        "bb": {"kind": "bb", "evaluations": [bb_evaluation(), {**bb_evaluation(), "training_metrics": []}]},
        "sae_eval": {"kind": "sae_eval", "reconstruction": {"dead": 1, "d_sae": 4, "log10_density_hist": {
            "edges": [-3.0, -2.0, -1.0], "counts": [1, 3]}}},
        "sae_dashboard": sae_dashboard(),
        "sae_prompt": {"kind": "sae_prompt", "tokens": [
            {"token": "<s>", "position": 0, "features": []},
            {"token": " hi", "position": 1, "features": [{"feature": 7, "activation": 1.5}]}]},
        **zerotuning(),
        # a declared analysis's command result (app/commands/analyses.py): its row figure, from the saved rows
        "analysis": {"kind": "analysis", "analysis": "first_token_attention", "model": "m", "rows": [
            {"metric": "first_token_attention", "value": 0.1 * (la + h), "layer": la, "head": h, "position": None}
            for la in range(2) for h in range(3)]},
    }


def test_every_registered_kind_is_covered_here():
    assert sorted(live_results()) == registry.kinds()


@pytest.mark.parametrize("kind", sorted(live_results()))
def test_saved_json_draws_the_same_figures_as_the_live_result(kind):
    live = live_results()[kind]
    data = live.to_dict() if hasattr(live, "to_dict") else live
    assert data["kind"] == kind
    drawn = draw(data)
    assert drawn
    _same(drawn, draw(_round_trip(data)))
    for fig in drawn.values():
        if not isinstance(fig, str):
            assert fig.layout.title.text and fig.layout.xaxis.title.text


def test_sink_figures_show_the_result_numbers():
    res = sink_result()
    figs = draw(_round_trip(res.to_dict()))
    heat = figs["first_token_heatmap"].data[0]
    np.testing.assert_allclose(np.array(heat.z), res.alpha[..., 0].mean(0).numpy(), rtol=1e-6)
    bars = draw(_round_trip(res.to_dict()))["token_view"].data[0]
    share = [100 * sum(float(res.alpha[0, la, h, k]) > res.eps for la in range(L) for h in range(H)) / (L * H)
             for k in range(T)]
    np.testing.assert_allclose(list(bars.y), share, rtol=1e-6)
    assert "k=2: ␣the" in bars.hovertext[1] and "↵" in bars.hovertext[2]
    assert list(figs["token_view"].layout.xaxis.ticktext) == ["&lt;s&gt;", "␣the", "↵", "cat", "∅"]
    line = figs["sink_rate_by_regime"].data[0]
    rate = [100 * float((res.alpha[..., k] > res.eps).float().mean()) for k in range(T)]
    np.testing.assert_allclose(list(line.y), rate, rtol=1e-6)
    assert "&lt;s&gt;" in line.hovertext[0]


def test_extreme_and_ablation_figures_show_the_result_numbers():
    res, ab = extreme_result(), peak_ablation()
    figs = draw(_round_trip({"kind": "extreme", "measurements": res.to_dict(), "ablation": ab.to_dict()}))
    heat = figs["residual_norm_heatmap"].data[0]
    expected = [[math.log10(float(res.resid_norm[0, la, k])) for k in range(T)] for la in range(L)]
    np.testing.assert_allclose(np.array(heat.z), expected, rtol=1e-6)
    assert "pos 1: ␣the" in heat.hovertext[0][1]
    lines = figs["residual_norm_lines"].data
    np.testing.assert_allclose(list(lines[0].y), res.resid_norm[..., 0].mean(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(list(lines[1].y), res.resid_norm[..., 1:].amax(-1).mean(0).numpy(), rtol=1e-6)
    values = figs["value_norms"].data[0]
    np.testing.assert_allclose(list(values.y), res.value_norm[..., 0].mean(0).flatten().numpy(), rtol=1e-6)
    peak = figs["peak_ablation"].data
    assert list(peak[0].y) == [10.0, 400.0] and list(peak[1].y) == [9.0, 20.0] and len(peak) == 5


def test_dormancy_scatter_shows_the_result_numbers():
    res = dormant_result()
    fig = draw(_round_trip(res.to_dict()))["dormancy_scatter"]
    heads = fig.data[0]
    np.testing.assert_allclose(list(heads.x), res.dormancy["prose"].flatten().numpy(), rtol=1e-6)
    np.testing.assert_allclose(list(heads.y), res.dormancy["code"].flatten().numpy(), rtol=1e-6)
    assert "loss +0.0100 (zero)" in heads.hovertext[1 * H + 2]
    assert fig.layout.annotations[0].text == "L1H2"


def test_other_kinds_show_their_numbers_and_token_strings():
    figs = draw(successor_scores())
    assert np.array(figs["successor_scores"].data[0].z).tolist() == successor_scores()["scores"]
    confusion = figs["successor_confusion_days"].data[0]
    assert list(confusion.x) == ["Monday", "Tuesday", "Wednesday"]
    assert confusion.text[1][0] == "source Tuesday<br>predicted Monday<br>expected Wednesday"
    assert np.array(confusion.z).tolist() == [[0, 0, 0], [1, 0, 0], [0, 0, 0]]  # Tuesday -> Monday once
    ic = draw(in_context())["successor_in_context_dla"].data[0]
    assert np.array(ic.z).tolist() == in_context()["dla"]["days"]
    curve = draw(circuit())["faithfulness_curves"].data[0]
    assert list(curve.x) == [1, 10] and curve.y[0] == 0.2 and curve.y[1] is None  # NaN is saved as null
    sae = draw(sae_dashboard())
    assert list(sae["feature_3_hist"].data[0].y) == [1, 1]
    assert list(sae["feature_3_logits"].layout.yaxis.ticktext) == ["␣dog", "&lt;b&gt;"]
    assert "␣cat" in sae["feature_3"] and "<b>" not in sae["feature_3"]
    assert "&lt;b&gt;" in sae["feature_3"] and sae["feature_3"].startswith("<!doctype html>")
    bb = draw(bb_evaluation())
    assert list(bb["bb_sink_by_position"].data[0].y) == [0.8, 0.5]
    assert list(bb["bb_token_attention_0"].data[0].x) == ["a", "␣"]


def test_token_label_is_the_one_convention():
    assert token_label("<bos>") == "&lt;bos&gt;"
    assert token_label(" a&b\n") == "␣a&amp;b↵"
    assert token_label("\t\x00") == "⇥\\x00"
    assert token_label("") == "∅"


def test_unknown_or_missing_kind_is_a_clear_error(tmp_path):
    with pytest.raises(UnknownKindError, match="kind 'nope', which has no figures.*sink_result"):
        draw({"kind": "nope"})
    with pytest.raises(UnknownKindError, match="records no result kind"):
        draw({"regimes": {}})
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"n": 1}))
    with pytest.raises(UnknownKindError, match="old.json records no result kind"):
        draw_file(path)


def test_export_draws_a_saved_result_json_again(tmp_path, capsys):
    res = sink_result()
    bundle = {"kind": "sinks", "regimes": {"natural": res.to_dict()}}
    path = save_result(tmp_path / "run" / "sinks.json", bundle)
    out = tmp_path / "again"
    assert main(["export", str(path), "--format", "html", "--format", "svg", "--out", str(out)]) == 0
    for name in ("sink_rate_by_regime", "first_token_heatmap", "token_view"):
        assert (out / f"{name}.html").stat().st_size > 1000 and (out / f"{name}.svg").read_text().startswith("<svg")
        saved = json.loads((out / f"{name}.plotly.json").read_text())
        assert saved == json.loads(draw(bundle)[name].to_json())
    assert str(out / "token_view.svg") in capsys.readouterr().out
    dash = save_result(tmp_path / "sae" / "sae_dashboard.json", sae_dashboard())
    assert main(["export", str(dash), "--format", "html"]) == 0  # default: beside the JSON
    assert (tmp_path / "sae" / "feature_3.html").read_text().startswith("<!doctype html>")
    assert (tmp_path / "sae" / "feature_3_top.html").exists()


def test_export_of_a_json_without_a_known_kind_says_what_to_do(tmp_path, capsys):
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"kind": "calibrate", "heads": []}))
    assert main(["export", str(path), "--format", "html"]) == 1
    err = capsys.readouterr().err
    assert "kind 'calibrate', which has no figures" in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.html"))


def test_a_command_and_export_of_its_json_write_the_same_figures(tmp_path):
    """`glasshouse bb train` / `bb eval` (a tiny toy run, no HF model) write the registry's figures; exporting
    their saved JSON draws every one of them again, identical."""
    run, ev, again = tmp_path / "run", tmp_path / "eval", tmp_path / "again"
    assert main(["bb", "train", "--steps", "2", "--batch", "4", "--d-model", "16", "--seq-len", "17",
                 "--eval-every", "2", "--checkpoint-every", "2", "--out", str(run)]) == 0
    assert main(["bb", "eval", str(run), "--n", "8", "--out", str(ev)]) == 0
    for folder, name in ((run, "bb_train"), (ev, "bb")):
        written = sorted(p.name for p in folder.glob("*.plotly.json"))
        assert written and main(["export", str(folder / f"{name}.json"), "--format", "html",
                                 "--out", str(again / name)]) == 0
        assert sorted(p.name for p in (again / name).glob("*.plotly.json")) == written
        for file in written:
            assert json.loads((again / name / file).read_text()) == json.loads((folder / file).read_text()), file
    metrics = json.loads((run / "bb_train.json").read_text())["metrics"]
    curve = json.loads((run / "bb_sink_formation.plotly.json").read_text())["data"][0]
    assert curve["y"] == [r["attn_sink_nontrigger"][-1] for r in metrics]  # the last layer, every step
