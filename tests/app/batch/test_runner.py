"""Batch runner: plan validation, resume after kills at every stage, torn lines, result schema (docs/batch.md).

The resume tests use a toy probe (no model) so that many kill points stay cheap; the real probes
are checked against independent computations in test_builtin.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from app.batch import ProbeEntry, Setting, parse_plan, read_results, register, run_plan
from app.batch.plan import PlanError
from app.batch.registry import unregister
from app.batch.runner import ROW_FIELDS
from app.cli import main

ROOT = Path(__file__).resolve().parents[3]


class CharTokenizer:
    """A tokenizer of bytes: enough for probes.corpus.sample."""

    bos_token_id = 1

    def __call__(self, text, add_special_tokens=False):
        class Out:
            input_ids = [b % 250 + 2 for b in text.encode()]

        return Out()

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


class FakeModel:
    tokenizer = CharTokenizer()


def toy_run(model, settings, corpus, seed):
    ids = corpus.ids.double()
    return [{"metric": "toy", "value": float(ids[:, p].mean() * settings["scale"] + seed), "layer": 0,
             "head": None, "position": p} for p in range(ids.shape[1])]


@pytest.fixture
def toy_probe():
    register(ProbeEntry("toy", "test probe", toy_run,
                        {"scale": Setting(float, 1.0, "a factor"), "tag": Setting(str, "a", "a label", choices=("a", "b"))}),
             replace=True)
    yield
    unregister("toy")


def toy_plan(**extra):
    data = {"name": "toy", "models": ["smollm2-135m"], "seeds": [0, 1],
            "corpora": [{"domain": "code", "n": 2, "length": 6}],
            "probes": [{"name": "toy", "sweep": {"scale": [1.0, 2.0, 3.0]}}], "figures": False}
    data.update(extra)
    return parse_plan(data, check_models=lambda spec: None)


def loader(plan, spec):
    return FakeModel()


class Crash(Exception):
    pass


def crash_at(stage, k):
    def hook(s, i, unit):
        if s == stage and i == k:
            raise Crash(f"{stage}@{k}")

    return hook


def canonical(rows):
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


def check_complete(folder, plan, reference):
    rows = read_results(folder)
    assert canonical(rows) == reference
    lines = (folder / "results.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines)) == len(reference)  # no duplicates on disk either
    done = (folder / "done.txt").read_text().split()
    assert sorted(done) == sorted(u.uid for u in plan.units())


def test_plan_validation_lists_every_problem(toy_probe):
    data = {"models": ["smollm2-135m", "./no/such/folder"], "colour": "red", "backend": "cloud",
            "formats": ["html", "gif"],
            "corpora": [{"domain": "poetry", "n": 0, "length": 8, "extra": 1}],
            "probes": [{"name": "no_such_probe"},
                       {"name": "toy", "settings": {"scale": "big", "colour": 1}, "sweep": {"tag": ["a", "c"]}},
                       {"name": "first_token_attention", "settings": {"min_query": 0}}]}
    with pytest.raises(PlanError) as err:
        parse_plan(data)
    msg = str(err.value)
    for expected in ["unknown key 'colour'", "backend must be one of", "format 'gif' unknown",
                     "domain must be one of", "'n' must be an integer >= 1", "unknown key 'extra'",
                     "unknown probe 'no_such_probe'", "setting 'scale' must be a number",
                     "has no setting 'colour'", "setting 'tag' must be one of ['a', 'b'], got 'c'",
                     "setting 'min_query' must be at least 1", "model './no/such/folder' cannot be loaded"]:
        assert expected in msg, expected
    assert "probe 'toy' has no remote (nnsight) version" in msg  # backend is not local
    assert msg.count("\n  - ") == 13
    assert "smollm2-135m' cannot" not in msg  # resolve_spec accepts the embedded model


def test_plan_expands_sweeps_with_defaults_and_stable_ids(toy_probe):
    plan = toy_plan()
    units = plan.units()
    assert len(units) == 6  # 2 seeds x 3 scales
    assert [u.settings for u in units[:3]] == [{"scale": s, "tag": "a"} for s in (1.0, 2.0, 3.0)]
    assert len({u.uid for u in units}) == 6
    assert [u.uid for u in toy_plan().units()] == [u.uid for u in units]


def test_resume_after_kill_at_every_stage(toy_probe, tmp_path):
    plan = toy_plan()
    ref_dir = tmp_path / "ref"
    summary = run_plan(plan, ref_dir, loader=loader, progress=False)
    assert (summary.total, summary.computed) == (6, 6)
    reference = canonical(read_results(ref_dir))
    assert len(reference) == 6 * 6
    for stage in ("start", "computed", "rows", "done"):
        for k in (0, 2, 5):
            folder = tmp_path / f"{stage}{k}"
            with pytest.raises(Crash):
                run_plan(plan, folder, loader=loader, progress=False, hook=crash_at(stage, k))
            if stage == "rows":  # rows written, marker not: the unit must be dropped and rerun once
                assert len(read_results(folder)) == 6 * k
            second = run_plan(plan, folder, loader=loader, progress=False)
            finished_before = k + (1 if stage == "done" else 0)
            assert second.skipped == finished_before and second.computed == 6 - finished_before
            check_complete(folder, plan, reference)
            again = run_plan(plan, folder, loader=loader, progress=False)
            assert again.computed == 0
            check_complete(folder, plan, reference)


def test_torn_lines_and_double_kill_are_tolerated(toy_probe, tmp_path):
    plan = toy_plan()
    reference_dir = tmp_path / "ref"
    run_plan(plan, reference_dir, loader=loader, progress=False)
    reference = canonical(read_results(reference_dir))
    folder = tmp_path / "torn"
    with pytest.raises(Crash):
        run_plan(plan, folder, loader=loader, progress=False, hook=crash_at("rows", 1))
    with open(folder / "results.jsonl", "ab") as fh:  # a write cut mid-line
        fh.write(b'{"unit": "u0000", "metric": "to')
    with open(folder / "done.txt", "ab") as fh:
        fh.write(b"u12")
    with pytest.raises(Crash):
        run_plan(plan, folder, loader=loader, progress=False, hook=crash_at("computed", 2))
    summary = run_plan(plan, folder, loader=loader, progress=False)
    assert summary.skipped == 3
    check_complete(folder, plan, reference)


def test_result_schema_round_trip(toy_probe, tmp_path):
    plan = toy_plan(seeds=[3])
    run_plan(plan, tmp_path, loader=loader, progress=False)
    rows = read_results(tmp_path)
    assert len(rows) == 3 * 6
    for row in rows:
        assert tuple(sorted(row)) == tuple(sorted(ROW_FIELDS))
        assert row["model"] == "smollm2-135m" and row["probe"] == "toy" and row["seed"] == 3
        assert row["corpus"] == {"domain": "code", "n": 2, "length": 6}
        assert set(row["versions"]) >= {"python", "torch", "transformers"}
        assert isinstance(row["value"], float) and row["head"] is None
    units = {u.uid: u for u in plan.units()}
    for row in rows:
        assert units[row["unit"]].settings == row["settings"]
    plan_json = json.loads((tmp_path / "plan.json").read_text())
    assert plan_json["probes"][0]["sweep"] == {"scale": [1.0, 2.0, 3.0]}


SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    sys.path.insert(0, {here!r})
    from test_runner import toy_plan, loader, toy_run
    from app.batch import ProbeEntry, Setting, register, run_plan
    def slow(model, settings, corpus, seed):
        time.sleep(0.15)
        return toy_run(model, settings, corpus, seed)
    register(ProbeEntry("toy", "test probe", slow, {{"scale": Setting(float, 1.0, "f"),
             "tag": Setting(str, "a", "t", choices=("a", "b"))}}), replace=True)
    run_plan(toy_plan(seeds=[0, 1, 2, 3]), {out!r}, loader=loader, progress=False)
""")


