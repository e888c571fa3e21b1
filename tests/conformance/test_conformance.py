"""Every family the architecture table accepts, through every analysis (tests/conformance/families.py).

Each analysis either runs and its checkable numbers equal a plain HF eager computation (logits,
residuals, patterns, the circuits graph forward, attention statistics, sink alphas, logit gaps,
value norms, OV outputs, DLA sums), or refuses with an InputError naming the family and the command.
Nothing in between. Outcomes are recorded for docs/support.md (scripts/support_matrix.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from probes.errors import InputError
from probes.model.architecture import ADAPTERS
from tests.conformance.families import FAMILIES
from tests.conformance.matrix import render
from tests.conformance.zoo import COMMANDS, RESULTS, Entry, entry, visible_keys, windows_seen

NAMES = sorted(FAMILIES)
ATOL = 2e-5


def close(a: torch.Tensor, b: torch.Tensor, what: str, atol: float = ATOL, rtol: float = 1e-4) -> None:
    a, b = a.float(), b.float()
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    ok = torch.isclose(a, b, atol=atol, rtol=rtol) | (a.isnan() & b.isnan())
    assert bool(ok.all()), f"{what}: max |diff| {float((a - b).abs().nan_to_num(float('inf')).max()):.3g}"


def conform(name: str, command: str, check: Callable[[Entry], None]) -> None:
    """Run a check; an InputError is accepted only as a refusal naming the family and the command."""
    e = entry(name)
    try:
        check(e)
    except InputError as exc:
        msg = str(exc)
        assert e.model.facts.family in msg and COMMANDS[command] in msg.lower(), f"unclear refusal for {name}: {msg}"
        RESULTS[(name, command)] = "refused: " + msg
        return
    RESULTS[(name, command)] = "yes"


def test_every_adapter_is_in_the_suite():
    assert sorted(f.architecture for f in FAMILIES.values()) == sorted(ADAPTERS)


@pytest.mark.parametrize("name", NAMES)
def test_info(name):
    def check(e: Entry) -> None:
        f = e.model.facts
        assert f.n_params == e.n_params
        assert f.n_layers == len(e.attentions) and f.n_heads == e.attentions[0].shape[0]
        assert list(f.sliding_windows) == windows_seen(e)
        assert f.prepends_bos == FAMILIES[name].bos
        assert f.parallel_residual == (not e.model.has_mid_residual)

    conform(name, "info", check)


@pytest.mark.parametrize("name", NAMES)
def test_capture(name):
    from probes.model.capture import capture

    def check(e: Entry) -> None:
        m = e.model
        close(m.forward(e.ids)[0], e.logits, "logits")
        cap = capture(m, e.ids, what=["resid_pre", "pattern"])
        for layer in range(m.facts.n_layers):
            close(cap["resid_pre"][0, layer], e.hidden[layer], f"resid_pre {layer}")
            close(cap["pattern"][0, layer], e.attentions[layer], f"pattern {layer}")

    conform(name, "capture", check)


# the statistics path under SDPA, its sums from the fused passes (CPU) or the chunked form, and eager patterns
PATHS = (("fast", 2), ("fast", 10**9), ("patterns", None))


@pytest.mark.parametrize("name", NAMES)
def test_sinks(name, monkeypatch):
    import probes.attention_stats as stats
    from probes.sinks import compute_sinks

    def check(e: Entry) -> None:
        T = e.ids.shape[1]
        for attention, fused_from in PATHS:
            monkeypatch.setattr(stats, "FUSED_FROM", fused_from)
            res = compute_sinks(e.model, e.ids, regime="custom", attention=attention)
            want = "eager" if attention == "patterns" or e.model.facts.attn_softcap else "sdpa"
            assert res.metadata["settings"]["attention"] == want
            for layer, a in enumerate(e.attentions):
                seen = visible_keys(e.model.facts.sliding_windows[layer], T).sum(0).float()  # queries seeing key k
                close(res.alpha[0, layer], a.sum(-2) / seen, f"alpha {layer} ({attention})")

    conform(name, "sinks", check)


@pytest.mark.parametrize("name", NAMES)
def test_attention_statistics(name):
    from probes.attention_stats import attention_statistics

    def check(e: Entry) -> None:
        st = attention_statistics(e.model, e.ids, n_sink=1, backend="torch")
        for layer, a in enumerate(e.attentions):
            close(st.sink[0, layer, :, :, 0], a[:, :, 0], f"sink {layer}")
            close(st.max_prob[0, layer], a.amax(-1), f"max_prob {layer}")
            ent = -(a * a.clamp_min(1e-30).log()).sum(-1)
            close(st.entropy[0, layer], ent, f"entropy {layer}", atol=1e-4)
            close(st.received[0, layer], a.sum(-2), f"received {layer}")

    conform(name, "attention statistics", check)


@pytest.mark.parametrize("name", NAMES)
def test_extreme(name):
    from probes.extreme import extreme_tokens

    def check(e: Entry) -> None:
        fast, slow = (extreme_tokens(e.model, e.ids, attention=attention) for attention in ("fast", "patterns"))
        check_one(e, fast)
        check_one(e, slow)
        close(fast.resid_norm[0, -1], slow.resid_norm[0, -1], "last layer's resid norm (fast)", atol=1e-4)
        assert fast.metadata["settings"]["attention"] == ("eager" if e.model.facts.attn_softcap else "sdpa")

    def check_one(e: Entry, res) -> None:
        T = e.ids.shape[1]
        i = torch.arange(T)
        for layer, a in enumerate(e.attentions):
            close(res.sink_attention[0, layer], a[:, 1:, 0].mean(-1), f"sink attention {layer}")
            vis = visible_keys(e.model.facts.sliding_windows[layer], T)
            others = vis & (i[None] >= 1) & (i[None] < i[:, None])  # [query, key]
            log_a = a.clamp_min(1e-38).log()
            mean = torch.where(others, log_a, 0.0).sum(-1) / others.sum(-1).clamp_min(1)
            gap = torch.where((others.sum(-1) > 0) & vis[:, 0], log_a[:, :, 0] - mean, float("nan"))
            close(res.logit_gap[0, layer], gap, f"logit gap {layer}", atol=1e-4)
            assert not res.logit_gap[0, layer][:, 2 : min(T, e.model.facts.sliding_windows[layer] or T)].isnan().any()
            # value norm of key 0: query 0 sees only key 0, so its z is v_0
            v0 = torch.einsum("he,hed->hd", e.z[layer][0], e.w_o[layer]).norm(dim=-1)
            close(res.value_norm[0, layer, :, 0], v0, f"value norm {layer}")
            if layer + 1 < len(e.attentions):  # HF's last hidden state is after the final norm
                close(res.resid_norm[0, layer], e.hidden[layer + 1].norm(dim=-1), f"resid norm {layer}", atol=1e-4)

    conform(name, "extreme", check)


@pytest.mark.parametrize("name", NAMES)
def test_dormant(name, monkeypatch):
    import probes.attention_stats as stats
    from probes.dormant import column_entropy, head_statistics, row_entropy

    def check(e: Entry) -> None:
        for attention, fused_from in PATHS:
            monkeypatch.setattr(stats, "FUSED_FROM", fused_from)
            st = head_statistics(e.model, e.ids, attention=attention)
            for layer, a in enumerate(e.attentions):  # a: HF eager [head, query, key] of sequence 0
                close(st["dormancy"][layer], a[:, 1:, 0].mean(-1), f"dormancy {layer} ({attention})")
                close(st["row_entropy"][layer], row_entropy(a), f"row entropy {layer} ({attention})", atol=1e-4)
                close(st["column_entropy"][layer], column_entropy(a), f"column entropy {layer} ({attention})",
                      atol=1e-4)

    conform(name, "dormant", check)


@pytest.mark.parametrize("name", NAMES)
def test_successor_ov(name):
    from probes.successor.ov import OVSettings, head_outputs

    def check(e: Entry) -> None:
        m = e.model
        x = e.hidden[0][:1]  # the residual entering layer 0 at position 0
        out = head_outputs(m, x[None].expand(m.facts.n_layers, 1, -1), OVSettings(norm="all"), [0])[0, :, 0]
        b_v = torch.zeros_like(e.z[0][0]) if m.b_V is None else m.b_V[0].float()
        want = torch.einsum("he,hed->hd", e.z[0][0] - b_v, e.w_o[0])  # query 0 sees only key 0: z = v
        post = m.attn_out_norm(0)
        if post is not None:
            with torch.no_grad():
                want = post(want)
        close(out, want, "OV head outputs", atol=1e-4)
        from probes.successor.score import score_heads

        scores = score_heads(m, settings=OVSettings(norm="all"))  # the command's pipeline runs end to end
        assert scores.scores.shape == (m.facts.n_layers, m.facts.n_heads)

    conform(name, "successor (OV)", check)


@pytest.mark.parametrize("name", NAMES)
def test_successor_dla(name):
    from probes.model.capture import capture
    from probes.successor.in_context import final_norm_linear, head_writes, in_context_scores

    def check(e: Entry) -> None:
        m = e.model
        cap = capture(m, e.ids, what=["z", "resid_post"])
        z = cap["z"][:, :, -1].float()  # [1, layer, head, d_head]
        writes = head_writes(m, z)  # [1, layer, head, d]
        b_o = 0.0 if m.b_O is None else m.b_O.float()
        for layer in range(m.facts.n_layers):
            close(writes[0, layer].sum(0) + (b_o[layer] if m.b_O is not None else 0.0), e.attn_write[layer][-1],
                  f"head writes {layer}", atol=1e-4)
        x_final = cap["resid_post"][:, -1, -1].float()
        final = final_norm_linear(m, x_final)
        b_final = m.adapter.norm_bias(m.adapter.final_norm())
        logits = final(x_final) @ m.W_U.float() + (0 if b_final is None else b_final.float() @ m.W_U.float())
        logits = logits + (0 if m.b_U is None else m.b_U.float())
        cap_f = m.adapter.final_softcap()
        want = e.logits[-1] if not cap_f else torch.atanh(e.logits[-1] / cap_f) * cap_f
        close(logits[0], want, "final-norm-linear logits", atol=1e-4)
        ic = in_context_scores(m, tasks=("numbers",), shown=2, max_prompts=3)  # the command's pipeline
        ps = ic.prompts[0]
        for row, target, diff in zip(ps.rows, ps.targets, ic.logit_diff[0], strict=True):
            ref = m.reference_logits(torch.tensor([row]))[0, -1]
            close(diff, ref[target] - ref[torch.tensor(ps.target_set)].mean(), "in-context logit difference")

    conform(name, "successor (in-context DLA)", check)


@pytest.mark.parametrize("name", NAMES)
def test_circuit_graph_forward(name):
    from circuits.forward import GraphForward

    def check(e: Entry) -> None:
        gf = GraphForward(e.model)
        with torch.no_grad():
            out = gf.run(gf.embed(e.ids)).logits[0]
        close(out, e.logits, "graph forward logits", atol=1e-4)

    conform(name, "circuit", check)


def test_support_matrix_is_current():
    """docs/support.md is the matrix of this suite's outcomes (GLASSHOUSE_WRITE_SUPPORT=1 rewrites it)."""
    wanted = {(name, col) for name in NAMES for col in COMMANDS}
    if not wanted <= set(RESULTS):
        pytest.skip("only part of the conformance suite ran")
    text = render(RESULTS)
    path = Path(__file__).resolve().parents[2] / "docs" / "support.md"
    if os.environ.get("GLASSHOUSE_WRITE_SUPPORT") == "1":
        path.write_text(text)
    assert path.read_text() == text, "docs/support.md is stale: run python -m scripts.support_matrix"


