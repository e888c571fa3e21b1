"""probes.remote_analyses: every analysis run on a RemoteModel (ndif-local simulation) equals the same analysis
run on the HookedModel (1e-5), and the request for a large hub model carries only code, ids and names, with one
save per statistic.

There is one copy of each analysis (probes/sinks.py, hidden_sinks.py, dormant.py, extreme.py,
successor/in_context.py); what differs is where ModelLike's measurements run: TransformerLens hooks and the
statistics path here, nnsight traces on the RemoteModel. Cheap: 2 sequences of 16 tokens, three layers where a
layer subset is allowed.
"""

from __future__ import annotations

import pickle
import pickletools

import pytest
import torch

from probes import remote as nd
from probes import remote_analyses as ra
from probes.model import backends
from probes.remote_budget import (
    CODE_BYTES,
    RequestBudget,
    RequestPlan,
    RequestTooLarge,
    check_budget,
)
from probes.sinks import alpha_from_pattern

LAYERS = [0, 3, 29]
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def rm(smollm):
    return ra.RemoteModel(smollm.nnsight, spec="smollm2-135m", remote="local")


@pytest.fixture(scope="module")
def rm3(smollm):
    """The same remote model measuring three layers only."""
    return ra.RemoteModel(smollm.nnsight, spec="smollm2-135m", remote="local", layers=LAYERS)


@pytest.fixture(scope="module")
def ids(smollm):
    from probes.sinks import inputs_for_regime

    return inputs_for_regime(smollm, "natural", 2, 16, seed=0)


@pytest.fixture(scope="module")
def sinks_pair(smollm, rm, ids):
    from probes.sinks import compute_sinks

    return compute_sinks(smollm, ids), compute_sinks(rm, ids)


def test_remote_model_facts_match_the_hooked_model(smollm, rm):
    """One facts record (probes/model/facts.py): read from the nnsight model's modules and HF config, it equals the
    HookedModel's (read through the bridge's config) but for the source."""
    import dataclasses

    f, g = smollm.facts, rm.facts
    assert (g.n_layers, g.n_heads, g.n_kv_heads, g.d_model, g.d_head, g.d_vocab, g.prepends_bos, g.bos_token_id) == (
        f.n_layers, f.n_heads, f.n_kv_heads, f.d_model, f.d_head, f.d_vocab, f.prepends_bos, f.bos_token_id)
    assert g.source == "remote" and dataclasses.replace(g, source=f.source) == f
    assert rm.tokens_from_ids([[1, 2, 3]]).str_tokens == smollm.tokens_from_ids([[1, 2, 3]]).str_tokens
    assert (smollm.backend, rm.backend, rm.measured_layers) == ("local", "ndif-local", list(range(f.n_layers)))


def test_sinks_and_hidden_sinks_equal_local(smollm, rm, rm3, ids, sinks_pair):
    from probes.hidden_sinks import detect_hidden_sinks
    from probes.sinks import compute_sinks

    local, remote = sinks_pair
    assert torch.allclose(remote.alpha, local.alpha, **TOL)
    assert torch.allclose(remote.sink_rate, local.sink_rate) and remote.sink1 == local.sink1
    assert torch.equal(remote.head_rate, local.head_rate) and torch.equal(remote.sample_rate, local.sample_rate)
    assert remote.metadata["settings"]["backend"] == "ndif-local" and "backend" not in local.metadata["settings"]
    assert (local.metadata["settings"]["attention"], remote.metadata["settings"]["attention"]) == ("sdpa", "eager")
    subset = compute_sinks(rm3, ids)
    assert torch.allclose(subset.alpha, local.alpha[:, LAYERS], **TOL)
    assert subset.metadata["settings"]["layers"] == LAYERS
    hid_local = detect_hidden_sinks(smollm, ids, min_queries=2)
    hid_remote = detect_hidden_sinks(rm, ids, min_queries=2)
    assert hid_local.examples, "the comparison needs some hidden sinks"
    assert torch.equal(hid_remote.hidden_rate, hid_local.hidden_rate)
    assert torch.equal(hid_remote.position_rate, hid_local.position_rate)
    assert hid_remote.token_counts == hid_local.token_counts
    assert [(e.layer, e.head, e.sample, e.position, e.token) for e in hid_remote.examples] == [
        (e.layer, e.head, e.sample, e.position, e.token) for e in hid_local.examples]


