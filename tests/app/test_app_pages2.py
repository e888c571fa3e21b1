"""AppTest runs of the pages wired after their modules merged: Successor heads, BB lab, Circuits, SAEs.

Each happy path checks a number the page shows against an independent computation (a plain-torch
loop over the canonical weights, a hand-written attention), and each page gets one bad input that
must show st.error (a GlasshouseError), never a traceback. Helpers come from test_app_pages.py.
"""

from __future__ import annotations

import re
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
    at = run_page("views/successor.py", "Successor heads", succ_norm="none", succ_layer=layer, succ_head=head, succ_token=" March")
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
    at = run_page("views/successor.py", "Successor heads", succ_token=" Mondayish stuff")
    assert not at.exception
    assert any("not one" in e.value and "single token" in e.value for e in at.error), [e.value for e in at.error]
    assert not [d for d in at.dataframe if "logit" in d.value.columns]  # no prediction table for bad input
    assert isinstance(at.dataframe[0].value, pd.DataFrame)  # the page above the error still rendered


# --- BB lab ------------------------------------------------------------------------------------------

BB_SMALL = {"bb_steps": 20, "bb_eval_every": 5, "bb_d": 16, "bb_seq_len": 17, "bb_batch": 4, "bb_seed": 3}


def click_train(at: AppTest) -> AppTest:
    next(b for b in at.button if b.label == "Train").click().run()
    return at


def plain_sink_attention(model: Any, task: Any, x: torch.Tensor) -> tuple[float, float]:
    """Attention on <s> (key 0) of a 1-layer BB model, non-trigger and trigger queries i >= 1, written out:
    LayerNorm, q and k projections, causal softmax over q.k / sqrt(d)."""
    blk = model.blocks[0]
    with torch.no_grad():
        h = model.embed(x) + model.pos(torch.arange(x.shape[1]))
        h = torch.nn.functional.layer_norm(h, (h.shape[-1],), blk.ln1.weight, blk.ln1.bias, blk.ln1.eps)
        q, k = h @ blk.q.weight.T, h @ blk.k.weight.T
        scores = q @ k.transpose(-1, -2) / h.shape[-1] ** 0.5
        n = x.shape[1]
        scores = scores.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
        on_bos = scores.softmax(dim=-1)[:, :, 0]  # [batch, query]
    trig = torch.zeros_like(x, dtype=torch.bool)
    for t in task.triggers:
        trig |= x == t
    later = torch.zeros_like(trig)
    later[:, 1:] = True
    return float(on_bos[~trig & later].mean()), float(on_bos[trig & later].mean())


def test_bb_lab_trains_and_matches_trainer_and_plain_attention(tmp_path: Any) -> None:
    from probes.bb.train import TrainSettings, train

    at = click_train(run_page("views/bblab.py", "BB lab", **BB_SMALL))
    assert_clean(at)
    job = at.session_state["bb_job"]
    assert job["status"] == "done" and job["step"] == 20
    rows = next(d.value for d in at.dataframe if "attn_sink_nontrigger_L0" in d.value.columns)
    assert rows["step"].tolist() == [0, 5, 10, 15, 20]

    # the same run through probes.bb.train.train (checkpoints, resumable loop) gives the same measurements
    ref = train(TrainSettings(steps=20, eval_every=5, d_model=16, seq_len=17, batch=4, seed=3), tmp_path,
                progress=False)
    for col in ("loss", "backcopy_risk", "bigram_risk"):
        np.testing.assert_allclose(rows[col].to_numpy(), [r[col] for r in ref.metrics], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rows["attn_sink_nontrigger_L0"].to_numpy(),
                               [r["attn_sink_nontrigger"][0] for r in ref.metrics], rtol=1e-5, atol=1e-6)

    # attention on <s> of the final model, by hand on the evaluation batch
    non, trig = plain_sink_attention(job["model"], job["task"], job["eval"][0])
    assert rows["attn_sink_nontrigger_L0"].iloc[-1] == pytest.approx(non, abs=1e-5)
    assert rows["attn_sink_trigger_L0"].iloc[-1] == pytest.approx(trig, abs=1e-5)
    shown = {m.label: float(m.value) for m in at.metric}
    assert shown["Attention on <s>, non-trigger queries"] == pytest.approx(non, abs=5.1e-4)  # printed with 3 decimals

    curves = next(f for f in figures(at) if f["layout"]["title"]["text"].startswith("BB lab"))
    assert array(curves["data"][0]["x"]).tolist() == [0, 5, 10, 15, 20]
    by_position = next(f for f in figures(at) if "by query position" in f["layout"]["title"]["text"])
    assert array(by_position["data"][0]["y"]).tolist() == pytest.approx(list(job["rows"][-1]["sink_by_position"].values()))
    np.testing.assert_allclose(rows["logit_gap_nontrigger_L0"].to_numpy(),
                               [r["logit_gap_nontrigger"][0] for r in ref.metrics], rtol=1e-5, atol=1e-5)