def test_resume_after_sigkill_of_a_subprocess(toy_probe, tmp_path):
    plan = toy_plan(seeds=[0, 1, 2, 3])
    run_plan(plan, tmp_path / "ref", loader=loader, progress=False)
    reference = canonical(read_results(tmp_path / "ref"))
    folder = tmp_path / "killed"
    script = tmp_path / "job.py"
    script.write_text(SCRIPT.format(root=str(ROOT), here=str(Path(__file__).parent), out=str(folder)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for stop_after in (2, 7):  # kill twice, at different points
        proc = subprocess.Popen([sys.executable, str(script)], env=env)
        deadline = time.time() + 120
        while time.time() < deadline:
            done = folder / "done.txt"
            if done.exists() and len(done.read_text().split()) >= stop_after:
                break
            assert proc.poll() is None, "the batch job ended before it could be killed"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len((folder / "done.txt").read_text().split()) < 12
    run_plan(plan, folder, loader=loader, progress=False)
    check_complete(folder, plan, reference)


def test_cli_check_and_errors(toy_probe, tmp_path, capsys):
    good = tmp_path / "plan.toml"
    good.write_text(textwrap.dedent("""
        models = ["smollm2-135m"]
        [[corpora]]
        domain = "prose"
        n = 2
        length = 8
        [[probes]]
        name = "first_token_attention"
        sweep = { prepend_bos = [false, true], min_query = [1, 2] }
    """))
    assert main(["batch", str(good), "--check"]) == 0
    out = capsys.readouterr().out
    assert "4 unit(s)" in out and "prepend_bos=True" in out
    bad = tmp_path / "bad.toml"
    bad.write_text('models = ["smollm2-135m"]\n[[probes]]\nname = "nope"\n')
    assert main(["batch", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "'corpora' must be one or more" in err and "unknown probe 'nope'" in err
    assert not (tmp_path / "runs").exists()


HOLDER = textwrap.dedent("""
    # Holds a run folder the way probes.runfolder does (flock + owner JSON), without importing torch.
    import fcntl, json, os, socket, sys, time
    folder = sys.argv[1]
    os.makedirs(os.path.join(folder, "figures"), exist_ok=True)
    fh = open(os.path.join(folder, ".glasshouse.lock"), "a+")
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": "holder"}))
    fh.flush()
    for name in (".results.jsonl.ab12cd_3.tmp", "figures/.toy.html.zz99zz99.tmp"):  # a write cut by the kill
        open(os.path.join(folder, name), "w").write("partial")
    print("held", flush=True)
    time.sleep(120)
""")


def _hold_in_subprocess(folder):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_run_folder_belongs_to_one_run(toy_probe, tmp_path, capsys):
    """A second run on a held folder is refused; after a SIGKILL the lock is taken over, the killed run's
    temporary files are removed, and no row is duplicated (docs/cli.md)."""
    from probes.errors import RunFolderError

    plan = toy_plan()
    run_plan(plan, tmp_path / "ref", loader=loader, progress=False)
    reference = canonical(read_results(tmp_path / "ref"))
    folder = tmp_path / "shared"
    with pytest.raises(Crash):
        run_plan(plan, folder, loader=loader, progress=False, hook=crash_at("done", 2))
    proc = _hold_in_subprocess(folder)
    try:
        with pytest.raises(RunFolderError, match=rf"in use by another run \(pid {proc.pid} .*holder"):
            run_plan(plan, folder, loader=loader, progress=False)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    leftovers = [folder / ".results.jsonl.ab12cd_3.tmp", folder / "figures" / ".toy.html.zz99zz99.tmp"]
    keep = folder / "notes.tmp"
    keep.write_text("not ours")
    assert all(p.exists() for p in leftovers)
    capsys.readouterr()
    run_plan(plan, folder, loader=loader, progress=False)
    assert f"taking over the lock of a run that ended without releasing it (pid {proc.pid}" in capsys.readouterr().err
    assert not any(p.exists() for p in leftovers) and keep.exists()
    assert not (folder / ".glasshouse.lock").exists()
    check_complete(folder, plan, reference)


def test_rows_of_a_unit_run_twice_are_kept_once(toy_probe, tmp_path):
    """A folder two unlocked runs wrote (every unit's rows and done-marker twice) is repaired on open."""
    plan = toy_plan()
    folder = tmp_path / "twice"
    run_plan(plan, folder, loader=loader, progress=False)
    reference = canonical(read_results(folder))
    for name in ("results.jsonl", "done.txt"):
        text = (folder / name).read_text()
        (folder / name).write_text(text + text)
    summary = run_plan(plan, folder, loader=loader, progress=False)
    assert summary.computed == 0 and summary.recovered["duplicate_rows"] == len(reference)
    check_complete(folder, plan, reference)


def test_cli_refuses_a_held_run_folder(toy_probe, tmp_path, capsys):
    plan = tmp_path / "plan.toml"
    plan.write_text('models = ["smollm2-135m"]\n[[corpora]]\ndomain = "prose"\nn = 1\nlength = 4\n'
                    '[[probes]]\nname = "toy"\n')
    folder = tmp_path / "run"
    holder = _hold_in_subprocess(folder)
    try:
        assert main(["batch", str(plan), "--out", str(folder)]) == 1
        err = capsys.readouterr().err
        assert f"{folder} is in use by another run (pid {holder.pid}" in err and "Traceback" not in err
    finally:
        holder.kill()
        holder.wait()


def test_renames_and_new_files_fsync_their_folder(tmp_path, monkeypatch):
    """atomic_write fsyncs the folder after its rename; the store fsyncs it after creating a file."""
    import stat

    from app.batch.store import ResultStore
    from probes.io import write_json

    synced = []
    real = os.fsync

    def record(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            synced.append(os.fstat(fd).st_ino)
        return real(fd)

    monkeypatch.setattr(os, "fsync", record)
    folder = tmp_path / "run"
    write_json(folder / "plan.json", {"a": 1})
    assert synced == [folder.stat().st_ino]
    store = ResultStore(folder)
    store.mark_done("u1")
    store.mark_done("u2")  # the file exists now: no second folder fsync
    assert synced == [folder.stat().st_ino] * 2
