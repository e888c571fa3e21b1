"""Token strings and "<s>" reach plotly escaped: plotly reads tags in titles, ticks and hover text."""

from __future__ import annotations

import json

from app.figures.bb import sink_by_position_figure, sink_formation_figure, token_attention_figure
from app.figures.theme import token_label


def test_token_label_escapes_and_shows_whitespace():
    assert token_label("<bos>") == "&lt;bos&gt;"
    assert token_label("<s>") == "&lt;s&gt;"
    assert token_label(" a&b\n") == "␣a&amp;b↵"


def _all_text(fig) -> str:
    return json.dumps(fig.to_plotly_json())


def test_bb_figures_carry_no_raw_s_tag():
    rows = [{"step": s, "attn_sink_nontrigger": [0.1 * s], "attn_sink_trigger": [0.0], "value_norm_sink": [1.0],
             "value_norm_others": [2.0], "resid_norm_sink": [3.0], "resid_norm_others": [1.0], "backcopy_risk": 1.0,
             "bigram_risk": 0.5} for s in (0, 1)]
    figures = [sink_formation_figure({"softmax+adamw": rows}),
               sink_by_position_figure({"run": {"1-4": 0.9, "4-8": 0.5}}),
               token_attention_figure({"<": 0.2, " ": 0.95, "a": 0.5}, triggers=[" "],
                                      title="Attention on <s> per query token")]
    for fig in figures:
        text = _all_text(fig)
        assert "<s>" not in text and "&lt;s&gt;" in text
    bars = figures[2].data[0]
    assert list(bars.x) == ["&lt;", "␣", "a"] and list(bars.y) == [0.2, 0.95, 0.5]