def test_dormancy_and_entropies_equal_local(smollm, rm3, ids):
    from probes.dormant import head_statistics

    local = head_statistics(smollm, ids)
    remote = head_statistics(rm3, ids, batch_size=1)  # two requests
    for name in local:
        assert torch.allclose(remote[name], local[name][LAYERS], **TOL), name


def test_dormant_report_on_a_remote_model_names_its_layers_and_leaves_out_the_losses(smollm, rm3):
    """dormant_heads on three remote layers: the table's heads are the model's own layer numbers, with the local
    dormancy of those heads; the losses and ablations (hooked forward passes) are left out."""
    from probes.dormant import dormant_heads

    local = dormant_heads(smollm, n=2, T=16, top=2, controls=1, ablate=False)
    remote = dormant_heads(rm3, n=2, T=16, top=2, controls=1, heads=[(3, 1)])
    assert remote.base_loss == {} and all(not r.loss_delta for r in remote.rows)
    assert local.base_loss and {r.layer for r in remote.rows} <= set(LAYERS)
    assert (3, 1, "chosen") in [(r.layer, r.head, r.role) for r in remote.rows]
    for r in remote.rows:
        for d in remote.domains:
            assert r.dormancy[d] == pytest.approx(float(local.dormancy[d][r.layer, r.head]), abs=1e-5)


def test_extreme_tokens_and_zeroing_ablations_equal_local(smollm, rm, rm3, ids):
    from probes.extreme import extreme_tokens, peak_ablation

    local = extreme_tokens(smollm, ids)
    remote = extreme_tokens(rm3, ids)
    assert torch.allclose(remote.sink_attention, local.sink_attention[:, LAYERS], **TOL)
    assert torch.allclose(remote.value_norm, local.value_norm[:, LAYERS], **TOL)
    assert torch.allclose(remote.resid_norm, local.resid_norm[:, LAYERS], **TOL)
    gap_l, gap_r = local.logit_gap[:, LAYERS], remote.logit_gap
    assert torch.equal(gap_l.isnan(), gap_r.isnan())  # the gap from log A: same up to rounding of log
    assert torch.allclose(gap_r.nan_to_num(), gap_l.nan_to_num(), atol=1e-4)
    p_local = peak_ablation(smollm, ids, layers=[1])
    p_remote = peak_ablation(rm, ids, layers=[1])
    assert p_remote.measure_layer == p_local.measure_layer
    assert torch.allclose(p_remote.clean_sink, p_local.clean_sink, **TOL)
    for a, b in zip(p_remote.rows, p_local.rows, strict=True):
        assert (a["component"], a["layer"]) == (b["component"], b["layer"])
        assert abs(a["sink"] - b["sink"]) <= 1e-5 * max(1.0, abs(b["sink"]))
        assert torch.allclose(a["sink_by_layer"], b["sink_by_layer"], **TOL)
    assert p_remote.rows[0]["sink"] != pytest.approx(float(p_remote.clean_sink[p_remote.measure_layer]))


def test_successor_in_context_dla_equals_local(smollm, rm, rm3):
    from probes.successor.in_context import build_prompts, head_dla, in_context_scores

    ps = build_prompts(smollm, "days", max_prompts=3)
    local = head_dla(smollm, ps)
    remote = rm3.head_dla(ps)
    assert torch.allclose(remote["per_t"], local["per_t"][:, LAYERS], **TOL)
    assert torch.allclose(remote["correct"], local["correct"][:, LAYERS], **TOL)
    assert torch.allclose(remote["logit_diff"], local["logit_diff"], **TOL)
    assert torch.equal(remote["top1"], local["logits"].argmax(dim=-1))
    scores_l = in_context_scores(smollm, tasks=("days",), max_prompts=3)
    scores_r = in_context_scores(rm3, tasks=("days",), max_prompts=3)
    assert scores_r.model_accuracy == scores_l.model_accuracy
    assert scores_r.model_task_accuracy == scores_l.model_task_accuracy
    top = scores_r.ranking(1)[0]  # the model's own layer number, not the index among the three
    assert top["layer"] in LAYERS
    assert top["mean_dla"] == pytest.approx(float(scores_l.dla[0, top["layer"], top["head"]]), abs=1e-5)