def test_bb_lab_stop_flag_stops_between_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    import streamlit as st

    import probes.bb.data as data

    real = data.generate

    def generate(task: Any, batch: int, seed: int, step: int, *args: Any, **kwargs: Any) -> torch.Tensor:
        if step == 7:  # a training batch (the evaluation batch is step 0)
            st.session_state["bb_stop"] = True  # what the Stop button's callback does
        return real(task, batch, seed, step, *args, **kwargs)

    monkeypatch.setattr(data, "generate", generate)
    at = click_train(run_page("views/bblab.py", "BB lab", **BB_SMALL))
    assert_clean(at)
    job = at.session_state["bb_job"]
    assert job["status"] == "stopped" and job["step"] == 8  # step 7 finished, then the flag was seen
    assert [r["step"] for r in job["rows"]] == [0, 5]
    assert any("stopped at step 8 of 20" in h.value for h in at.subheader)


def test_bb_lab_rejects_bad_learning_rate() -> None:
    at = click_train(run_page("views/bblab.py", "BB lab", bb_lr="fast", **BB_SMALL))
    assert not at.exception
    assert any("'fast' is not a number" in e.value for e in at.error), [e.value for e in at.error]
    assert "bb_job" not in at.session_state
    at = click_train(run_page("views/bblab.py", "BB lab", bb_lr="inf", **BB_SMALL))  # float() takes it
    assert not at.exception and "bb_job" not in at.session_state
    assert any("positive finite number" in e.value for e in at.error), [e.value for e in at.error]


# --- Circuits ----------------------------------------------------------------------------------------


def test_circuits_page_clean_metric_matches_plain_forward(smollm: Any) -> None:
    from circuits.tasks import make_task

    at = run_page("views/circuits.py", "Circuits", circ_task="succession", circ_n=2, circ_which="both",
                  circ_counts="10,100")
    assert any("Find circuit" in i.value for i in at.info)  # nothing runs before the button
    next(b for b in at.button if b.label == "Find circuit").click().run()
    assert_clean(at)

    task = make_task("succession", smollm, n=2, seed=0)
    values = []
    for ids, answers, signs in zip(task.clean, task.answer_ids, task.answer_signs, strict=True):
        logits = smollm.forward(torch.tensor([ids]))[0, -1].float()  # plain forward, one unpadded example
        values.append(sum(s * float(logits[a]) for a, s in zip(answers, signs, strict=True)))
    shown = {m.label: m.value for m in at.metric}
    assert float(shown["Clean metric (full graph)"]) == pytest.approx(float(np.mean(values)), abs=2e-4)

    curves = next(f for f in figures(at) if "faithfulness against circuit size" in f["layout"]["title"]["text"])
    assert {d["name"].split(" (")[0] for d in curves["data"]} == {"position-aware", "position-agnostic"}
    at.radio(key="circ_label").set_value("position-aware").run()
    graph = next(f for f in figures(at) if "position-aware circuit" in f["layout"]["title"]["text"])
    assert graph["layout"]["xaxis"]["ticktext"] == list(task.schema.names)  # one column per span


def test_circuits_page_rejects_bad_edge_counts(smollm: Any) -> None:
    at = run_page("views/circuits.py", "Circuits", circ_counts="ten, twenty")
    next(b for b in at.button if b.label == "Find circuit").click().run()
    assert not at.exception
    assert any("comma-separated whole numbers" in e.value for e in at.error), [e.value for e in at.error]


