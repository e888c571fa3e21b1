"""load_model(device_map=...): accelerate places the model, the bridge wraps it, results match (docs/batch.md).

A second copy of smollm2-135m is loaded with an explicit dict map (every module on the CPU); its
logits and a batch probe's rows must equal those of the fixture model (atol 1e-5).
"""

from __future__ import annotations

import pytest
import torch

from app.batch.registry import get
from probes import load_model
from probes.corpus import sample


@pytest.mark.slow
def test_dict_device_map_matches_single_device(smollm):
    mapped = load_model("smollm2-135m", device_map={"": "cpu"})
    assert mapped is not smollm
    assert load_model("smollm2-135m", device_map={"": "cpu"}) is mapped  # cached per map
    tokens = smollm.to_tokens(["The days of the week are Monday, Tuesday, Wednesday,"])
    assert torch.allclose(mapped.forward(tokens), smollm.forward(tokens), atol=1e-5)
    corpus = sample("code", 2, 8, smollm.tokenizer, seed=0)
    settings = {"prepend_bos": False, "batch_size": 8, "min_query": 1}
    a = get("first_token_attention").run(mapped, settings, corpus, 0)
    b = get("first_token_attention").run(smollm, settings, corpus, 0)
    assert [r["value"] for r in a] == [r["value"] for r in b] or all(
        abs(x["value"] - y["value"]) < 1e-5 for x, y in zip(a, b, strict=True))
