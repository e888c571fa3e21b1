"""The Declared analyses page (app/views/declared.py): controls generated from a declaration, numbers that match
an independent computation (eager patterns from capture, 1e-4 absolute), and a bad value refused by the
declared range with the page's error, not a traceback."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from probes.model.capture import capture
from tests.app.test_app_pages import assert_clean, figures, run_app

PROMPT = "The days of the week are Monday, Tuesday, Wednesday, Thursday and Friday."


def test_first_token_attention_on_the_page_matches_eager_patterns(smollm: Any) -> None:
    at = run_app("views/declared.py", prompt=PROMPT, source="prompt", declared_name="first_token_attention",
                 declared_first_token_attention_min_query=2)
    assert_clean(at)
    assert {w.label for w in at.number_input} >= {"batch_size", "min_query"}  # generated from the settings
    assert [c.label for c in at.checkbox if c.label == "prepend_bos"] == ["prepend_bos"]
    (fig,) = figures(at)
    assert "first token" in fig["layout"]["title"]["text"]
    rows = at.dataframe[0].value
    pattern = capture(smollm, [PROMPT], what=["pattern"])["pattern"][0]  # [layer, head, q, k], eager
    expected = pattern[..., 2:, 0].double().mean(dim=-1)
    got = torch.tensor(np.stack([rows["layer"], rows["head"]], axis=1).astype(int))
    values = torch.tensor(rows["value"].to_numpy())
    assert len(values) == expected.numel()
    assert torch.allclose(values, expected[got[:, 0], got[:, 1]], atol=1e-4)


def test_a_value_out_of_the_declared_range_is_refused(smollm: Any) -> None:
    at = run_app("views/declared.py", prompt="one two three", source="prompt", declared_name="first_token_attention",
                 declared_first_token_attention_min_query=40)
    assert not at.exception
    assert any("min_query" in e.value and "lower it" in e.value for e in at.error), [e.value for e in at.error]


def test_a_report_on_the_page_draws_its_documents_figures(smollm: Any) -> None:
    """The sinks report (a declared report with its own saved document) on the page: its controls come from its
    settings (a text box for the regimes), its figures are the `glasshouse sinks` ones, and the Sink_1 it shows
    equals probes.sinks.compute_sinks on the same repeated-token inputs (an independent call, exact)."""
    from probes.sinks import compute_sinks, inputs_for_regime

    at = run_app("views/declared.py", prompt="one two three", source="prompt", declared_name="sinks_report",
                 declared_sinks_report_n=2, declared_sinks_report_seq_len=12, declared_sinks_report_regimes="repeat")
    assert_clean(at)
    assert "regimes" in {w.label for w in at.text_input}
    titles = [fig["layout"]["title"]["text"] for fig in figures(at)]
    assert any("Sink" in t for t in titles), titles
    rows = at.dataframe[0].value
    shown = float(rows[rows["metric"] == "sink1_repeat"]["value"].iloc[0])
    ids = inputs_for_regime(smollm, "repeat", 2, 12, seed=0, prepend_bos=False)
    assert shown == compute_sinks(smollm, ids, regime="repeat").sink1
