"""AppTest runs of the app's bounds (docs/app.md): bounded input, pages that follow the sidebar, human error texts, and
sessions computing different pages at the same time on the one shared model.

Concurrency contract checked here: what a page shows while other sessions compute other pages equals,
exactly, what it shows when it runs alone (st.cache_data is cleared before each phase, so every phase
computes; the model itself is the shared `smollm` fixture, as `get_model` hands it to every session).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from app.ui.errors import human_message
from app.ui.inputs import MAX_PROMPT_CHARS, MAX_PROMPT_TOKENS, PATTERN_MAX_TOKENS
from tests.app.test_app_pages import APP, TIMEOUT, array, assert_clean, figures, key_importance

# --- bounded input ---------------------------------------------------------------------------------


def test_overlong_prompt_refused_before_any_run(smollm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    module = importlib.import_module("probes.model.capture")  # `probes.model.capture` is also the function's name
    calls: list[int] = []
    real = module.capture
    monkeypatch.setattr(module, "capture", lambda *a, **k: calls.append(1) or real(*a, **k))
    for text, says in (("word " * 4000, "characters"), (" x" * 3000, "tokens")):  # 20,000 chars; 3,000 tokens
        assert (len(text) > MAX_PROMPT_CHARS) == (says == "characters")
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.session_state["prompt"] = text
        at.run()
        at.switch_page("views/model.py").run()
        assert not at.exception
        errors = [e.value for e in at.error]
        assert any(says in e and "at most" in e for e in errors), errors
        assert not at.get("plotly_chart")
    assert not calls  # refused before the model ran


def test_model_page_caps_the_heatmap_and_offers_the_full_pattern(smollm: Any) -> None:
    from probes.model.capture import capture

    prompt = " ".join(["one two three four five six seven eight nine ten"] * 28)  # about 280 tokens
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["prompt"] = prompt
    at.session_state["layer"] = 2
    at.run()
    at.switch_page("views/model.py").run()
    assert_clean(at)
    T = smollm.to_tokens(prompt).ids.shape[1]
    assert PATTERN_MAX_TOKENS < T <= MAX_PROMPT_TOKENS
    (fig,) = figures(at)
    z = array(fig["data"][0]["z"])
    assert z.shape == (PATTERN_MAX_TOKENS, PATTERN_MAX_TOKENS)
    assert any(f"of {T}" in c.value and "download" in c.value for c in at.caption)
    assert sum(len(el.proto.spec) for el in at.get("plotly_chart")) < 20e6  # far below Streamlit's 200 MB
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Full pattern (NPY)" in labels and "Full pattern (CSV)" in labels

    at.number_input(key="pattern_start").set_value(20).run()  # another window of the same pattern
    z = array(figures(at)[0]["data"][0]["z"])
    expected = capture(smollm, prompt, what=["pattern"], layers=[2])["pattern"][0, 0, 0].numpy()
    window = expected[20 : 20 + PATTERN_MAX_TOKENS, 20 : 20 + PATTERN_MAX_TOKENS]
    lower = np.tril(np.ones_like(window, dtype=bool))
    np.testing.assert_allclose(z[lower], window[lower], atol=1e-6)
    assert np.isnan(z[~lower]).all()


# --- pages follow the sidebar input ------------------------------------------------------------------


def sinks_for_prompt(prompt: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["prompt"] = prompt
    at.run()
    at.switch_page("views/sinks.py").run()
    assert_clean(at)
    return at


def test_sinks_page_reads_the_sidebar_prompt(smollm: Any) -> None:
    prompts = ["The days of the week are Monday, Tuesday, Wednesday,", "def add(a, b):\n    return a + b\n\nprint(add"]
    grids = []
    for prompt in prompts:
        at = sinks_for_prompt(prompt)
        ids = smollm.to_tokens(prompt).ids
        assert any("the sidebar prompt" in c.value and f"{ids.shape[1]} tokens" in c.value for c in at.caption)
        alpha = key_importance(smollm, ids)
        grid = array(next(f for f in figures(at) if f["layout"]["title"]["text"].startswith("Attention on the first"))
                     ["data"][0]["z"])
        np.testing.assert_allclose(grid, alpha[..., 0].mean(dim=0).numpy(), atol=1e-5)
        bars = next(f for f in figures(at) if "alpha per key" in f["layout"]["title"]["text"])["data"][0]
        assert len(array(bars["y"])) == ids.shape[1]
        grids.append(grid)
    assert not np.allclose(grids[0], grids[1])  # another prompt, another picture


def test_error_texts_are_human() -> None:
    assert human_message("Prompt 0 is empty. Give each prompt at least one non-space character.") == \
        "The prompt is empty: type some text in the sidebar's Prompt box."
    assert human_message("'x y' is 2 tokens (['x', ' y']), not one") == "'x y' is 2 tokens ('x' + ' y'), not one"
    assert human_message("Need n >= 1 sequences [ok]") == "Need n >= 1 sequences [ok]"


def test_empty_prompt_error_has_no_internal_index(smollm: Any) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["prompt"] = "  \n "
    at.run()
    at.switch_page("views/model.py").run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors and all("Prompt 0" not in e and "[" not in e for e in errors), errors
    assert any("The prompt is empty" in e for e in errors)


# --- two sessions at once ----------------------------------------------------------------------------

SESSIONS: list[tuple[str, dict[str, Any]]] = [
    ("views/sinks.py", {"sink_regime": "natural", "sink_n": 3, "sink_T": 24, "sink_seed": 2}),
    ("views/extreme.py", {"ext_regime": "random", "ext_n": 2, "ext_T": 20}),
    ("views/dormant.py", {"dorm_n": 2, "dorm_T": 16, "dorm_top": 2}),
    ("views/model.py", {"prompt": "One, two, three, four, five, six,", "layer": 4, "head": 1}),
]


def shown_numbers(at: AppTest) -> dict[str, Any]:
    """Everything numeric a page shows: figure data, metrics, tables."""
    return {"figures": [json.loads(el.proto.spec)["data"] for el in at.get("plotly_chart")],
            "metrics": [(m.label, m.value) for m in at.metric],
            "tables": [d.value.to_json() for d in at.dataframe]}


def open_page(page: str, state: dict[str, Any], barrier: threading.Barrier | None = None,
              spans: dict[str, tuple[float, float]] | None = None) -> dict[str, Any]:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    page_test = at.switch_page(page)
    if barrier is not None:
        barrier.wait(timeout=TIMEOUT)
    started = time.monotonic()
    page_test.run()
    if spans is not None:
        spans[page] = (started, time.monotonic())
    assert_clean(at)
    return shown_numbers(at)


def concurrent_round() -> dict[str, Any]:
    """Every session of SESSIONS at once (released together by a barrier); checks that the runs overlapped."""
    barrier = threading.Barrier(len(SESSIONS))
    spans: dict[str, tuple[float, float]] = {}
    results: dict[str, Any] = {}
    failures: list[BaseException] = []

    def run(page: str, state: dict[str, Any]) -> None:
        try:
            results[page] = open_page(page, state, barrier, spans)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=item, name=item[0]) for item in SESSIONS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=TIMEOUT)
    assert not failures, failures
    assert max(s for s, _ in spans.values()) < min(e for _, e in spans.values())  # the runs overlapped
    return results


@pytest.fixture
def one_compile_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Page scripts compiled one at a time across AppTest sessions.

    Each AppTest has its own ScriptCache (and its own lock), so sessions started together call
    ast.parse / compile (Streamlit's magic pass) from several threads at once, which CPython 3.11 can
    fail with "AST constructor recursion depth mismatch". The app's server has one ScriptCache whose
    lock already serializes this, so the lock here only makes the test harness match the server.
    """
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache

    lock = threading.Lock()
    real = ScriptCache.get_bytecode

    def locked(self: Any, script_path: str) -> Any:
        with lock:
            return real(self, script_path)

    monkeypatch.setattr(ScriptCache, "get_bytecode", locked)