def test_request_for_a_large_hub_model_carries_only_code_and_ids(rm, ids):
    big = "meta-llama/Llama-3.1-70B"
    traces = {
        "alpha": lambda: ra.trace_alpha(rm, ids, LAYERS, remote=True),
        "sums": lambda: ra.trace_head_statistics(rm, ids, LAYERS, remote=True),
        "extreme": lambda: ra.trace_extreme(rm, ids, LAYERS, remote=True),
        "norms": lambda: ra.trace_residual_norms(rm, ids, torch.float32, ("mlp", 1), remote=True),
    }
    saves = {"alpha": 1, "sums": 1, "extreme": 4, "norms": 1}
    for name, run in traces.items():
        with nd.intercept_remote(big) as seen, pytest.raises(nd.RemoteRequestBlocked):
            run()
        (req,) = seen
        assert f'"repo_id": "{big}"' in req.model_key
        assert req.source.count(".save(") == saves[name], name  # one save per statistic, nothing else
        assert 0 < req.payload_bytes < CODE_BYTES, (name, req.payload_bytes)  # the estimate bounds it
        assert "model" not in req.variables and "rm" not in req.variables
        raw = req.blob
        if raw[:4] == b"\x28\xb5\x2f\xfd":  # zstd (nnsight compresses by default)
            import zstandard

            raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
        imported = pickled_imports(raw)
        assert "probes.sinks" in pickled_imports(pickle.dumps(alpha_from_pattern, protocol=4))  # the scan works
        assert any(m.startswith("torch") for m in imported)  # the scan sees imports...
        assert not any(m.startswith(("probes", "app")) for m in imported), ", ".join(sorted(imported))  # ...none of ours (by value)


def pickled_imports(raw: bytes) -> set[str]:
    """The modules a pickle imports (GLOBAL / STACK_GLOBAL, following the memo for STACK_GLOBAL's strings)."""
    memo: list[object] = []
    values: list[object] = []  # what each op pushed (None for non-strings)
    found = set()
    for op, arg, _ in pickletools.genops(raw):
        if op.name == "MEMOIZE":
            memo.append(values[-1] if values else None)
            continue
        if op.name in ("BINGET", "LONG_BINGET", "GET"):
            values.append(memo[int(arg)] if int(arg) < len(memo) else None)
            continue
        if op.name == "GLOBAL":
            found.add(str(arg).split(" ")[0])
        if op.name == "STACK_GLOBAL" and len(values) >= 2 and isinstance(values[-2], str):
            found.add(values[-2])
        values.append(arg if isinstance(arg, str) else None)
    return found


def test_budget_refuses_with_numbers_and_how_to_shrink(rm, ids):
    plan = ra.sink_plan(rm, n=100, T=64, layers=30, batch=8)
    assert plan.response_bytes == 8 * 30 * 9 * 64 * 4 and plan.n_requests == 13
    with pytest.raises(RequestTooLarge) as err:
        check_budget(plan, RequestBudget(max_response_bytes=200_000))
    text = str(err.value)
    assert "553.0 kB" in text and "batch_size=2" in text and "fewer layers" in text and "T=64" in text
    from probes.sinks import compute_sinks

    small = ra.RemoteModel(rm.lm, spec="smollm2-135m", remote=True, budget=RequestBudget(max_response_bytes=100))
    with pytest.raises(RequestTooLarge):  # refused before any trace runs (remote=True would go to NDIF)
        compute_sinks(small, ids)
    assert check_budget(RequestPlan("x", 1, 1, 4, 1, {"s": (2, 2)}), RequestBudget(100_000, 16)).response_bytes == 16


def test_backends_check_names_keys_and_hub_ids(monkeypatch):
    assert backends.remote_arg("ndif") is True and backends.remote_arg("ndif-local") == "local"
    assert backends.remote_arg("local") is False
    with pytest.raises(backends.InputError, match="Choose one of: local, ndif, ndif-local"):
        backends.get_backend("cloud")
    with pytest.raises(backends.InputError, match="HuggingFaceTB/SmolLM2-135M"):
        backends.check_hub_id("smollm2-135m")
    for bad in ("llama", "a/b/c", "../x", "owner/na me"):
        with pytest.raises(backends.InputError):
            backends.check_hub_id(bad)
    assert backends.check_hub_id("meta-llama/Llama-3.1-70B") == "meta-llama/Llama-3.1-70B"
    import nnsight

    monkeypatch.setattr(nnsight.CONFIG.API, "APIKEY", None)
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    with pytest.raises(backends.InputError, match="set_default_api_key"):
        backends.check_backend_request("ndif", "meta-llama/Llama-3.1-70B")
    monkeypatch.setattr(nnsight.CONFIG.API, "APIKEY", "k")
    assert backends.check_backend_request("ndif", "meta-llama/Llama-3.1-70B").name == "ndif"


