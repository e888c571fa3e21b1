"""AppTest runs of the pages wired after their modules merged: Successor heads, BB lab, Circuits, SAEs.

Each happy path checks a number the page shows against an independent computation (a plain-torch
loop over the canonical weights, a hand-written attention), and each page gets one bad input that
must show st.error (a GlasshouseError), never a traceback. Helpers come from test_app_pages.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests.app.test_app_pages import APP, TIMEOUT, array, assert_clean, figures


def run_page(page: str, title: str, **state: Any) -> AppTest:
    """Run the app, then open `page`, with widget values set through session_state; checks the page that
    ran is the one asked for. The first run draws the default Sinks page, kept tiny here (1 x 4 tokens)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in {"sink_n": 1, "sink_T": 4, **state}.items():
        at.session_state[key] = value
    at.run()
    at.switch_page(page).run()
    assert at.title and at.title[0].value == title, [t.value for t in at.title]
    return at

# --- Successor heads ---------------------------------------------------------------------------------


def plain_ov_logits(model: Any, layer: int, head: int, token_ids: list[int]) -> torch.Tensor:
    """W_U . W_OV . MLP0(W_E[t]) with no norms (norm="none"), SwiGLU MLP0 written out: [n_src, vocab]."""
    x = model.W_E[token_ids].float()
    gate, up, down = model.W_gate[0].float(), model.W_in[0].float(), model.W_out[0].float()
    mlp0 = (torch.nn.functional.silu(x @ gate) * (x @ up)) @ down
    out = mlp0 @ model.W_V[layer, head].float() @ model.W_O[layer, head].float()
    return out @ model.W_U.float()


def single_tokens(model: Any, words: list[str]) -> list[tuple[str, int]]:
    """(text, id) of the words (with a leading space) that the tokenizer keeps as one token."""
    tok = model.tokenizer
    kept = []
    for w in words:
        ids = tok(" " + w, add_special_tokens=False).input_ids
        if len(ids) == 1:
            kept.append((" " + w, int(ids[0])))
    return kept


def test_successor_page_matches_plain_torch(smollm: Any) -> None:
    layer, head = 23, 3
    at = run_page("pages/successor.py", "Successor heads", succ_norm="none", succ_layer=layer, succ_head=head, succ_token=" March")
    assert_clean(at)
    model = smollm
    assert model.W_gate is not None  # SmolLM2's MLP is SwiGLU

    # per-task accuracy of the chosen head: a plain loop over the days and months pairs (cyclic)
    days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
              "November", "December"]
    shown = next(d.value for d in at.dataframe if "accuracy" in d.value.columns).set_index("task")
    for name, words in (("days", days), ("months", months)):
        kept = single_tokens(model, words)
        assert len(kept) == len(words)  # SmolLM2 keeps every full day and month name whole
        ids = [i for _, i in kept]
        logits = plain_ov_logits(model, layer, head, ids)[:, ids]
        hits = 0
        for a in range(len(ids)):
            b = (a + 1) % len(ids)
            hits += int(int(torch.argmax(logits[a])) == b)
        assert shown.loc[name, "accuracy"] == pytest.approx(hits / len(ids), abs=1e-6), name
        assert shown.loc[name, "chance"] == pytest.approx(1 / len(ids), abs=1e-9)

    # the typed token's top predictions over the whole vocabulary
    (march,) = single_tokens(model, ["March"])
    expected = plain_ov_logits(model, layer, head, [march[1]])[0]
    top = torch.topk(expected, 15)
    pred = next(d.value for d in at.dataframe if "logit" in d.value.columns)
    assert pred["token_id"].tolist() == top.indices.tolist()
    np.testing.assert_allclose(pred["logit"].to_numpy(), top.values.numpy(), rtol=1e-4, atol=1e-3)
    bar = next(f for f in figures(at) if "promotes" in f["layout"]["title"]["text"])["data"][0]
    np.testing.assert_allclose(array(bar["x"]), top.values.numpy(), rtol=1e-4, atol=1e-3)

    heat = next(f for f in figures(at) if f["layout"]["title"]["text"].startswith("Successor score per head"))
    z = array(heat["data"][0]["z"])
    assert z.shape == (30, 9)
    assert "days:" in heat["data"][0]["text"][layer][head]  # hover lists every task's value


def test_successor_page_rejects_multi_token_input(smollm: Any) -> None:
    at = run_page("pages/successor.py", "Successor heads", succ_token=" Mondayish stuff")
    assert not at.exception
    assert any("not one" in e.value and "single token" in e.value for e in at.error), [e.value for e in at.error]
    assert not [d for d in at.dataframe if "logit" in d.value.columns]  # no prediction table for bad input
    assert isinstance(at.dataframe[0].value, pd.DataFrame)  # the page above the error still rendered
