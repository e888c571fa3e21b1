"""The built-in batch probes against independent computations, and the batch run end to end on smollm.

Tolerances: 1e-4 absolute on attention weights (HF eager output_attentions vs the bridge),
1e-4 relative on residual norms (plain torch forward hooks on the HF decoder layers).
"""

from __future__ import annotations

import sys

import torch

from app.batch import parse_plan, read_results, run_plan
from app.batch.registry import get
from probes.corpus import CorpusSample


def corpus_of(ids):
    return CorpusSample("prose", ids, [""] * len(ids), ["test"] * len(ids), 0, sys.version.split()[0])


def test_first_token_attention_matches_hf_eager(smollm_with_ref):
    model, ref = smollm_with_ref
    n = int(ref.attention_mask[0].sum())
    ids = ref.input_ids[:1, :n]
    rows = get("first_token_attention").run(model, {"prepend_bos": False, "batch_size": 8, "min_query": 2}, corpus_of(ids), 0)
    assert len(rows) == model.facts.n_layers * model.facts.n_heads
    for r in rows:
        expected = ref.attentions[r["layer"]][0, r["head"], 2:n, 0].mean()
        assert abs(r["value"] - float(expected)) < 1e-4


def test_residual_norms_match_plain_forward_hooks(smollm):
    ids = smollm.to_tokens(["One, two, three, four, five", "Monday, Tuesday, Wednesday, Thursday"]).ids[:, :6]
    outs = {}
    layers = smollm.hf_model.model.layers
    handles = [getattr(block, "_original_component", block).register_forward_hook(
        lambda mod, inp, out, i=i: outs.__setitem__(i, out[0] if isinstance(out, tuple) else out))
        for i, block in enumerate(layers)]
    try:
        with torch.no_grad():
            smollm.hf_model(ids)
    finally:
        for h in handles:
            h.remove()
    rows = get("residual_norms").run(smollm, {"prepend_bos": False, "batch_size": 1}, corpus_of(ids), 0)
    assert len(rows) == smollm.facts.n_layers * 6
    for r in rows:
        expected = float(outs[r["layer"]][:, r["position"]].norm(dim=-1).mean())
        assert abs(r["value"] - expected) <= 1e-4 * expected


def test_batch_run_local_and_nnsight_agree(smollm, tmp_path):
    base = {"models": ["smollm2-135m"], "corpora": [{"domain": "code", "n": 2, "length": 8}],
            "probes": [{"name": "residual_norms"}, {"name": "first_token_attention", "sweep": {"prepend_bos": [False, True]}}]}
    runs = {}
    for backend in ("local", "ndif-local"):
        plan = parse_plan({**base, "backend": backend, "figures": backend == "local"})
        folder = tmp_path / backend
        run_plan(plan, folder, loader=lambda p, s, b=backend: smollm if b == "local" else smollm.nnsight, progress=False)
        runs[backend] = {(r["probe"], json_key(r["settings"]), r["layer"], r["head"], r["position"]): r["value"]
                         for r in read_results(folder)}
    assert runs["local"].keys() == runs["ndif-local"].keys()
    assert len(runs["local"]) == 30 * 8 + 2 * 30 * 9
    for key, value in runs["local"].items():
        assert abs(value - runs["ndif-local"][key]) <= 1e-5 * max(1.0, abs(value))
    bos = [v for k, v in runs["local"].items() if k[0] == "first_token_attention" and '"prepend_bos":true' in k[1]]
    assert sum(bos) / len(bos) > 0.3  # a BOS first draws attention (the sink), a check the unit ran as set
    figures = sorted(p.name for p in (tmp_path / "local" / "figures").glob("*.html"))
    assert len(figures) == 3 and len(list((tmp_path / "local" / "figures").glob("*.plotly.json"))) == 3


def json_key(settings):
    import json

    return json.dumps(settings, sort_keys=True, separators=(",", ":"))
