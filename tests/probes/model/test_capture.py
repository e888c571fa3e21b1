"""capture(): shapes, padding, selection, and the memory budget."""

from __future__ import annotations

import pytest
import torch

from probes import BudgetError, InputError, capture
from probes.model.capture import estimate_capture_bytes

PROMPTS = ["The cat sat on the mat and looked out of the window.", "Dogs bark.", "A much longer sentence follows here."]


def test_shapes_and_selection(smollm):
    r = capture(smollm, PROMPTS, what=["pattern", "resid_post", "k", "head_out", "logits"], layers=[2, 5], heads=[1, 8])
    n, t = r.tokens.ids.shape
    assert r["pattern"].shape == (3, 2, 2, t, t)
    assert r["resid_post"].shape == (3, 2, t, 576)
    assert r["k"].shape == (3, 2, t, 2, 64)
    assert r["head_out"].shape == (3, 2, t, 2, 576)
    assert r["logits"].shape == (3, t, 49152)
    assert r.layers == [2, 5] and r.heads == [1, 8]
    assert r.sources["k"] == "attn.hook_rot_k"


def test_padded_batch_equals_single_prompts(smollm):
    batched = capture(smollm, PROMPTS, what=["resid_post", "pattern"], layers=[3], batch_size=3)
    for i, prompt in enumerate(PROMPTS):
        single = capture(smollm, prompt, what=["resid_post", "pattern"], layers=[3])
        n = single.tokens.ids.shape[1]
        assert batched.tokens.lengths[i] == n
        assert torch.allclose(batched["resid_post"][i, :, :n], single["resid_post"][0], atol=1e-4)
        assert torch.allclose(batched["pattern"][i, :, :, :n, :n], single["pattern"][0], atol=1e-5)


def test_batch_size_does_not_change_results(smollm):
    a = capture(smollm, PROMPTS, what=["mlp_out"], layers=[0], batch_size=1)
    b = capture(smollm, PROMPTS, what=["mlp_out"], layers=[0], batch_size=2)
    mask = a.mask.bool()
    assert torch.allclose(a["mlp_out"][:, 0][mask], b["mlp_out"][:, 0][mask], atol=1e-4)


def test_grouped_kv_expanded_per_query_head(smollm):
    r = capture(smollm, PROMPTS[0], what=["v"], layers=[1])
    v = r["v"][0, 0]  # [pos, head, d_head]
    assert torch.equal(v[:, 0], v[:, 2]) and torch.equal(v[:, 3], v[:, 5])
    assert not torch.equal(v[:, 2], v[:, 3])


def test_budget_refuses_before_running(smollm):
    with pytest.raises(BudgetError) as err:
        capture(smollm, PROMPTS, what=["pattern"], budget_bytes=10_000)
    message = str(err.value)
    assert "needs about" in message and "budget is" in message and "Reduce it" in message
    sizes = estimate_capture_bytes(smollm, 3, 12, ["pattern"], 30, 9, 8)
    assert sizes["pattern"] == 3 * 30 * 9 * 12 * 12 * 4


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"what": ["attention"]}, "Unknown capture target"),
        ({"layers": [30]}, "out of range"),
        ({"heads": [9]}, "out of range"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments(smollm, kwargs, words):
    with pytest.raises(InputError, match=words):
        capture(smollm, "Hello there", **kwargs)


def test_missing_target_names_what_was_captured(smollm):
    r = capture(smollm, "Hello there", what=["resid_pre"], layers=[0])
    with pytest.raises(InputError, match="was not captured"):
        r["pattern"]
