"""Schemas from templates, the generated tasks on the embedded tokenizer, and bad input."""

from __future__ import annotations

import pytest

from circuits.eap import eap
from circuits.forward import GraphForward
from circuits.schema import Schema, build_example, schema_from_template
from circuits.tasks import make_task
from circuits.tasks.base import TaskData
from probes.errors import InputError
from tests.circuits.helpers import toy_task
from tests.circuits.tiny import tiny_llama


def test_schema_from_template_names_spans():
    s = schema_from_template("When {IO} and {S} went to the {place}, {S} gave a {object} to")
    assert s.names == ("prefix", "IO", "after_IO", "S1", "after_S1", "place", "after_place", "S2", "after_S2",
                       "object", "after_object", "end")


def test_build_example_first_token_indices():
    enc = lambda text: [len(w) for w in text.split(" ") if w]  # noqa: E731 one id per word
    ids, starts = build_example("When {IO} and {S} left, {S} said", {"IO": "Mary", "S": "John"}, enc)
    # words: When Mary and John left, John said -> starts: prefix 0, IO 1, after_IO 2, S1 3, after_S1 4,
    # S2 5, after_S2 6, end 6 (the last token).
    assert starts == [0, 1, 2, 3, 4, 5, 6, 6] and len(ids) == 7


def test_tasks_on_smollm_tokenizer(smollm):
    for name in ("ioi", "greater_than", "succession"):
        task = make_task(name, smollm, n=12, seed=1)
        assert len(task) == 12 and len(task.schema) == len(task.starts[0])
        for ids, starts, text in zip(task.clean, task.starts, task.clean_text, strict=True):
            assert smollm.tokenizer.decode(ids).strip() == text.strip()
            assert starts[-1] == len(ids) - 1
    gt = make_task("greater_than", smollm, n=4)
    i = gt.schema.index("ones")
    assert smollm.to_string([gt.clean[0][gt.starts[0][i]]]).isdigit()


def test_misaligned_pair_is_refused():
    t = toy_task()
    with pytest.raises(InputError, match="do not align"):
        TaskData("bad", t.schema, t.metric, t.clean, [r[:-1] for r in t.corrupted], t.starts, t.answer_ids,
                 t.answer_signs)


def test_missing_span_is_refused():
    t = toy_task()
    starts = [list(s) for s in t.starts]
    starts[2] = starts[2][:-1]
    with pytest.raises(InputError, match="maps 3 spans"):
        TaskData("bad", Schema(t.schema.names), t.metric, t.clean, t.corrupted, starts, t.answer_ids, t.answer_signs)


def test_constant_metric_is_refused():
    t = toy_task()
    const = TaskData("const", t.schema, t.metric, t.clean, t.corrupted, t.starts, t.answer_ids,
                     [[0.0, 0.0]] * len(t))
    with pytest.raises(InputError, match="nothing to attribute"):
        eap(GraphForward(tiny_llama()), const)


def test_ioi_records_each_example_template(smollm):
    from circuits.tasks.ioi import TEMPLATES

    task = make_task("ioi", smollm, n=12, seed=2)
    assert len(task.templates) == 12 and len(set(task.templates)) > 1
    for text, t in zip(task.clean_text, task.templates, strict=True):
        assert text.split()[0] == TEMPLATES[t].split()[0]  # "When" / "While" / "After"
    assert make_task("succession", smollm, n=3).templates == []  # one template: all share the mean
