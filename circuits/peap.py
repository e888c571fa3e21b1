"""Position-aware edge attribution patching, PEAP (Haklay et al. 2025; spec: circuits.md, PEAP).

Non-crossing edges (into a head's query, an MLP, the logits) are scored per span with EAP's
gradient times activation difference summed over the span's positions (`per_span`).

Crossing edges (into a head's key or value read at span `src`, feeding the head's output at a
later or equal span `dst`) are scored by exact recomputation: node u's corrupted-minus-clean
output is added to the head's key (or value) input at every position of span src, the head's
pattern (keys) or values are recomputed exactly (its norm included), and the change of the head's
output at each query position is multiplied by the gradient of the metric w.r.t. that output,
then summed over the positions of span dst. Result `kv[src, dst, u, k|v, layer, head]`, mean over
examples. Keys of a grouped-query head are computed once per key/value group.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from circuits.eap import as_forward
from circuits.forward import GraphForward, apply_rotary
from circuits.scores import (
    EdgeScores,
    batches,
    check_not_constant,
    grad_run,
    plain_run,
    span_scores,
    span_sizes,
)
from circuits.tasks.base import Batch, TaskData, metric_values
from probes.model.hooked_model import holds_model_lock
from probes.progress import Reporter, as_reporter


def peap(model: Any, task: TaskData, batch_size: int = 8, progress: bool = False,
         reporter: Reporter | None = None) -> EdgeScores:
    """Position-aware scores: per-span EAP for non-crossing edges and exact crossing scores.
    reporter: probes.progress, per batch."""
    gf = as_forward(model)
    g, S = gf.graph, len(task.schema)
    per_span = torch.zeros(S, g.n_forward, g.n_backward)
    kv = torch.zeros(S, S, g.n_forward, 2, g.n_layers, g.n_heads)
    clean_sum = corr_sum = 0.0
    rep = as_reporter(reporter, progress, desc="peap")
    todo = list(batches(task, batch_size))
    for done, idx in enumerate(todo, start=1):
        rep.check()
        batch = task.batch(idx)
        clean, corr = plain_run(gf, batch.clean, batch), plain_run(gf, batch.corrupted, batch)
        clean_sum += float(metric_values(clean.logits, batch).sum())
        corr_sum += float(metric_values(corr.logits, batch).sum())
        slot_grads, head_grads, _ = grad_run(gf, clean.acts[:, :, 0], batch)
        delta = corr.acts - clean.acts
        per_span += span_scores(delta, slot_grads, batch, S).cpu()
        kv += crossing_scores(gf, clean.acts, delta, head_grads, batch, S).cpu()
        rep.update(f"peap: batch {done} of {len(todo)}", done, len(todo))
    n = len(task)
    check_not_constant(clean_sum / n, corr_sum / n, task.name)
    return EdgeScores(g, task.schema, "peap", per_span / n, span_sizes(task), kv=kv / n,
                      clean_metric=clean_sum / n, corrupted_metric=corr_sum / n)


@holds_model_lock
def crossing_scores(gf: GraphForward, clean_acts: Tensor, delta: Tensor, head_grads: Tensor, batch: Batch,
                    n_spans: int) -> Tensor:
    """Summed (not averaged) crossing scores of one batch: [S_src, S_dst, F, 2, L, H]."""
    g = gf.graph
    out = clean_acts.new_zeros(n_spans, n_spans, g.n_forward, 2, g.n_layers, g.n_heads)
    dev = clean_acts.device
    onehot = torch.nn.functional.one_hot(batch.span_ids.to(dev), n_spans).to(clean_acts.dtype)
    onehot = onehot * batch.valid.to(dev)[..., None].to(clean_acts.dtype)  # [b, p, S]
    const = clean_acts.new_zeros(gf.d)
    with torch.no_grad():
        for layer in range(g.n_layers):
            n = g.layer_start(layer)
            x = clean_acts[:, :, :n].sum(2) + const
            k_sc, v_sc = _layer_crossing(gf, layer, x, delta[:, :, :n], head_grads[:, :, layer], onehot)
            out[:, :, :n, 0, layer] = k_sc
            out[:, :, :n, 1, layer] = v_sc
            if gf.b_O is not None:
                const = const + gf.b_O[layer]
    return out


def _group_project(gf: GraphForward, layer: int, normed: Tensor, which: str) -> Tensor:
    """normed [b, p, n, d] -> [b, p, n, H, dh], projecting once per key/value group."""
    w = {"k": gf.W_K, "v": gf.W_V}[which][layer]
    bias = {"k": gf.b_K, "v": gf.b_V}[which]
    group = gf.H // gf.model.facts.n_kv_heads
    heads = torch.arange(gf.H, device=normed.device) // group
    out = torch.einsum("bpnm,gme->bpnge", normed, w[::group])[:, :, :, heads]
    out = out + bias[layer] if bias is not None else out
    return gf.head_norm(layer, out, which)


def _layer_crossing(gf: GraphForward, layer: int, x: Tensor, delta: Tensor, grad_out: Tensor,
                    onehot: Tensor) -> tuple[Tensor, Tensor]:
    """k and v crossing scores of one layer's heads for upstream nodes 0..n-1: each [S, S, n, H]."""
    b, p, n, _ = delta.shape
    norm = gf.model.attn_in_norm(layer)
    normed = gf._norm(norm, x)
    normed_new = gf._norm(norm, x[:, :, None, :] + delta)  # [b, p, n, d]
    heads_in = normed[:, :, None, :].expand(b, p, gf.H, gf.d)
    q, k, v = (gf.project(layer, heads_in, w) for w in ("q", "k", "v"))
    k_new = _group_project(gf, layer, normed_new, "k")
    v_new = _group_project(gf, layer, normed_new, "v")
    rope = gf._rotary(b, p, x)
    if rope is not None:
        q, k = apply_rotary(q, rope), apply_rotary(k, rope)
        k_new = apply_rotary(k_new, (rope[0][:, :, None], rope[1][:, :, None]))
    hidden = ~gf.model.key_visible(layer, p).to(x.device)  # causal and the layer's sliding window
    logits = torch.einsum("bqhe,bkhe->bhqk", q, k) * gf.scales[layer]
    logits_new = torch.einsum("bqhe,bknhe->bnhqk", q, k_new) * gf.scales[layer]
    pattern = logits.masked_fill(hidden, float("-inf")).softmax(-1)
    g_z = torch.einsum("bqhm,hem->bqhe", grad_out, gf.W_O[layer])  # gradient w.r.t. z
    gv = torch.einsum("bqhe,bkhe->bhqk", g_z, v)
    clean_term = (pattern * gv).sum(-1)  # [b, H, q]
    S = onehot.shape[-1]
    k_scores = x.new_zeros(S, S, n, gf.H)
    for src in range(S):
        cols = onehot[:, :, src] > 0  # [b, k]
        if not cols.any():
            continue
        mixed = torch.where(cols[:, None, None, None, :], logits_new, logits[:, None])
        pat = mixed.masked_fill(hidden, float("-inf")).softmax(-1)
        change = (pat * gv[:, None]).sum(-1) - clean_term[:, None]  # [b, n, H, q]
        k_scores[src] = torch.einsum("bnhq,bqt->tnh", change, onehot)
    dv = v_new - v[:, :, None]  # [b, k, n, H, dh]
    g_dv = torch.einsum("bqhe,bknhe->bnhqk", g_z, dv) * pattern[:, None]
    v_scores = torch.einsum("bnhqk,bks,bqt->stnh", g_dv, onehot, onehot)
    return k_scores, v_scores

