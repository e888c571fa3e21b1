"""The Compare models page (app/views/compare.py) on a saved tiny atlas folder: its table and figures
are the summary's numbers; two of three models are picked; a folder without summary.json is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from app.atlas import Budget, atlas_entries, run_atlas
from app.atlas.report import select_models

APP = str(Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py")
MODELS = ["smollm2-135m", "smollm2-135m-twin"]  # one embedded model under two names (no second load)
TINY = Budget("tiny", {"domain": "prose", "n": 2, "length": 12}, settings_of="small")


@pytest.fixture(scope="module")
def saved(smollm, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compare")
    run_atlas(MODELS, out, TINY, atlas_entries(["sinks", "first_token_attention"]),
              loader=lambda plan, spec: smollm, progress=False, check_models=lambda spec: None)
    return out


def open_folder(path: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("views/compare.py").run()
    at.selectbox(key="cmp_folder").set_value("another folder ...").run()
    at.text_input(key="cmp_path").input(path).run()
    return at


def test_saved_folder_shows_the_summary(saved: Path) -> None:
    summary = json.loads((saved / "summary.json").read_text())
    at = open_folder(str(saved))
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    (df,) = [d.value for d in at.dataframe]
    assert list(df.columns) == ["analysis", "number", *MODELS]
    expected = {(r["analysis"], r["number"]): r[MODELS[0]] for r in summary["table"]}
    shown = {(r["analysis"], r["number"]): r[MODELS[0]] for r in df.to_dict("records")}
    assert set(shown) == set(expected)
    assert float(shown[("sinks", "sink1_percent")]) == pytest.approx(expected[("sinks", "sink1_percent")])
    assert shown[("first_token_attention", "max_head")] == expected[("first_token_attention", "max_head")]
    figs = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    assert len(figs) == 2
    curve = summary["analyses"]["sinks"]["figure"]["data"][MODELS[1]]["series"][0]
    assert [t["name"] for t in figs[0]["data"]] == MODELS
    assert figs[0]["data"][1]["y"] == pytest.approx(curve["y"])
    heat = [t for t in figs[1]["data"] if t["type"] == "heatmap"]
    assert len(heat) == 2


def test_missing_summary_is_refused(tmp_path: Path) -> None:
    at = open_folder(str(tmp_path))
    assert not at.exception
    assert any("summary.json" in e.value for e in at.error)


def test_select_models_keeps_two_of_three() -> None:
    summary: dict[str, Any] = {
        "atlas": {"models": ["a", "b", "c"]},
        "table": [{"analysis": "x", "number": "n", "a": 1, "b": 2, "c": 3},
                  {"analysis": "x", "number": "only_c", "a": None, "b": None, "c": 4}],
        "analyses": {"x": {"headline": {"a": {"n": 1}, "b": {"n": 2}, "c": {"n": 3}}, "missing_models": [],
                           "figure": {"kind": "bars", "data": {"a": {}, "b": {}, "c": {}}}}},
    }
    out = select_models(summary, ["c", "a"])
    assert out["atlas"]["models"] == ["c", "a"]
    assert out["table"] == [{"analysis": "x", "number": "n", "c": 3, "a": 1},
                            {"analysis": "x", "number": "only_c", "c": 4, "a": None}]
    assert set(out["analyses"]["x"]["headline"]) == set(out["analyses"]["x"]["figure"]["data"]) == {"a", "c"}
