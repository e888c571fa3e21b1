"""scripts/cli_results.py compare: verdicts and first differing paths on two small hand-made captures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.cli_results import STEPS, compare, compare_file, differences


def _write(root: Path, rel: str, data: object, jsonl: bool = False) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = data if jsonl and isinstance(data, list) else [data]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n" if jsonl else json.dumps(data))


def test_first_differing_path_walks_dicts_and_lists() -> None:
    a = {"model": "m", "regimes": {"natural": {"alpha": [[0.5, 0.25], [1.0, 2.0]]}}, "n": 1}
    b = {"model": "m", "regimes": {"natural": {"alpha": [[0.5, 0.25], [1.0, 2.5]]}}, "n": 1.0, "x": 0}
    found = list(differences(a, b))
    assert found == [("regimes.natural.alpha[1][1]", 2.0, 2.5), ("n", 1, 1.0), ("x", "<absent>", 0)]
    assert list(differences([1, 2], [1])) == [(".<length>", 2, 1)]
    assert list(differences({"v": float("nan")}, {"v": float("nan")})) == []


def test_verdicts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    same = {"kind": "sinks", "sink1": {"natural": 81.5}}
    for root, created, version, value in ((a, "2024-01-01", "2.13", 0.5), (b, "2025-02-02", "2.14", 0.5)):
        _write(root, "sinks/sinks.json", same)
        _write(root, "dormant/dormant.json", {"created": created, "versions": {"torch": version}, "v": value})
        _write(root, "_capture/manifest.json", {"tree": str(root)})  # never compared
    _write(a, "extreme/extreme.json", {"created": "x", "rows": [{"value": 1.0}]})
    _write(b, "extreme/extreme.json", {"created": "y", "rows": [{"value": 1.5}]})
    _write(a, "batch/results.jsonl", [{"value": 1.0}, {"value": 2.0}], jsonl=True)
    _write(b, "batch/results.jsonl", [{"value": 1.0}, {"value": 2.0000001}], jsonl=True)
    (b / "sinks" / "other.json").write_text(json.dumps(same, indent=1))  # only in b
    assert compare_file(a / "dormant/dormant.json", b / "dormant/dormant.json") == {
        "verdict": "ignorable", "ignorable": ["created", "versions"]}
    extreme = compare_file(a / "extreme/extreme.json", b / "extreme/extreme.json")
    assert (extreme["verdict"], extreme["first"], extreme["a"], extreme["b"]) == ("differs", "rows[0].value", 1.0, 1.5)
    assert extreme["ignorable"] == ["created"]
    assert compare_file(a / "batch/results.jsonl", b / "batch/results.jsonl")["first"] == "[1].value"
    _write(a, "bb/step_1/glasshouse.json", {"files": {"model.safetensors": "1", "training_state.pt": "2"}})
    _write(b, "bb/step_1/glasshouse.json", {"files": {"model.safetensors": "1", "training_state.pt": "3"}})
    assert compare_file(a / "bb/step_1/glasshouse.json", b / "bb/step_1/glasshouse.json")["ignorable"] == [
        'files["training_state.pt"]']
    _write(b, "bb/step_1/glasshouse.json", {"files": {"model.safetensors": "4", "training_state.pt": "2"}})
    assert compare_file(a / "bb/step_1/glasshouse.json", b / "bb/step_1/glasshouse.json")["verdict"] == "differs"
    (b / "bb/step_1/glasshouse.json").unlink()
    (a / "bb/step_1/glasshouse.json").unlink()

    assert compare(a, b, as_json=False) == 1
    out = capsys.readouterr().out
    assert "_capture" not in out
    assert "sinks/sinks.json" in out and "identical" in out
    assert "DIFFERS at rows[0].value: 1.0 != 1.5" in out
    assert "ONLY IN" in out and "3 file(s) differ" in out

    (b / "sinks" / "other.json").unlink()
    _write(b, "extreme/extreme.json", {"created": "y", "rows": [{"value": 1.0}]})
    _write(b, "batch/results.jsonl", [{"value": 1.0}, {"value": 2.0}], jsonl=True)
    assert compare(a, b, as_json=True) == 0
    report = json.loads(capsys.readouterr().out)
    assert {rel: r["verdict"] for rel, r in report["files"].items()} == {
        "batch/results.jsonl": "identical", "dormant/dormant.json": "ignorable", "extreme/extreme.json": "ignorable",
        "sinks/sinks.json": "identical"}


def test_steps_are_unique_and_read_only_earlier_steps() -> None:
    names = [s.name for s in STEPS]
    assert len(names) == len(set(names))
    for i, step in enumerate(STEPS):
        assert set(step.needs) <= set(names[:i]), step.name