@pytest.mark.parametrize(("name", "break_it"), [
    ("qwen3", lambda gf_cls: setattr(gf_cls, "head_norm", lambda self, layer, x, which: x)),  # drop q/k norms
    ("mistral", lambda gf_cls: setattr(gf_cls, "masked", lambda self, layer, s: s.masked_fill(
        torch.ones(s.shape[-1], s.shape[-1], dtype=torch.bool).triu(1), float("-inf")))),  # ignore the window
])
def test_graph_forward_self_check_refuses_a_wrong_forward(name, break_it, monkeypatch):
    """Without its q/k norms (Qwen3) or its sliding window (Mistral) the graph forward is another model's
    (the defects of docs/support.md): construction must refuse, naming the family and the command."""
    from circuits import forward

    model = entry(name).model
    saved = forward._CHECKED.pop(model, None)
    try:
        monkeypatch.setattr(forward.GraphForward, "head_norm", forward.GraphForward.head_norm)
        monkeypatch.setattr(forward.GraphForward, "masked", forward.GraphForward.masked)
        break_it(forward.GraphForward)
        with pytest.raises(InputError, match=r"family llama.*glasshouse circuit"):
            forward.GraphForward(model)
    finally:
        forward._CHECKED.pop(model, None)
        if saved is not None:
            forward._CHECKED[model] = saved


