"""AppTest runs of every page on the embedded model: happy paths, bad input, the other pages open.

Numbers the pages print are checked against independent computations: the Model page's heatmap
against HF eager attention (the `smollm_with_ref` fixture), the Sinks page's Sink_1 and heatmap
against a plain-torch alpha computed from captured patterns. The fixture is requested before the
app runs, so the app's `load_model` call hits the process cache.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests.conftest import REFERENCE_PROMPTS

APP = str(Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py")
TIMEOUT = 300

OTHER_PAGES = ["views/successor.py", "views/circuits.py", "views/saes.py", "views/bblab.py"]


def key_importance(model: Any, ids: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """alpha[n, layer, head, k] = mean over queries i >= k of A[i, k], by an explicit loop over k."""
    from probes.model.capture import capture

    pattern = capture(model, ids, what=["pattern"], batch_size=batch_size)["pattern"]  # [n, l, h, q, k]
    T = pattern.shape[-1]
    alpha = torch.empty(pattern.shape[:3] + (T,))
    for k in range(T):
        alpha[..., k] = pattern[..., k:, k].sum(dim=-1) / (T - k)
    return alpha


# --- helpers ---------------------------------------------------------------------------------------


def run_app(page: str | None = None, **sidebar: Any) -> AppTest:
    """Run the app, then switch to `page`. Sidebar values go in through session_state (widget keys):
    AppTest's element tree drops the entry script's sidebar after a page switch."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in sidebar.items():
        at.session_state[key] = value
    at.run()
    if page is not None:
        at.switch_page(page).run()
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def figures(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def array(value: Any) -> np.ndarray:
    """A plotly JSON array (a list, or a typed array {'dtype', 'bdata', 'shape'}) as numpy."""
    if isinstance(value, dict) and "bdata" in value:
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if shape:
            data = data.reshape([int(s) for s in str(shape).split(",")])
        return data
    return np.array(value, dtype=float)


# --- Model page ------------------------------------------------------------------------------------


def test_model_page_facts_and_pattern_match_hf(smollm_with_ref: Any) -> None:
    model, ref = smollm_with_ref
    at = run_app("views/model.py", prompt=REFERENCE_PROMPTS[0])
    at.number_input(key="layer").set_value(5).run()
    at.number_input(key="head").set_value(2).run()
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Layers"] == str(model.facts.n_layers) == "30"
    assert metrics["Query heads"] == "9" and metrics["Key/value heads"] == "3"

    L = int(ref.attention_mask[0].sum())
    expected = ref.attentions[5][0, 2, :L, :L].double().numpy()
    (fig,) = figures(at)
    z = array(fig["data"][0]["z"])
    lower = np.tril(np.ones((L, L), dtype=bool))
    np.testing.assert_allclose(z[lower], expected[lower], atol=1e-4)  # fp32 bridge vs HF eager
    assert np.isnan(z[~lower]).all()  # the causal upper triangle is blank, not zero
    ticks = fig["layout"]["xaxis"]["ticktext"]
    assert len(ticks) == L and ticks[-1] == ",", ticks  # token strings on the axis

    caption = next(c.value for c in at.caption if c.value.startswith("Mean attention on the first token"))
    shown = [float(v) for v in re.findall(r"h\d+ ([0-9.]+)", caption)]
    hf_first = ref.attentions[5][0, :, :L, 0].mean(dim=-1).numpy()
    np.testing.assert_allclose(shown, hf_first, atol=0.0051)  # printed with 2 decimals


def test_model_page_empty_prompt_shows_error(smollm: Any) -> None:
    at = run_app("views/model.py", prompt="   ")
    assert not at.exception
    assert any("empty" in e.value for e in at.error), [e.value for e in at.error]
    assert not at.get("plotly_chart")


def test_unknown_model_shows_error_not_traceback(smollm: Any) -> None:
    at = run_app("views/model.py", model_spec="no-such-org/no-such-model-xyz")
    assert not at.exception
    assert any("no-such-org/no-such-model-xyz" in e.value for e in at.error), [e.value for e in at.error]


def test_corpus_sample_input(smollm: Any) -> None:
    at = run_app("views/model.py", source="corpus", corpus_n=2, corpus_len=20)
    assert_clean(at)
    (fig,) = figures(at)
    assert array(fig["data"][0]["z"]).shape == (20, 20)
    assert len(at.selectbox(key="seq").options) == 2


# --- Sinks page ------------------------------------------------------------------------------------


def test_sinks_page_matches_plain_torch(smollm: Any) -> None:
    from probes.sinks import inputs_for_regime

    at = run_app("views/sinks.py", sink_regime="natural", sink_n=4, sink_T=32, sink_seed=1)  # small
    assert_clean(at)
    ids = inputs_for_regime(smollm, "natural", 4, 32, seed=1, prepend_bos=None)
    alpha = key_importance(smollm, ids)
    sink1 = float(100 * (alpha[..., 0] > 0.3).float().mean())
    metric = next(m for m in at.metric if m.label.startswith("Sink_1"))
    assert abs(float(metric.value.rstrip(" %")) - sink1) <= 0.0051, (metric.value, sink1)

    figs = figures(at)
    assert len(figs) == 5, [f["layout"]["title"]["text"] for f in figs]  # grid, Sink_k, token view, alpha, pattern
    grid = array(next(f for f in figs if f["layout"]["title"]["text"].startswith("Attention on the first token"))
                 ["data"][0]["z"])
    np.testing.assert_allclose(grid, alpha[..., 0].mean(dim=0).numpy(), atol=1e-5)

    layer = int(at.number_input(key="sink_layer").value)
    bar = next(f for f in figures(at) if "alpha per key" in f["layout"]["title"]["text"])["data"][0]
    np.testing.assert_allclose(array(bar["y"]), alpha[0, layer, 0].numpy(), atol=1e-5)
    assert bar["customdata"][0]  # token strings in hover
    # hidden sinks (ACT, alpha > 0.1 at k >= 1, keys seen by >= 8 queries) are the red bars
    expected = {k for k in range(1, 32 - 8 + 1) if alpha[0, layer, 0, k] > 0.1}
    red = {k for k, c in enumerate(bar["marker"]["color"]) if c == "#C8443B"}
    assert red == expected


def test_sinks_page_rate_view(smollm: Any) -> None:
    at = run_app("views/sinks.py", sink_n=4, sink_T=32, sink_regime="random")
    at.radio(key="sink_view").set_value("rate").run()
    assert_clean(at)
    grid = array(figures(at)[0]["data"][0]["z"])
    assert grid.shape == (30, 9) and grid.min() >= 0 and grid.max() <= 100


# --- the other pages open ---------------------------------------------------------------------------


@pytest.mark.parametrize("page", OTHER_PAGES)
def test_other_pages_open_without_an_error(page: str) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page(page).run()
    assert not at.exception
    assert not at.error


# --- pages wired after their modules merged ---------------------------------------------------------


def test_extreme_page_resid_norms_match_capture(smollm: Any) -> None:
    from probes.model.capture import capture
    from probes.sinks import inputs_for_regime

    at = run_app("views/extreme.py", ext_regime="natural", ext_n=2, ext_T=16)
    assert_clean(at)
    ids = inputs_for_regime(smollm, "natural", 2, 16, seed=0)
    norms = capture(smollm, ids, what=["resid_post"])["resid_post"][0].norm(dim=-1)  # [layer, T]
    heat = next(f for f in figures(at) if f["layout"]["title"]["text"].startswith("Residual-state norm"))
    np.testing.assert_allclose(array(heat["data"][0]["z"]), np.log10(norms.numpy()), rtol=1e-4, atol=1e-4)


def test_dormant_page_renders(smollm: Any) -> None:
    at = run_app("views/dormant.py", dorm_n=2, dorm_T=16, dorm_top=2)
    assert_clean(at)
    assert len(figures(at)) == 1
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value) >= 2


# --- the command -------------------------------------------------------------------------------------


def test_app_command_flags() -> None:
    from app.cli import build_parser
    from app.commands.app import APP_PATH, streamlit_argv

    args = build_parser().parse_args(["app", "--port", "8765", "--model", "gemma3-270m"])
    argv = streamlit_argv(args)
    assert argv[:3] == ["streamlit", "run", str(APP_PATH)] and APP_PATH.is_file()
    assert argv[argv.index("--server.headless") + 1] == "true"
    assert argv[argv.index("--server.port") + 1] == "8765"
    assert argv[argv.index("--") + 1 :][:2] == ["--model", "gemma3-270m"]


def test_app_command_rejects_bad_port(capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main

    assert main(["app", "--port", "70000"]) == 2  # a usage error (docs/cli.md)
    err = capsys.readouterr().err
    assert "--port" in err and "70000" in err
