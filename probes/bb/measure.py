"""Measurements of the extreme-token phenomena in a BB model (one evaluation batch).

Spec: docs/methods/extreme-tokens.md, "The Bigram-Backcopy (BB) task" (what emerges, risks).
All numbers are per layer (head 0 for the attention numbers; the spec's model has one head):
- attention on <s> (key 0), mean over query positions i >= 1 whose token is a trigger / is not;
- value-state norm ||v_k W_O|| of <s> (k = 0) and the mean over the other keys;
- residual norm ||resid_post[l, k]|| of <s> and the mean over the other positions;
- back-copy risk: cross-entropy against the oracle on trigger positions (the oracle is one-hot there,
  so it is also the excess risk); bigram risk: cross-entropy against the oracle minus the oracle's
  entropy (= KL(oracle || model)) on non-trigger positions i >= 1 (position 0, <s>, is left out of both);
- active tokens: vocabulary tokens whose mean attention to <s>, as queries, is below 0.89 (last layer),
  among tokens seen at least 5 times as queries at positions i >= 1;
- attention-logit gap (the spec's per-token measure, applied here): s[i,0] - mean_{1<=j<=i} s[i,j] on the
  attention logits, mean over non-trigger queries i >= 1, per layer. Unlike the pretrained-model measure
  (probes/extreme.py) the self key j = i is kept, so that query 1 has a gap too;
- attention on <s> by query position (last layer, non-trigger queries), in bins [1,4), [4,8), [8,16), ...:
  with a fixed logit advantage for <s> the weight falls as more keys compete, so one average hides it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from probes.bb.data import BBTask, oracle_probs
from probes.bb.model import BBModel
from probes.extreme import logit_gap
from probes.quantities import attention_on_first

ACTIVE_THRESHOLD = 0.89
MIN_QUERIES = 5


@dataclass
class BBMeasures:
    """One evaluation of a BB model; lists are per layer."""

    attn_sink_trigger: list[float]
    attn_sink_nontrigger: list[float]
    value_norm_sink: list[float]
    value_norm_others: list[float]
    resid_norm_sink: list[float]
    resid_norm_others: list[float]
    backcopy_risk: float
    bigram_risk: float
    loss: float
    active_tokens: list[str]
    n_active: int
    active_equals_triggers: bool
    token_attn_sink: dict[str, float]  # last layer, per query token
    logit_gap_nontrigger: list[float] = field(default_factory=list)  # per layer
    sink_by_position: dict[str, float] = field(default_factory=dict)  # last layer, "lo-hi" -> mean

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(x: Tensor, mask: Tensor) -> float:
    return float(x[mask].mean()) if bool(mask.any()) else float("nan")


@torch.no_grad()
def measure(model: BBModel, task: BBTask, inputs: Int[Tensor, "batch pos"], targets: Int[Tensor, "batch pos"]) -> BBMeasures:
    """Measure the sink, drain and peak, the risks and the active tokens on one batch (spec: BB task)."""
    was_training = model.training
    model.eval()
    logits, inner = model.run_with_internals(inputs)
    model.train(was_training)
    trig = task.is_trigger(inputs)
    later = torch.zeros_like(trig)
    later[:, 1:] = True
    sink = attention_on_first(inner["pattern"][:, :, 0])  # [layer, batch, q]
    gap = logit_gap(inner["scores"][:, :, 0], include_self=True)  # [layer, batch, q]
    values = inner["values"][:, :, 0].norm(dim=-1)  # [layer, batch, pos]
    resid = inner["resid_post"].norm(dim=-1)  # [layer, batch, pos]
    n_layers = sink.shape[0]
    logp = torch.log_softmax(logits.float(), dim=-1)
    oracle = oracle_probs(task, inputs)
    ce = -(oracle * logp).sum(-1)
    entropy = -(oracle * torch.log(oracle.clamp_min(1e-30))).sum(-1)
    tok_attn = _token_attention(task, inputs, sink[-1], later)
    active = sorted((t for t, a in tok_attn.items() if a < ACTIVE_THRESHOLD), key=task.vocab.index)
    trigger_strs = sorted((task.vocab[t] for t in task.triggers), key=task.vocab.index)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
    return BBMeasures(
        attn_sink_trigger=[_mean(sink[layer], trig & later) for layer in range(n_layers)],
        attn_sink_nontrigger=[_mean(sink[layer], ~trig & later) for layer in range(n_layers)],
        value_norm_sink=[float(values[layer, :, 0].mean()) for layer in range(n_layers)],
        value_norm_others=[float(values[layer, :, 1:].mean()) for layer in range(n_layers)],
        resid_norm_sink=[float(resid[layer, :, 0].mean()) for layer in range(n_layers)],
        resid_norm_others=[float(resid[layer, :, 1:].mean()) for layer in range(n_layers)],
        backcopy_risk=_mean(ce, trig & later),
        bigram_risk=_mean(ce - entropy, ~trig & later),
        loss=float(loss),
        active_tokens=active,
        n_active=len(active),
        active_equals_triggers=active == trigger_strs,
        token_attn_sink=tok_attn,
        logit_gap_nontrigger=[_mean(gap[layer], ~trig & later) for layer in range(n_layers)],
        sink_by_position=_by_position(sink[-1], ~trig & later),
    )


def _by_position(sink: Tensor, mask: Tensor) -> dict[str, float]:
    """Mean of sink[batch, q] over mask, in query-position bins [1,4), [4,8), [8,16), ... up to the length."""
    n = sink.shape[-1]
    edges = [1, 4]
    while edges[-1] < n:
        edges.append(2 * edges[-1])
    out = {}
    for lo, hi in zip(edges[:-1], edges[1:], strict=False):
        hi = min(hi, n)
        out[f"{lo}-{hi}"] = _mean(sink[:, lo:hi], mask[:, lo:hi])
    return out


def _token_attention(task: BBTask, inputs: Tensor, sink: Tensor, later: Tensor) -> dict[str, float]:
    """Mean attention to <s> from each query token (positions >= 1, tokens seen MIN_QUERIES times)."""
    ids = inputs[later]
    att = sink[later]
    sums = torch.zeros(task.vocab_size).index_add_(0, ids, att.float())
    counts = torch.zeros(task.vocab_size).index_add_(0, ids, torch.ones_like(att, dtype=torch.float))
    return {task.vocab[t]: float(sums[t] / counts[t]) for t in range(1, task.vocab_size) if counts[t] >= MIN_QUERIES}
