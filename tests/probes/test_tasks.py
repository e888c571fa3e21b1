"""The task format (probes/tasks): files read the same in every format, bad examples named, splits seeded."""

from __future__ import annotations

import json

import pytest

from probes.errors import InputError
from probes.tasks import builtin_names, load_task, make_builtin, require_equal_lengths, require_single_token
from probes.tasks.format import split_indices

RECORDS = [{"prompt": "The capital of France is", "answer": " Paris", "choices": [" Paris", " Rome"]},
           {"prompt": "The capital of Italy is", "answer": " Rome", "choices": [" Paris", " Rome"],
            "corrupted_prompt": "The capital of Spain is", "spans": {"country": [15, 20]}}] * 3


def _write(tmp_path, kind: str, records=RECORDS):
    path = tmp_path / f"task.{kind}"
    if kind == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    elif kind == "json":
        path.write_text(json.dumps({"examples": records}))
    else:
        lines = ["prompt,answer,choices,corrupted_prompt,spans"]
        for r in records:
            cells = [r["prompt"], r["answer"], json.dumps(r.get("choices", "")), r.get("corrupted_prompt", ""),
                     json.dumps(r["spans"]) if "spans" in r else ""]
            lines.append(",".join('"' + str(c).replace('"', '""') + '"' if c else "" for c in cells))
        path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv"])
def test_every_format_reads_the_same_examples(tmp_path, kind):
    task = load_task(str(_write(tmp_path, kind)))
    assert [ex.to_dict() for ex in task.examples] == [{**r, **({"spans": {"country": [15, 20]}} if "spans" in r else {})}
                                                      for r in RECORDS]
    assert task.multiple_choice and sorted(sum(task.splits.values(), [])) == list(range(len(RECORDS)))


@pytest.mark.parametrize(("record", "message"), [
    ({"answer": " x"}, "'prompt' is missing"),
    ({"prompt": "a", "answer": " x", "choices": [" y", " z"]}, "is not among the choices"),
    ({"prompt": "a", "answer": " x", "choices": [" x"]}, "at least two"),
    ({"prompt": "a", "answer": " x", "label": 1}, "unknown field"),
    ({"prompt": "a", "answer": ""}, "non-empty text"),
    ({"prompt": "abc", "answer": " x", "spans": {"s": [2, 9]}}, "span 's'"),
])
def test_bad_examples_are_named_with_their_line(tmp_path, record, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(InputError, match=rf"bad.jsonl line 2: .*{message}"):
        load_task(str(path))


def test_files_and_names_that_cannot_be_read(tmp_path):
    (tmp_path / "broken.jsonl").write_text('{"prompt": "a", "answer": " b"}\n{"prompt": \n')
    with pytest.raises(InputError, match="broken.jsonl line 2 is not valid JSON"):
        load_task(str(tmp_path / "broken.jsonl"))
    with pytest.raises(InputError, match="Unknown task 'nope'. Built-in tasks: antonyms"):
        load_task("nope")
    with pytest.raises(InputError, match="does not exist"):
        load_task(str(tmp_path / "missing.csv"))
    mixed = [RECORDS[0], {"prompt": "b", "answer": " c"}]
    with pytest.raises(InputError, match="some examples have 'choices' and some do not"):
        load_task(str(_write(tmp_path, "jsonl", mixed)))


def test_splits_are_seeded_disjoint_and_cover_every_example():
    a, b, c = split_indices(50, 1), split_indices(50, 1), split_indices(50, 2)
    assert a == b and a != c
    assert sorted(a["train"] + a["dev"] + a["test"]) == list(range(50))
    assert (len(a["train"]), len(a["dev"]), len(a["test"])) == (30, 10, 10)
    assert all(len(split_indices(3, 0)[s]) == 1 for s in ("train", "dev", "test"))


@pytest.mark.parametrize("name", builtin_names())
def test_builtin_tasks_are_valid_and_next_token_answers_are_single_tokens(smollm, name):
    task = make_builtin(name, seed=3)
    assert task.examples and make_builtin(name, seed=3).examples == task.examples
    encode = lambda text: smollm.tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
    if not task.multiple_choice:  # choices may be several tokens (summed); next-token answers are one
        require_single_token(task, encode)
    for ex in task.examples:
        assert ex.choices is None or ex.answer in ex.choices


def test_tokenizer_checks_name_the_example(smollm):
    encode = lambda text: smollm.tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
    task = load_task("capitals")
    with pytest.raises(InputError, match="capitals example 1: .* the example has none"):
        require_equal_lengths(task, encode)
    from probes.tasks.format import TaskSet, examples_from

    long = TaskSet("t", examples_from([{"prompt": "a", "answer": " antidisestablishmentarianism"}], "t"))
    with pytest.raises(InputError, match="t example 1: .* tokens"):
        require_single_token(long, encode)