@pytest.mark.parametrize("name", ["mistral", "qwen3", "stablelm"])
def test_crossing_scores_respect_windows_norms_and_partial_rotary(name):
    """PEAP's exact crossing scores (keys / values recomputed) against patching one edge, on a sliding
    window (Mistral), q/k norms (Qwen3) and partial rotary with LayerNorms (StableLM)."""
    from circuits.forward import GraphForward
    from circuits.patching import kv_edge_effect
    from circuits.peap import peap
    from tests.circuits.helpers import toy_task

    gf = GraphForward(entry(name).model)
    task, g = toy_task(), gf.graph
    scores = peap(gf, task)
    # (first order in the head's output: edges from the input and a layer-0 head; the MLP's deltas on these
    # random weights are too large for a 10% check)
    for u, layer, head, which, src, dst in [(0, 1, 1, 0, 2, 3), (0, 1, 2, 1, 2, 3), (g.head(0, 1), 1, 3, 1, 2, 3)]:
        est = scores.kv[src, dst, u, which, layer, head].item()
        exact = kv_edge_effect(gf, task, u, layer, head, which, src, dst)
        assert abs(exact) > 1e-7
        assert abs(est - exact) < 0.1 * abs(exact), (u, layer, head, which, src, dst, est, exact)
    if name == "mistral":  # span b (positions 2-3) is outside the window of the end (position 8): no edge
        assert scores.kv[1, 3].abs().max() == 0
        assert kv_edge_effect(gf, task, 0, 1, 1, 0, 1, 3) == 0