def test_batch_probes_remote_rows_equal_local_rows(smollm):
    """The declared sinks, sinks_regime and dormancy analyses: the same collect step on a RemoteModel (nnsight's
    local simulation, eager patterns in the trace) gives the local rows (statistics path): dormancy to 1e-5,
    sink rates (thresholded counts) exactly."""
    from app.batch.registry import get
    from probes.corpus import sample

    corpus = sample("prose", 2, 16, smollm.tokenizer, seed=0)
    settings = {"prepend_bos": False, "batch_size": 8}
    dormancy = get("dormancy")
    assert dormancy.run_remote is not None
    local = dormancy.run(smollm, settings, corpus, 0)
    remote = dormancy.run_remote(smollm.nnsight, settings, corpus, 0, "local")
    assert [(r["metric"], r["layer"], r["head"]) for r in local] == [(r["metric"], r["layer"], r["head"]) for r in remote]
    assert max(abs(a["value"] - b["value"]) for a, b in zip(local, remote, strict=True)) < 1e-5
    for name, extra in (("sinks", {}), ("sinks_regime", {"regime": "repeat"})):
        sinks = get(name)
        assert sinks.run_remote is not None
        s_settings = {**sinks.defaults(), "batch_size": 8, **extra}
        rows_l = sinks.run(smollm, s_settings, corpus, 0)
        rows_r = sinks.run_remote(smollm.nnsight, s_settings, corpus, 0, "local")
        assert [(r["metric"], r["layer"], r["head"], r["position"], r["value"]) for r in rows_l] == [
            (r["metric"], r["layer"], r["head"], r["position"], r["value"]) for r in rows_r]
    # extreme_tokens, hidden_sinks, dormant_heads: norms and entropies to 1e-5 relative, the logit gap (from log A
    # remotely, from the scores locally) to 1e-4, thresholded counts and tokens exactly
    for name in ("extreme_tokens", "hidden_sinks", "dormant_heads"):
        entry = get(name)
        assert entry.run_remote is not None
        settings = {**entry.defaults(), "batch_size": 8}
        rows_l = entry.run(smollm, settings, corpus, 0)
        rows_r = entry.run_remote(smollm.nnsight, settings, corpus, 0, "local")
        assert [(r["metric"], r["layer"], r["head"], r["position"]) for r in rows_l] == [
            (r["metric"], r["layer"], r["head"], r["position"]) for r in rows_r], name
        for a, b in zip(rows_l, rows_r, strict=True):
            if isinstance(a["value"], str) or a["metric"] in ("sink_token_count", "position_rate", "hidden_rate"):
                assert a["value"] == b["value"], (name, a)
            elif a["value"] != a["value"]:  # NaN gap where no other key is visible
                assert b["value"] != b["value"], (name, a)
            else:
                tol = 1e-4 if a["metric"] == "logit_gap" else 1e-5 * max(1.0, abs(a["value"]))
                assert abs(a["value"] - b["value"]) <= tol, (name, a, b)


def test_cli_backend_flag_on_every_statistics_command(capsys):
    from app.cli import build_parser, main

    parser = build_parser()
    for command in ("sinks", "dormant", "extreme", "successor", "residual-norms", "hidden-sinks"):
        args = parser.parse_args([command, "--backend", "ndif-local", "--layers", "0,2"])
        assert args.backend == "ndif-local" and args.layers == "0,2"
        if command in ("residual-norms", "hidden-sinks"):  # batched analyses' rows count every layer
            assert main([command, "--backend", "ndif-local", "--layers", "0,2"]) == 2
            assert "leave --layers out" in capsys.readouterr().err
        assert parser.parse_args([command]).backend == "local"
        # refused before any model is loaded or request sent: an embedded name is no hub id
        assert main([command, "--backend", "ndif", "--model", "smollm2-135m"]) == 1
        assert "HuggingFaceTB/SmolLM2-135M" in capsys.readouterr().err
