"""EAP, EAP-IG and PEAP against exact patching and independent gradients (tiny random models)."""

from __future__ import annotations

import torch
from torch import nn

from circuits.eap import eap
from circuits.eap_ig import eap_ig
from circuits.forward import GraphForward
from circuits.patching import edge_effect, full_keep, kv_edge_effect, patched_metric
from circuits.peap import peap
from tests.circuits.helpers import toy_task
from tests.circuits.tiny import tiny_llama


def _linear_readout_model():
    model = tiny_llama(seed=3)
    model.hf_model.model.norm = nn.Identity()  # metric linear in the logits' input
    return model


def test_full_graph_is_clean_and_empty_is_corrupted():
    gf = GraphForward(tiny_llama())
    task = toy_task()
    scores = eap(gf, task)
    keep = full_keep(gf, 4)
    assert abs(patched_metric(gf, task, keep) - scores.clean_metric) < 1e-5
    assert abs(patched_metric(gf, task, keep * 0) - scores.corrupted_metric) < 1e-5
    assert abs(scores.clean_metric - scores.corrupted_metric) > 1e-4


def test_eap_equals_exact_patching_where_linear():
    """Edges into the logits: the metric is linear in the logits' input, so EAP is exact, per span too."""
    gf = GraphForward(_linear_readout_model())
    task, g = toy_task(), gf.graph
    scores = eap(gf, task)
    for u in (0, g.head(0, 1), g.mlp(0), g.head(1, 3), g.mlp(1)):
        exact = edge_effect(gf, task, u, g.logits_slot)
        assert abs(scores.agnostic[u, g.logits_slot].item() - exact) < 1e-3 * abs(exact) + 1e-8
        per_exact = edge_effect(gf, task, u, g.logits_slot, span=3)
        assert abs(scores.per_span[3, u, g.logits_slot].item() - per_exact) < 1e-3 * abs(per_exact) + 1e-8
    assert scores.agnostic[:, g.logits_slot].abs().max() > 1e-4


def test_per_span_scores_sum_to_agnostic():
    gf = GraphForward(tiny_llama())
    scores = eap(gf, toy_task())
    total = torch.zeros_like(scores.agnostic)
    for s in range(len(scores.schema)):
        total += scores.per_span[s]
    assert torch.allclose(total * gf.graph.edge_mask, scores.agnostic, atol=1e-7)
    assert (scores.per_span[1] - scores.per_span[3]).abs().max() > 1e-6  # spans do differ


def test_eap_ig_one_step_is_gradient_at_corrupted_input():
    """Independent gradient: the HF model's own backward, w.r.t. the input of layer 0's MLP norm."""
    model = tiny_llama(seed=5)
    task = toy_task()
    gf = GraphForward(model)
    batch = task.batch()
    captured = {}

    def hook(module, args):  # a copy that only the norm (and so only the MLP) reads
        x = args[0].clone()
        x.retain_grad()
        captured["x"] = x
        return (x,)

    norm = model.hf_model.model.layers[0].post_attention_layernorm
    handle = norm.register_forward_pre_hook(hook)
    try:
        logits = model.hf_model(batch.corrupted).logits[torch.arange(len(task)), batch.last]
        value = (logits.gather(-1, batch.answer_ids) * batch.answer_signs).sum()
        value.backward()
    finally:
        handle.remove()
    grad = captured["x"].grad
    delta = gf.embed(batch.corrupted) - gf.embed(batch.clean)
    expected = float((delta * grad).sum().detach()) / len(task)
    slot = gf.graph.mlp_slot(0)
    got = eap_ig(gf, task, steps=1).agnostic[0, slot].item()
    assert abs(got - expected) < 1e-5 * max(1.0, abs(expected))
    assert abs(eap(gf, task).agnostic[0, slot].item() - expected) > 1e-6  # EAP (clean gradient) differs


def test_crossing_scores_match_patching_key_or_value_alone():
    """To first order in the head output: a random tiny llama, two token substitutions, rtol 5%."""
    gf = GraphForward(tiny_llama())
    task, g = toy_task(), gf.graph
    scores = peap(gf, task)
    cases = [(0, 1, 1, 0, 1, 3), (g.head(0, 1), 1, 3, 0, 2, 3), (g.mlp(0), 1, 0, 1, 2, 3), (0, 1, 2, 1, 1, 3)]
    for u, layer, head, which, src, dst in cases:
        est = scores.kv[src, dst, u, which, layer, head].item()
        exact = kv_edge_effect(gf, task, u, layer, head, which, src, dst)
        assert abs(exact) > 1e-7
        assert abs(est - exact) < 0.05 * abs(exact), (u, layer, head, which, src, dst, est, exact)
    # non-crossing per-span scores are EAP's
    assert torch.equal(scores.per_span, eap(gf, task).per_span)


def test_eap_ig_averages_the_gradients_of_its_points():
    """m = 2: the running gradient sum divided by 2 equals the mean of the two one-point attributions."""
    from circuits.eap import attribute

    gf = GraphForward(tiny_llama(seed=4))
    task = toy_task()
    two = eap_ig(gf, task, steps=2).per_span
    at_corr = attribute(gf, task, lambda clean, corr: [corr], "p0").per_span
    at_mid = attribute(gf, task, lambda clean, corr: [(clean + corr) / 2], "p1").per_span
    assert torch.allclose(two, (at_corr + at_mid) / 2, atol=1e-6)
    assert (at_corr - at_mid).abs().max() > 1e-5  # the two points do differ