@pytest.mark.usefixtures("one_compile_at_a_time")
def test_sessions_computing_different_pages_at_once_match_serial_runs(smollm: Any) -> None:
    st.cache_data.clear()
    serial = {page: open_page(page, state) for page, state in SESSIONS}
    assert all(serial[page]["figures"] for page, _ in SESSIONS)
    for _ in range(2):
        st.cache_data.clear()  # every session computes again, now all at the same time
        results = concurrent_round()
        for page, _ in SESSIONS:
            assert results[page] == serial[page], f"{page} differs from its serial run"


def test_interrupted_run_is_not_cached(smollm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sink run stopped halfway (st.stop at its progress update, as a rerun or Stop does) leaves no cache
    entry: the next run of the same input computes for real."""
    import importlib

    sinks = importlib.import_module("probes.sinks")
    real = sinks.compute_sinks
    calls: list[str] = []

    def stopped(*args: Any, reporter: Any = None, **kwargs: Any) -> Any:
        calls.append("stopped")
        reporter.update("batch 1 of 2", 1, 2)
        st.stop()

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append("real")
        return real(*args, **kwargs)

    st.cache_data.clear()
    monkeypatch.setattr(sinks, "compute_sinks", stopped)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["prompt"] = "A cat sat on the mat, and then"
    at.run()  # the default page: Attention sinks on the sidebar prompt
    assert not at.exception and not at.metric
    monkeypatch.setattr(sinks, "compute_sinks", counted)
    at.run()
    assert_clean(at)
    assert calls == ["stopped", "real"]
    assert any(m.label.startswith("Sink_1") for m in at.metric)
