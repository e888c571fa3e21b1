"""Accuracy (probes/accuracy.py) against a hand loop over the HF model's logits, and ZeroTuning's sweeps
(probes/zerotuning.py) against single runs. SmolLM2, fp32, CPU."""

from __future__ import annotations

import math

import pytest
import torch

from probes.accuracy import score_task, wilson_interval
from probes.errors import InputError
from probes.hidden_sinks import scaling_edits
from probes.tasks import load_task
from probes.tasks.format import TaskSet, examples_from
from probes.zerotuning import head_sweep, layer_sweep, tune_heads


def _hf_logprobs(model, prompt: str, continuation: str) -> torch.Tensor:
    """Plain loop: the HF module on prompt + continuation ids, log-softmax, the continuation's tokens."""
    p = model.tokenizer(prompt).input_ids
    c = model.tokenizer(continuation, add_special_tokens=False).input_ids
    with torch.no_grad():
        logits = model.hf_model(input_ids=torch.tensor([p + c])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return torch.stack([logp[len(p) - 1 + j, t] for j, t in enumerate(c)])


@pytest.fixture(scope="module")
def capitals():
    return load_task("capitals", n=12, seed=1)


@pytest.mark.parametrize("normalize", [False, True])
def test_multiple_choice_accuracy_equals_a_hand_loop(smollm, capitals, normalize):
    got = score_task(smollm, capitals, "all", normalize=normalize)
    correct = 0
    for ex, row in zip(capitals.examples, got.examples, strict=True):
        scores = {}
        for choice in ex.choices:
            lp = _hf_logprobs(smollm, ex.prompt, choice)
            scores[choice] = float(lp.mean() if normalize else lp.sum())
            assert row["scores"][choice] == pytest.approx(scores[choice], abs=1e-4)
        correct += max(ex.choices, key=lambda c: scores[c]) == ex.answer
    assert got.correct == correct and got.accuracy == correct / len(capitals.examples)
    assert got.ci_low <= got.accuracy <= got.ci_high


def test_next_token_accuracy_equals_greedy_by_hand(smollm):
    task = TaskSet("t", examples_from([{"prompt": "one, two, three,", "answer": " four"},
                                       {"prompt": "one, two, three,", "answer": " five"},
                                       {"prompt": "Monday, Tuesday,", "answer": " Wednesday, Thursday"}], "t"))
    got = score_task(smollm, task, "all")
    for ex, row in zip(task.examples, got.examples, strict=True):
        p = smollm.tokenizer(ex.prompt).input_ids
        c = smollm.tokenizer(ex.answer, add_special_tokens=False).input_ids
        with torch.no_grad():
            logits = smollm.hf_model(input_ids=torch.tensor([p + c])).logits[0]
        greedy = [int(logits[len(p) - 1 + j].argmax()) for j in range(len(c))]
        assert row["correct"] == (greedy == c)
    assert [r["correct"] for r in got.examples][:2] == [True, False]  # " four" follows; " five" does not


def test_wilson_interval_hand_worked():
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)  # textbook values for 8 of 10
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    with pytest.raises(InputError):
        wilson_interval(0, 0)


def test_gamma_one_is_no_intervention_exactly(smollm, capitals):
    every = [(layer, h) for layer in range(smollm.facts.n_layers) for h in range(smollm.facts.n_heads)]
    plain = score_task(smollm, capitals, "all")
    same = score_task(smollm, capitals, "all", edits=scaling_edits(smollm, every, 1.0))
    assert same.examples == plain.examples and same.metadata["settings"]["attention"] == "sdpa"
    moved = score_task(smollm, capitals, "all", edits=scaling_edits(smollm, every, 0.2))
    assert moved.examples != plain.examples  # the comparison can fail


def test_scaling_another_position_equals_its_pattern_form(smollm, capitals):
    edits = scaling_edits(smollm, [(2, 1), (5, 3)], 3.0, key=1)
    fast = score_task(smollm, capitals, "all", edits=edits)
    slow = score_task(smollm, capitals, "all", edits=edits, attention="patterns")
    for a, b in zip(fast.examples, slow.examples, strict=True):
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-4)
    assert slow.metadata["settings"]["attention"] == "eager"


def test_sweep_cells_equal_single_runs(smollm, capitals):
    layers = layer_sweep(smollm, capitals, gammas=(0.5, 2.0), layers=[0, 3])
    dev = capitals.split("dev")
    heads = range(smollm.facts.n_heads)
    for li, layer in enumerate((0, 3)):
        for gi, g in enumerate((0.5, 2.0)):
            single = score_task(smollm, capitals, "dev", edits=scaling_edits(smollm, [(layer, h) for h in heads], g))
            assert layers.accuracy[li][gi] == single.accuracy
    assert layers.baseline == score_task(smollm, capitals, "dev").accuracy and layers.n == len(dev)
    assert layers.best()[2] == max(max(row) for row in layers.accuracy)


def test_head_sweep_and_tuning(smollm, capitals):
    sweep = head_sweep(smollm, capitals, 0.2, layers=[4, 5])
    f = smollm.facts
    assert len(sweep.change) == f.n_layers and len(sweep.change[0]) == f.n_heads
    for layer, head in ((4, 2), (5, 7)):
        one = score_task(smollm, capitals, "dev", edits=scaling_edits(smollm, [(layer, head)], 0.2)).accuracy
        assert sweep.change[layer][head] == pytest.approx(one - sweep.baseline)
    assert sweep.metadata["settings"]["layers"] == [4, 5] and not any(sweep.change[0])
    tuned = tune_heads(smollm, capitals, 0.2, top=3, layers=[4, 5])
    assert len(tuned.heads) <= 3 and all(sweep.change[la][h] > 0 for la, h in tuned.heads)
    assert tuned.before.accuracy == score_task(smollm, capitals, "test").accuracy
    assert not math.isnan(tuned.after.accuracy)


def test_sweep_arguments_are_checked(smollm, capitals):
    with pytest.raises(InputError, match="gamma must be positive"):
        layer_sweep(smollm, capitals, gammas=(0.0,), layers=[0])
    with pytest.raises(InputError, match="Layer 99 is out of range"):
        layer_sweep(smollm, capitals, layers=[99])
    with pytest.raises(InputError, match="Unknown split"):
        score_task(smollm, capitals, "validation")