# --- SAE features ------------------------------------------------------------------------------------


def test_sae_page_trains_and_prompt_view_matches_plain_encode(smollm: Any) -> None:
    layer, prompt = 2, "The days of the week are Monday, Tuesday"
    at = run_page("views/saes.py", "SAE features", sae_arch="standard", sae_layer=layer, sae_d=64, sae_tokens=1024,
                  sae_batch=128, prompt=prompt, sae_top=3)
    assert any("Train or load" in i.value for i in at.info)  # nothing runs before the button
    next(b for b in at.button if b.label == "Train SAE").click().run()
    assert_clean(at)
    _, sae = at.session_state["sae_loaded"]
    assert sae.cfg.hook_name == f"blocks.{layer}.hook_resid_post" and sae.cfg.d_sae == 64

    # features by hand: HF's hidden state after layer `layer`, then ReLU((x s - b_dec) W_enc + b_enc)
    ids = smollm.to_tokens(prompt).ids
    with torch.no_grad():
        x = smollm.hf_model(ids, output_hidden_states=True).hidden_states[layer + 1][0].float()
        f = torch.relu((x * sae.cfg.norm_scale - sae.b_dec) @ sae.W_enc + sae.b_enc)
    f[0] = 0  # the SAE skips position 0 (an attention sink)
    shown = next(d.value for d in at.dataframe if "rank" in d.value.columns)
    last = ids.shape[1] - 1
    rows = shown[shown["position"] == last].sort_values("rank")
    vals, idx = f[last].topk(3)
    expected = [(int(i), float(v)) for v, i in zip(vals, idx, strict=True) if v > 0]
    assert expected, "no feature fires on the last token; pick another prompt"
    assert rows["feature"].tolist() == [i for i, _ in expected]
    np.testing.assert_allclose(rows["activation"].to_numpy(), [v for _, v in expected], rtol=1e-4, atol=1e-4)

    # the density the dashboard reports for feature 0: fraction of evaluation tokens where it fires
    from probes.corpus import sample

    windows = sample("prose", 16, 64, smollm, seed=1).ids
    with torch.no_grad():
        x = smollm.hf_model(windows, output_hidden_states=True).hidden_states[layer + 1].float()
        f0 = torch.relu((x * sae.cfg.norm_scale - sae.b_dec) @ sae.W_enc[:, 0] + sae.b_enc[0])
    f0[:, 0] = 0
    caption = next(c.value for c in at.caption if c.value.startswith("Feature 0: fires on"))
    shown_pct = float(re.search(r"fires on ([0-9.]+)%", caption).group(1))  # type: ignore[union-attr]
    assert shown_pct == pytest.approx(100 * float((f0 > 0).float().mean()), abs=0.0051)  # printed with 2 decimals
    titles = [fig["layout"]["title"]["text"] for fig in figures(at)]
    assert any(t.startswith("Feature density") for t in titles) and any("Top features per token" in t for t in titles)


def test_sae_page_bad_folder_shows_error(smollm: Any, tmp_path: Any) -> None:
    at = run_page("views/saes.py", "SAE features", sae_source="folder", sae_path=str(tmp_path / "no_such_sae"))
    at.button(key="sae_load").click().run()
    assert not at.exception
    assert at.error and "no_such_sae" in at.error[0].value, [e.value for e in at.error]


def test_sae_page_loads_a_gemma_scope_sae(smollm: Any, tmp_path: Any) -> None:
    """The page's loader is saes.sources.load_sae: a Gemma Scope params.npz whose path names its hook loads, and
    the feature views open on it."""
    from tests.saes.test_sources import LAYER, identity_params, write_scope

    folder = write_scope(tmp_path, "scope-res", f"layer_{LAYER}/width_1k/average_l0_10",
                         identity_params(smollm.facts.d_model))
    at = run_page("views/saes.py", "SAE features", sae_source="folder", sae_path=str(folder))
    at.button(key="sae_load").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(f"blocks.{LAYER}.hook_resid_post" in s.value for s in at.subheader), [s.value for s in at.subheader]
