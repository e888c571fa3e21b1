"""Mean ablation per template against a hand computation, and curves that extend until 0.8."""

from __future__ import annotations

import pytest
import torch

from circuits.faithfulness import baselines, curve, next_count
from circuits.forward import GraphForward
from circuits.patching import full_keep, mean_keys, patched_metric, template_means
from circuits.peap import peap
from circuits.scores import plain_run
from circuits.tasks.base import TaskData, metric_values
from probes.errors import InputError
from tests.circuits.helpers import toy_task
from tests.circuits.tiny import tiny_llama


def _two_template_task() -> TaskData:
    """Six examples of two templates; template 1's span b starts one token later and some lengths differ."""
    t = toy_task(n=6, length=9)
    starts = [[0, 2, 4, 8] if i % 2 == 0 else [0, 3, 4, 8] for i in range(6)]
    clean = [list(r) for r in t.clean]
    corr = [list(r) for r in t.corrupted]
    clean[4], corr[4] = clean[4] + [11], corr[4] + [13]  # example 4: 10 tokens, "c" one longer
    starts[4] = [0, 2, 4, 9]
    return TaskData("two", t.schema, t.metric, clean, corr, starts, t.answer_ids, t.answer_signs,
                    templates=[0, 1, 0, 1, 0, 1])


def _hand_key(task: TaskData, i: int, p: int) -> tuple[int, int, int]:
    starts = task.starts[i]
    span = max(s for s in range(len(starts)) if starts[s] <= p)  # the last span starting at or before p
    return task.templates[i], span, p - starts[span]


def _hand_means(gf: GraphForward, task: TaskData) -> list[torch.Tensor]:
    """Per example [len, F, d]: at each position the mean corrupted output over the examples of its
    template that have a position with the same (span, offset)."""
    acts = []
    for i in range(len(task)):
        batch = task.batch([i])
        acts.append(plain_run(gf, batch.corrupted, batch).acts[0])
    out = []
    for i in range(len(task)):
        rows = []
        for p in range(len(task.clean[i])):
            key = _hand_key(task, i, p)
            same = [acts[j][q] for j in range(len(task)) for q in range(len(task.clean[j]))
                    if _hand_key(task, j, q) == key]
            rows.append(torch.stack(same).mean(0))
        out.append(torch.stack(rows))
    return out


def test_template_means_match_a_hand_computation():
    gf, task = GraphForward(tiny_llama()), _two_template_task()
    keys, n_keys = mean_keys(task)
    assert keys[0][:4] == [0, 1, 2, 3] and keys[1][2] == keys[1][1] + 1  # template 1: prefix is 3 tokens
    assert keys[2] == keys[0]  # same template, same layout: same keys
    assert len(set(keys[0]) & set(keys[1])) == 0  # templates never share a mean
    means, _ = template_means(gf, task, batch_size=4)
    hand = _hand_means(gf, task)
    for i in range(len(task)):
        torch.testing.assert_close(means[torch.tensor(keys[i])], hand[i], rtol=1e-5, atol=1e-6)
    pooled = torch.stack([hand[i][0] for i in range(len(task))]).mean(0)
    assert not torch.allclose(hand[0][0], pooled)  # one mean over every template would differ

    # The empty circuit under mean ablation: every input is the sum of the mean outputs.
    value = patched_metric(gf, task, full_keep(gf, len(task.schema)) * 0, ablation="mean", batch_size=4)
    by_hand = []
    for i in range(len(task)):
        batch = task.batch([i])
        x = hand[i][-1].sum(0)  # the logits' input at the last position: sum over every node
        with torch.no_grad():
            by_hand.append(float(metric_values(gf.readout(x[None, None])[:, 0], batch)))
    assert value == pytest.approx(sum(by_hand) / len(by_hand), rel=1e-4, abs=1e-5)
    full = patched_metric(gf, task, full_keep(gf, len(task.schema)), ablation="mean")
    assert full == pytest.approx(patched_metric(gf, task, full_keep(gf, len(task.schema))), abs=1e-5)


def test_template_indices_are_checked():
    t = toy_task()
    with pytest.raises(InputError, match="template indices"):
        TaskData("bad", t.schema, t.metric, t.clean, t.corrupted, t.starts, t.answer_ids, t.answer_signs,
                 templates=[0, 1])
    assert t.subset([1, 2]).templates == [] and _two_template_task().subset([1, 2]).templates == [1, 0]


def test_next_count_walks_the_1_3_10_grid():
    assert [next_count(c) for c in (1, 3, 10, 30, 100, 1000, 3000, 50, 299)] == [3, 10, 30, 100, 300, 3000,
                                                                                   10000, 100, 300]


def test_curve_extends_until_it_reaches_the_target():
    gf, task = GraphForward(tiny_llama()), toy_task()
    scores = peap(gf, task)
    base = baselines(gf, task)
    fixed = curve(gf, task, scores, [1], False, base)
    assert fixed.edges == [1]
    c = curve(gf, task, scores, [1], False, base, extend_to=0.8)
    assert c.edges[0] == 1 and len(c.edges) > 1
    n_order = c.meta["greedy_order_length"]
    assert all(b == min(next_count(a), n_order) for a, b in zip(c.edges, c.edges[1:], strict=False))
    assert all(v < 0.8 for v in c.faithfulness[:-1])  # it stops at the first count reaching 0.8
    assert c.faithfulness[-1] >= 0.8 or c.edges[-1] == n_order
    assert c.edges_to_80 == (c.edges[-1] if c.faithfulness[-1] >= 0.8 else None)
    assert c.faithfulness[0] == pytest.approx(fixed.faithfulness[0])
