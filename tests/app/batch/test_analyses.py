"""The analyses registered as batch probes give the same numbers as the analyses called directly."""

from __future__ import annotations

import pytest
import torch

from app.batch import registry
from probes.corpus import sample
from probes.sinks import compute_sinks


def test_sinks_rows_match_compute_sinks(smollm):
    corpus = sample("prose", 3, 16, smollm, seed=0)
    entry = registry.get("sinks")
    rows = entry.run(smollm, {**entry.defaults(), "eps": 0.3}, corpus, 0)
    direct = compute_sinks(smollm, corpus.ids, eps=0.3)
    sink1 = [r["value"] for r in rows if r["metric"] == "sink1"]
    assert sink1 == [pytest.approx(direct.sink1)]
    rates = torch.tensor([r["value"] for r in rows if r["metric"] == "sink_rate"])
    assert torch.allclose(rates, direct.sink_rate.double().float())
    # independent check of the headline: threshold alpha[..., 0] per (sample, layer, head), then average
    assert sink1[0] == pytest.approx(100 * (direct.alpha[..., 0] > 0.3).float().mean().item())
    heads = [r for r in rows if r["metric"] == "head_sink_rate"]
    assert len(heads) == 30 * 9


def test_plan_rejects_bad_sinks_setting():
    problems = registry.get("sinks").check_settings({"eps": "high", "nope": 1})
    assert any("eps" in p for p in problems) and any("nope" in p for p in problems)
