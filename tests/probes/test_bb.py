"""Tests of the Bigram-Backcopy lab (spec: extreme-tokens.md, "The Bigram-Backcopy (BB) task")."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.bb.checkpoint import MARKER, load_checkpoint, save_checkpoint
from probes.bb.data import BOS_ID, BBTask, estimate_task, generate, oracle_probs, prose_task, split
from probes.bb.measure import measure
from probes.bb.model import BBConfig, BBModel
from probes.bb.train import TrainSettings, read_metrics, train
from probes.errors import CheckpointError, InputError, ModelLoadError

SMALL_TEXT = ("the cat sat on the mat; then the dog ate the hat. " * 4) + "".join(chr(65 + i) for i in range(26))


@pytest.fixture(scope="module")
def small_task() -> BBTask:
    return estimate_task([SMALL_TEXT], n_chars=30)


@pytest.fixture(scope="module")
def task() -> BBTask:
    return prose_task()


# --- generator ------------------------------------------------------------------------------------


def test_prose_task_vocabulary(task):
    assert task.vocab_size == 66 and task.vocab[0] == "<s>"
    assert [task.vocab[t] for t in task.triggers] == [" ", "e", "t"]
    assert np.allclose(task.transition[1:].sum(axis=1), 1.0) and task.unigram.sum() == pytest.approx(1.0)
    assert task.transition[:, BOS_ID].sum() == 0.0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), step=st.integers(0, 10**6), batch=st.integers(1, 6), length=st.integers(3, 80))
def test_generator_backcopies_after_every_trigger(task, seed, step, batch, length):
    seq = generate(task, batch, seed, step, length=length)
    assert seq.shape == (batch, length)
    assert (seq[:, 0] == BOS_ID).all() and (seq[:, 1:] != BOS_ID).all()
    assert not task.is_trigger(seq[:, 1]).any()  # x1 ~ unigram without triggers
    inputs, targets = split(seq)
    after = task.is_trigger(inputs)
    after[:, 0] = False
    two_back = torch.roll(inputs, 1, dims=1)
    assert torch.equal(targets[after], two_back[after])
    assert torch.equal(generate(task, batch, seed, step, length=length), seq)  # a function of (seed, step)


def test_generator_follows_the_bigram(task):
    """Non-trigger transitions occur with the estimated bigram frequencies (binomial tolerance)."""
    seq = generate(task, 256, 0, 0)
    prev, nxt = seq[:, 1:-1].flatten(), seq[:, 2:].flatten()
    a = task.chars.index("a") + 1
    mask = prev == a
    u = task.chars.index("n") + 1  # "an" is a common pair
    n = int(mask.sum())
    p = task.transition[a, u]
    assert n > 300 and abs(float((nxt[mask] == u).float().mean()) - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-9


def test_bigram_estimation_hand_worked():
    # counts: b 5, a 3, c 2, '#' 1 -> vocabulary (b, a, c); '#' is removed and splits "a#bc" into "a", "bc".
    t = estimate_task(["abcab", "a#bc", "bb"], n_chars=3, n_triggers=1)
    assert t.chars == ("b", "a", "c") and t.triggers == (1,)
    b, a, c = 1, 2, 3
    assert t.unigram.tolist() == pytest.approx([0, 0.5, 0.3, 0.2])
    assert t.transition[b, c] == pytest.approx(2 / 3) and t.transition[b, b] == pytest.approx(1 / 3)
    assert t.transition[a, b] == pytest.approx(1.0) and t.transition[c, a] == pytest.approx(1.0)
    assert t.first_token_probs.tolist() == pytest.approx([0, 0, 0.6, 0.4])


def test_oracle_hand_worked():
    t = estimate_task(["abcab", "a#bc", "bb"], n_chars=3, n_triggers=1)  # trigger: b (id 1)
    inputs = torch.tensor([[0, 2, 1, 2, 3]])  # <s> a b a c
    probs = oracle_probs(t, inputs)
    assert probs[0, 0].tolist() == pytest.approx([0, 0, 0.6, 0.4])  # x1's law
    assert probs[0, 1].tolist() == pytest.approx([0, 1, 0, 0])  # after a: P(.|a) = b
    assert probs[0, 2].tolist() == pytest.approx([0, 0, 1, 0])  # after trigger b: copy a (two back)
    assert probs[0, 4].tolist() == pytest.approx([0, 0, 1, 0])  # after c: P(.|c) = a


def test_bad_task_inputs():
    with pytest.raises(InputError, match="distinct characters"):
        estimate_task(["ab"], n_chars=65)
    with pytest.raises(InputError, match="batch"):
        generate(estimate_task(["abcab", "bb"], n_chars=3, n_triggers=1), 0, 0, 0)


# --- model ------------------------------------------------------------------------------------------


def test_model_architecture(small_task):
    cfg = BBConfig(vocab_size=small_task.vocab_size, d_model=32, n_layers=3, n_ctx=40)
    model = BBModel(cfg)
    blk = model.blocks[0]
    assert all(getattr(blk, n).bias is None for n in ("q", "k", "v", "o", "fc1", "fc2"))
    assert blk.fc1.weight.shape == (4 * 32, 32) and model.unembed.bias is None
    assert model.unembed.weight.data_ptr() != model.embed.weight.data_ptr()
    assert model.pos.weight.shape == (40, 32) and len(model.blocks) == 3
    ids = generate(small_task, 2, 0, 0, length=41)[:, :-1]
    logits, inner = model.run_with_internals(ids)
    assert logits.shape == (2, 40, small_task.vocab_size)
    assert inner["pattern"].shape == (3, 2, 1, 40, 40) and inner["resid_post"].shape == (3, 2, 40, 32)
    # pre-LN attention scaled by 1/sqrt(d_head), computed by hand for block 0
    x = model.embed(ids) + model.pos.weight[:40]
    h = torch.nn.functional.layer_norm(x, (32,), blk.ln1.weight, blk.ln1.bias)
    scores = (h @ blk.q.weight.T) @ (h @ blk.k.weight.T).transpose(1, 2) / math.sqrt(32)
    scores = scores.masked_fill(torch.ones(40, 40).triu(1).bool(), float("-inf"))
    torch.testing.assert_close(inner["pattern"][0, :, 0], scores.softmax(-1), atol=1e-6, rtol=1e-5)


def test_relu_attention_by_hand(small_task):
    model = BBModel(BBConfig(vocab_size=small_task.vocab_size, d_model=16, n_ctx=8, attention="relu"))
    ids = generate(small_task, 1, 0, 0, length=9)[:, :-1]
    h = model.blocks[0].ln1(model.embed(ids) + model.pos.weight[:8])
    q, k = model.blocks[0].q(h)[0].detach(), model.blocks[0].k(h)[0].detach()
    pattern = model.run_with_internals(ids)[1]["pattern"][0, 0, 0].detach()
    for i in range(8):
        for j in range(8):
            want = max(float(q[i] @ k[j]) / 4.0, 0.0) / (i + 1) if j <= i else 0.0
            assert float(pattern[i, j]) == pytest.approx(want, abs=1e-6)


def test_bad_names():
    with pytest.raises(InputError, match="optimizer"):
        TrainSettings(optimizer="adam")
    with pytest.raises(InputError, match="attention"):
        TrainSettings(attention="linear")
    with pytest.raises(InputError, match="attention"):
        BBConfig(attention="sigmoid")
    with pytest.raises(InputError, match="preset"):
        TrainSettings.from_preset("gpu")
    from app.cli import main

    assert main(["bb", "train", "--optimizer", "lion", "--steps", "1"]) == 2  # a usage error (docs/cli.md)


def test_presets():
    spec = TrainSettings.from_preset("spec")
    assert (spec.d_model, spec.seq_len, spec.batch, spec.steps) == (256, 257, 512, 10_000)  # the spec's run
    cpu = TrainSettings.from_preset("cpu", steps=50, lr=None)
    assert (cpu.d_model, cpu.seq_len, cpu.batch, cpu.steps) == (64, 65, 512, 50)
    assert TrainSettings() == TrainSettings.from_preset("cpu")


# --- checkpoints --------------------------------------------------------------------------------------


def _perturbed(cfg: BBConfig) -> BBModel:
    torch.manual_seed(1)
    model = BBModel(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))  # move LayerNorm biases etc. away from their defaults
    return model.eval()


def test_checkpoint_loads_with_load_model(small_task, tmp_path):
    from probes import load_model

    model = _perturbed(BBConfig(vocab_size=small_task.vocab_size, d_model=32, n_layers=2, n_ctx=48))
    folder = save_checkpoint(tmp_path / "ck", model, small_task, 7, {"note": "test"})
    hooked = load_model(str(folder), device="cpu")
    assert hooked.facts.family == "opt" and hooked.facts.n_layers == 2 and hooked.facts.d_vocab == small_task.vocab_size
    assert hooked.to_str_tokens("the cat") == ["<s>", "t", "h", "e", " ", "c", "a", "t"]
    x, y = split(generate(small_task, 3, 0, 0, length=49))
    with torch.no_grad():
        ref, inner = model.run_with_internals(x)
    torch.testing.assert_close(hooked.forward(x), ref, atol=1e-5, rtol=1e-5)
    _, cache = hooked.run_with_cache(x)
    for layer in range(2):  # the bridge's patterns and residuals equal the lab module's
        torch.testing.assert_close(cache[f"blocks.{layer}.attn.hook_pattern"], inner["pattern"][layer], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(cache[f"blocks.{layer}.hook_resid_post"], inner["resid_post"][layer], atol=1e-5, rtol=1e-5)
    # measure()'s sink attention, recomputed from the bridge's pattern
    m = measure(model, small_task, x, y)
    trig = small_task.is_trigger(x)
    trig[:, 0] = False
    later = torch.ones_like(trig)
    later[:, 0] = False
    sink = cache["blocks.1.attn.hook_pattern"][:, 0, :, 0]
    assert m.attn_sink_trigger[1] == pytest.approx(float(sink[trig].mean()), abs=1e-6)
    assert m.attn_sink_nontrigger[1] == pytest.approx(float(sink[~trig & later].mean()), abs=1e-6)
    # logit gap and attention on <s> by position, by loops over the bridge's pattern (OPT's bridge has no
    # logits; log-probabilities have the same gaps, the log-normalizer cancels)
    scores = cache["blocks.1.attn.hook_pattern"][:, 0].log()
    gaps, bins = [], {}
    for b in range(x.shape[0]):
        for i in range(1, x.shape[1]):
            if trig[b, i]:
                continue
            gaps.append(float(scores[b, i, 0]) - sum(float(scores[b, i, j]) for j in range(1, i + 1)) / i)
            lo = 1 if i < 4 else 2 ** (i.bit_length() - 1)
            bins.setdefault(f"{lo}-{min(max(4, 2 * lo), x.shape[1])}", []).append(float(sink[b, i]))
    assert m.logit_gap_nontrigger[1] == pytest.approx(sum(gaps) / len(gaps), abs=1e-4)
    assert set(m.sink_by_position) == set(bins)
    for key, values in bins.items():
        assert m.sink_by_position[key] == pytest.approx(sum(values) / len(values), abs=1e-6)
    # the lab's own loader gives back the same module
    again, task2, meta = load_checkpoint(folder)
    assert meta["step"] == 7 and task2.chars == small_task.chars
    torch.testing.assert_close(again(x), ref, atol=0, rtol=0)


def test_relu_checkpoint_refused_by_load_model(small_task, tmp_path):
    from probes import load_model

    model = _perturbed(BBConfig(vocab_size=small_task.vocab_size, d_model=16, n_ctx=16, attention="relu"))
    folder = save_checkpoint(tmp_path / "relu", model, small_task, 1, {})
    with pytest.raises(ModelLoadError, match="ReLU attention"):
        load_model(str(folder), device="cpu")
    again, _, _ = load_checkpoint(folder)
    ids = generate(small_task, 2, 0, 0, length=17)[:, :-1]
    torch.testing.assert_close(again(ids), model(ids), atol=0, rtol=0)


def test_corrupt_checkpoint(small_task, tmp_path):
    model = _perturbed(BBConfig(vocab_size=small_task.vocab_size, d_model=16, n_ctx=16))
    folder = save_checkpoint(tmp_path / "ck", model, small_task, 1, {})
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="altered"):
        load_checkpoint(folder)
    (folder / MARKER).write_text("{not json")
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(folder)
    with pytest.raises(CheckpointError, match="not a BB checkpoint"):
        load_checkpoint(tmp_path)


# --- training -------------------------------------------------------------------------------------------


def test_resume_equals_uninterrupted(small_task, tmp_path):
    full = TrainSettings(steps=12, batch=4, seq_len=25, d_model=16, eval_every=4, checkpoint_every=6, eval_batch=4)
    whole = train(full, tmp_path / "whole", small_task, progress=False)
    short = TrainSettings(steps=6, batch=4, seq_len=25, d_model=16, eval_every=4, checkpoint_every=6, eval_batch=4)
    train(short, tmp_path / "parts", small_task, progress=False)  # a run "killed" after its step-6 checkpoint
    (tmp_path / "parts" / "metrics.jsonl").open("a").write('{"step": 99, "torn')  # a torn last line
    resumed = train(full, tmp_path / "parts", small_task, progress=False)
    assert resumed.resumed_from == 6
    a, _, _ = load_checkpoint(tmp_path / "whole")
    b, _, _ = load_checkpoint(tmp_path / "parts")
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert [r["step"] for r in resumed.metrics] == [0, 4, 8, 12]
    assert json.dumps(resumed.metrics) == json.dumps(whole.metrics)
    with pytest.raises(CheckpointError, match="other settings"):
        train(TrainSettings(steps=12, batch=8, seq_len=25, d_model=16), tmp_path / "parts", small_task, progress=False)


@pytest.mark.slow
def test_trained_model_sinks_on_non_trigger_queries(task, tmp_path):
    """A short softmax+AdamW run of the 1-layer model: the back-copy is learned, trigger queries stop looking
    at <s>, and non-trigger queries put several times more attention on <s> than trigger queries do.
    Setting (chosen to run in ~20 s on one core): d = 64, sequences of 65 tokens, batch 32, 150 steps."""
    run = TrainSettings(steps=150, batch=32, seq_len=65, d_model=64, eval_every=150, checkpoint_every=150, eval_batch=64)
    result = train(run, tmp_path / "run", task, progress=False)
    first, last = result.metrics[0], result.metrics[-1]
    assert first["attn_sink_nontrigger"][0] < 2.0 * first["attn_sink_trigger"][0]  # no sink preference at init
    assert last["attn_sink_nontrigger"][0] > 4.0 * last["attn_sink_trigger"][0]
    assert last["backcopy_risk"] < 0.6 * first["backcopy_risk"]
    model, _, _ = load_checkpoint(result.final_checkpoint)
    x, _ = split(generate(task, 32, 7, 0, length=65))
    with torch.no_grad():
        pattern = model.run_with_internals(x)[1]["pattern"][0, :, 0]
    trig = task.is_trigger(x)
    trig[:, 0] = False
    rows, cols = trig.nonzero(as_tuple=True)
    assert float(pattern[rows, cols, cols - 1].mean()) > 0.3  # trigger queries look at the token before them


def test_cli_train_then_eval(task, tmp_path):
    """`glasshouse bb train` then `bb eval` on a tiny run: the files appear and bb.json holds evaluate()'s numbers."""
    import json

    from app.cli import main
    from probes.bb.evaluate import evaluate

    run = tmp_path / "run"
    assert main(["bb", "train", "--steps", "4", "--batch", "4", "--d-model", "16", "--seq-len", "17",
                 "--eval-every", "2", "--checkpoint-every", "2", "--out", str(run)]) == 0
    assert [r["step"] for r in read_metrics(run)] == [0, 2, 4]
    assert main(["bb", "eval", str(run), "--n", "8", "--out", str(tmp_path / "eval")]) == 0
    for name in ("bb.json", "bb_sink_formation.html", "bb_sink_by_position.html", "bb_token_attention_0.html"):
        assert (tmp_path / "eval" / name).is_file()
    saved = json.loads((tmp_path / "eval" / "bb.json").read_text())["evaluations"][0]
    direct = evaluate(run, 8)
    assert saved["step"] == 4
    assert saved["measures"]["sink_by_position"] == pytest.approx(direct.measures.sink_by_position)
    assert saved["measures"]["logit_gap_nontrigger"] == pytest.approx(direct.measures.logit_gap_nontrigger)


@pytest.mark.slow
def test_sgd_puts_less_attention_on_s_than_adamw(task, tmp_path):
    """The SGD mitigation in miniature: at the spec's batch (512) and learning rates, after 600 steps of the
    1-layer model (d = 32, 17-token sequences; about 45 s per run on one core) softmax + AdamW puts clearly
    more attention on <s> at non-trigger queries than softmax + SGD (measured: 0.415 vs 0.317; uniform
    attention would give 0.166). docs/bb_lab.md has the longer runs behind this."""
    sink = {}
    for optimizer in ("adamw", "sgd"):
        run = TrainSettings(optimizer=optimizer, d_model=32, seq_len=17, batch=512, steps=600, eval_every=600,
                            checkpoint_every=600, eval_batch=64)
        rows = train(run, tmp_path / optimizer, task, progress=False).metrics
        assert rows[0]["attn_sink_nontrigger"][0] < 0.2  # about uniform at initialization
        sink[optimizer] = rows[-1]["attn_sink_nontrigger"][0]
    assert sink["adamw"] > 0.35
    assert sink["adamw"] > sink["sgd"] + 0.05
