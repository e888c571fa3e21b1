"""Save the JSON every analysis command writes on the embedded model, and compare two such captures.

Issue 27 (a refactor of how analyses are declared) asks for results that stay byte-identical where the
computation is unchanged. This script is the proof: capture on the tree before the change, capture on
the tree after it, compare.

    cd /path/to/tree-before && python /path/to/scripts/cli_results.py capture --out /tmp/cli-before
    python -m scripts.cli_results capture --tree /path/to/tree-after --out /tmp/cli-after
    python -m scripts.cli_results compare /tmp/cli-before /tmp/cli-after   # exit 1 on a real difference

capture runs `python -m app.cli COMMAND ...` of the tree (--tree, default the current folder) for each
command in STEPS, with small settings (smollm2-135m, --device cpu, --seed 0; a few minutes on 2 CPU
cores in all), each into OUT/<step>/ via --out. Every command runs with OUT as its working folder and
a relative --out, so that paths recorded in results (the SAE folder, the activation cache) are the same
in two captures; PYTHONPATH is the tree, and before anything runs the script checks that `app`,
`probes`, `circuits` and `saes` are imported from the tree and not from an installed copy. The thread
count is fixed (--threads, default 2: OMP/MKL and torch), since CPU reductions may depend on it.
OUT/_capture/ holds manifest.json (tree, its commit, each command line, exit status and seconds) and
each command's output log; compare leaves that folder out.

compare walks every *.json and *.jsonl file under A and B (jsonl line by line). Per file it prints
`identical` (the same bytes), `same data, other bytes` (equal once parsed), `ignorable` (differs only
at the paths IGNORABLE lists, or the whole file is one of IGNORABLE_FILES: what changes from one run
to the next, printed again below the table with its paths) or `DIFFERS` with the first differing key
path, both values and the number of differing paths. It exits 1 when a file differs beyond the
ignorable fields or is in only one capture. `--ext safetensors --ext npy` also compares the SAE and
BB weights and the activation cache byte for byte (HTML is not compared: plotly writes a random div
id into each page; *.pt neither: torch.save names its zip records after the temporary file).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: the repository root leads sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MODEL = "smollm2-135m"
SEED = "0"
CAPTURE_DIR = "_capture"  # manifest and logs; not compared

# What legitimately changes from one run of the same computation to the next, found by capturing twice
# on one tree: (file name pattern, path pattern, why). A differing path counts as ignorable when the
# path or one of its prefixes matches (re.fullmatch) in a file whose name matches (fnmatch).
IGNORABLE: tuple[tuple[str, str, str], ...] = (
    ("*", r"(.*\.)?created", "UTC time the result was written (probes.results.result_metadata)"),
    ("*", r"(.*\.)?versions", "Python and package versions: equal on one venv, listed in case it moves"),
    ("sae_train.json", r"seconds", "wall time of the SAE training"),
    ("bb_train.json", r"seconds", "wall time of the BB training"),
    ("summary.json", r"run", "atlas run times, loads and units computed in this invocation"),
    ("glasshouse.json", r'files\["training_state\.pt"\]', "sha256 of a torch.save zip whose records are "
     "named after the random temporary file of the atomic write (probes/bb/checkpoint.py)"),
)
# Files that are timings and nothing else.
IGNORABLE_FILES = {"unit_seconds.json": "run time of each atlas unit and model load"}

ATLAS_ANALYSES = ("sinks,sinks_bos,sinks_random,sinks_repeat,hidden_sinks,first_token_attention,residual_norms,"
                  "extreme_tokens,peak_ablation,dormant_heads,successor_heads,successor_in_context,circuit_greater_than,sae")

BATCH_PLAN = f"""\
name = "cli-results"
models = ["{MODEL}"]
seeds = [{SEED}]
backend = "local"
device = "cpu"
formats = ["html"]
figures = true

[[corpora]]
domain = "prose"
n = 4
length = 32

[[probes]]
name = "residual_norms"

[[probes]]
name = "first_token_attention"
sweep = {{ prepend_bos = [false, true] }}

[[probes]]
name = "sinks"

[[probes]]
name = "dormancy"
"""


@dataclass(frozen=True)
class Step:
    """One command: OUT/<name>/ gets its output; `needs` are steps whose output it reads."""

    name: str
    argv: tuple[str, ...]
    needs: tuple[str, ...] = ()
    stdout_file: str | None = None  # save stdout as OUT/<name>/<stdout_file> (a command that prints JSON)


def _model(*extra: str) -> tuple[str, ...]:
    return ("--model", MODEL, "--device", "cpu", "--seed", SEED, *extra)


STEPS: tuple[Step, ...] = (
    Step("sinks", ("sinks", *_model("--n", "4", "--seq-len", "32", "--batch-size", "4", "--interventions"))),
    Step("sinks_patterns", ("sinks", *_model("--n", "4", "--seq-len", "32", "--batch-size", "4", "--attention",
                                             "patterns", "--interventions"))),
    Step("sinks_bos", ("sinks", *_model("--n", "4", "--seq-len", "32", "--bos", "--regimes", "natural"))),
    Step("dormant", ("dormant", *_model("--n", "4", "--seq-len", "32", "--top", "1", "--controls", "1"))),
    Step("extreme", ("extreme", *_model("--n", "4", "--seq-len", "32"))),
    Step("extreme_prompt", ("extreme", *_model("--prompt", "Summer is warm. Winter is cold."))),
    Step("successor", ("successor", *_model("--n", "4", "--natural", "2"))),
    Step("circuit", ("circuit", "greater_than", *_model("--n", "4", "--points", "10,100"))),
    Step("sae_train", ("sae", "train", *_model("--d-sae", "64", "--k", "8", "--tokens", "2048", "--batch-size", "256",
                                               "--seq-len", "32", "--checkpoint-every", "4"))),
    Step("sae_eval", ("sae", "eval", "sae_train/topk/sae", *_model("--n", "4", "--seq-len", "32")), ("sae_train",)),
    Step("sae_dashboard", ("sae", "dashboard", "sae_train/topk/sae",
                           *_model("--features", "0", "1", "--n", "4", "--seq-len", "32")), ("sae_train",)),
    Step("bb_train", ("bb", "train", "--steps", "20", "--batch-size", "16", "--d-model", "32", "--seq-len", "17",
                      "--eval-every", "10", "--checkpoint-every", "10", "--device", "cpu", "--seed", SEED)),
    Step("bb_eval", ("bb", "eval", "bb_train", "--n", "16"), ("bb_train",)),
    Step("batch", ("batch", "batch.toml", "--no-progress")),
    Step("atlas", ("atlas", MODEL, "--budget", "small", "--analyses", ATLAS_ANALYSES, "--device", "cpu", "--seed",
                   SEED, "--no-progress")),
    Step("info", ("info", MODEL, "--device", "cpu", "--json"), stdout_file="info.json"),
    Step("export_sinks", ("export", "sinks/sinks.json", "--format", "html"), ("sinks",)),
    Step("export_circuit", ("export", "circuit/circuit.json", "--format", "html"), ("circuit",)),
)
NOT_CAPTURED = {
    "app": "starts the Streamlit server; writes no result",
    "models": "lists the model conversion cache of this machine, which changes as models are converted",
}


def _env(tree: Path, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)  # the tree's packages come before any installed copy (checked in _check_tree)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONHASHSEED="0",
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def _check_tree(python: str, tree: Path, out: Path, env: dict[str, str]) -> dict[str, str]:
    """Where each package of ours is imported from, in the commands' working folder; exit if not the tree."""
    code = "import json, app, probes, circuits, saes; print(json.dumps({m.__name__: m.__file__ for m in (app, probes, circuits, saes)}))"
    done = subprocess.run([python, "-c", code], cwd=out, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"cannot import the packages from {tree}:\n{done.stderr}")
    files: dict[str, str] = json.loads(done.stdout)
    wrong = {name: f for name, f in files.items() if not Path(f).resolve().is_relative_to(tree)}
    if wrong:
        raise SystemExit(f"these packages are not imported from {tree}: {wrong}")
    return files


def _git_head(tree: Path) -> str:
    done = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False)
    head = done.stdout.strip() or "unknown"
    return head + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def capture(out: Path, tree: Path, python: str, threads: int, only: list[str] | None) -> int:
    tree, out = tree.resolve(), out.resolve()
    if not (tree / "app" / "cli.py").is_file():
        raise SystemExit(f"{tree} is not a Glasshouse tree (no app/cli.py); pass --tree")
    names = [s.name for s in STEPS]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise SystemExit(f"unknown steps {unknown}; choose from {', '.join(names)}")
    steps = [s for s in STEPS if only is None or s.name in only]
    if only is None and out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty: capture into a new folder (or name steps with --only to redo them)")
    out.mkdir(parents=True, exist_ok=True)
    (out / CAPTURE_DIR).mkdir(exist_ok=True)
    (out / "batch.toml").write_text(BATCH_PLAN)
    env = _env(tree, threads)
    modules = _check_tree(python, tree, out, env)
    manifest_path = out / CAPTURE_DIR / "manifest.json"
    manifest: dict[str, Any] = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"steps": {}}
    script = Path(__file__).resolve()
    manifest.update(tree=str(tree), commit=_git_head(tree), python=python, threads=threads, modules=modules,
                    script=str(script), script_sha256=hashlib.sha256(script.read_bytes()).hexdigest(),
                    not_captured=NOT_CAPTURED)
    print(f"capturing {len(steps)} command(s) of {tree} ({manifest['commit']}) into {out}", flush=True)
    failed: list[str] = []
    total = time.perf_counter()
    for step in steps:
        missing = [n for n in step.needs if n in failed or manifest["steps"].get(n, {}).get("rc") != 0]
        if missing:
            print(f"{step.name:<24} skipped: needs {', '.join(missing)}", flush=True)
            manifest["steps"][step.name] = {"argv": list(step.argv), "rc": None, "skipped": f"needs {missing}"}
            failed.append(step.name)
            continue
        folder = out / step.name
        if folder.exists():
            shutil.rmtree(folder)
        argv = [*step.argv, *(("--out", step.name) if step.stdout_file is None else ())]
        log = out / CAPTURE_DIR / f"{step.name}.log"
        started = time.perf_counter()
        with open(log, "w") as err:
            done = subprocess.run([python, "-m", "app.cli", *argv], cwd=out, env=env, stdout=subprocess.PIPE,
                                  stderr=err, text=True, check=False)
        seconds = time.perf_counter() - started
        with open(log, "a") as err:
            err.write("\n--- stdout ---\n" + done.stdout)
        if step.stdout_file is not None and done.returncode == 0:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / step.stdout_file).write_text(done.stdout)
        manifest["steps"][step.name] = {"argv": ["glasshouse", *argv], "rc": done.returncode,
                                        "seconds": round(seconds, 1)}
        state = "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode}; see {log})"
        print(f"{step.name:<24} {seconds:6.1f} s  {state}", flush=True)
        if done.returncode != 0:
            failed.append(step.name)
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"total {time.perf_counter() - total:.1f} s; manifest {manifest_path}", flush=True)
    return 1 if failed else 0


# ---- compare -------------------------------------------------------------------------------------------


def result_files(root: Path, extra: tuple[str, ...] = ()) -> dict[str, Path]:
    """Relative path -> file, for every *.json and *.jsonl (and *.<extra>) under root, the capture folder left out."""
    suffixes = {".json", ".jsonl", *(f".{e.lstrip('.')}" for e in extra)}
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] == CAPTURE_DIR or not path.is_file() or path.suffix not in suffixes:
            continue
        found[rel.as_posix()] = path
    return found


def _load(path: Path) -> Any:
    text = path.read_text()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def _step(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def differences(a: Any, b: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, value in a, value in b) of every place where a and b differ, in a's order.

    Numbers compare by value and type (1 and 1.0 differ: the JSON differs); a key in one side only is
    a difference whose other value is the string '<absent>'.
    """
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            where = _step(path, key)
            if key not in b:
                yield where, a[key], "<absent>"
            elif key not in a:
                yield where, "<absent>", b[key]
            else:
                yield from differences(a[key], b[key], where)
    elif isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            yield from differences(x, y, _step(path, i))
        if len(a) != len(b):
            yield f"{path}.<length>", len(a), len(b)
    elif type(a) is not type(b) or a != b:
        if not (isinstance(a, float) and isinstance(b, float) and a != a and b != b):  # NaN == NaN here
            yield path or "<top>", a, b


def _short(value: Any, other: Any = None, width: int = 80) -> str:
    """value as JSON, cut to width; two long strings are shown from a little before where they part."""
    if isinstance(value, str) and isinstance(other, str) and len(value) > width:
        start = max(0, next((i for i, (x, y) in enumerate(zip(value, other, strict=False)) if x != y),
                            min(len(value), len(other))) - 20)
        return repr(("..." if start else "") + value[start : start + width - 6] + "...")
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def compare_file(a: Path, b: Path) -> dict[str, Any]:
    """One file's verdict: identical, same-data, ignorable or differs, with the paths that tell why."""
    if a.read_bytes() == b.read_bytes():
        return {"verdict": "identical"}
    if a.name in IGNORABLE_FILES:
        return {"verdict": "ignorable", "ignorable": [f"<whole file: {IGNORABLE_FILES[a.name]}>"]}
    if a.suffix not in (".json", ".jsonl"):
        return {"verdict": "differs", "first": "<bytes>", "count": 1, "ignorable": []}
    try:
        left, right = _load(a), _load(b)
    except ValueError as exc:
        return {"verdict": "differs", "first": f"<not JSON: {exc}>", "count": 1, "ignorable": []}
    real: list[tuple[str, Any, Any]] = []
    ignored: set[str] = set()
    for path, x, y in differences(left, right):
        root = ignorable_root(a.name, path)
        if root is None:
            real.append((path, x, y))
        else:
            ignored.add(root)
    if not real and not ignored:
        return {"verdict": "same-data"}
    if not real:
        return {"verdict": "ignorable", "ignorable": sorted(ignored)}
    path, x, y = real[0]
    return {"verdict": "differs", "first": path, "a": x, "b": y, "count": len(real), "ignorable": sorted(ignored)}


def ignorable_root(file_name: str, path: str) -> str | None:
    """The shortest prefix of path that an IGNORABLE rule of this file matches (versions.torch -> versions)."""
    cuts = [i for i, c in enumerate(path) if c in ".[" and i > 0] + [len(path)]
    for cut in cuts:
        prefix = path[:cut]
        if any(fnmatch.fnmatch(file_name, glob) and re.fullmatch(rule, prefix) for glob, rule, _ in IGNORABLE):
            return prefix
    return None


def _manifest_warnings(a: Path, b: Path) -> list[str]:
    """Steps whose command lines differ between the two captures, or that failed: their results cannot agree."""
    found: list[str] = []
    steps: list[dict[str, Any]] = []
    for root in (a, b):
        path = root / CAPTURE_DIR / "manifest.json"
        if not path.is_file():
            return [f"no {CAPTURE_DIR}/manifest.json in {root}: command lines not checked"]
        steps.append(json.loads(path.read_text()).get("steps", {}))
    for name in sorted(steps[0].keys() & steps[1].keys()):
        if steps[0][name].get("argv") != steps[1][name].get("argv"):
            found.append(f"step {name} ran other command lines: {steps[0][name].get('argv')} / {steps[1][name].get('argv')}")
    for root, ran in zip((a, b), steps, strict=True):
        found += [f"step {name} did not succeed in {root} (exit {s.get('rc')})" for name, s in ran.items() if s.get("rc") != 0]
    return found


def compare(a: Path, b: Path, as_json: bool, extra: tuple[str, ...] = ()) -> int:
    left, right = result_files(a, extra), result_files(b, extra)
    if not left and not right:
        raise SystemExit(f"no *.json or *.jsonl files under {a} or {b}")
    report: dict[str, dict[str, Any]] = {}
    for rel in sorted(left.keys() | right.keys()):
        if rel not in right:
            report[rel] = {"verdict": "only-in-a"}
        elif rel not in left:
            report[rel] = {"verdict": "only-in-b"}
        else:
            report[rel] = compare_file(left[rel], right[rel])
    bad = [rel for rel, r in report.items() if r["verdict"] in ("differs", "only-in-a", "only-in-b")]
    for line in _manifest_warnings(a, b):
        print(f"warning: {line}", file=sys.stderr)
    if as_json:
        print(json.dumps({"a": str(a), "b": str(b), "files": report, "failing": bad}, indent=2, default=str))
        return 1 if bad else 0
    width = max(len(rel) for rel in report)
    ignorable_fields: dict[str, list[str]] = {}
    for rel, r in report.items():
        verdict = r["verdict"]
        if verdict == "differs":
            line = (f"DIFFERS at {r['first']}: {_short(r.get('a'), r.get('b'))} != {_short(r.get('b'), r.get('a'))} "
                    f"({r['count']} differing path(s))")
        elif verdict == "ignorable":
            line = "ignorable (only run-to-run fields differ)"
        elif verdict == "same-data":
            line = "same data, other bytes"
        elif verdict.startswith("only-in"):
            line = f"ONLY IN {a if verdict == 'only-in-a' else b}"
        else:
            line = "identical"
        print(f"{rel:<{width}}  {line}")
        if r.get("ignorable"):
            ignorable_fields[rel] = r["ignorable"]
    if ignorable_fields:
        print("\nfields that differ and are ignorable (scripts/cli_results.py IGNORABLE, IGNORABLE_FILES):")
        for rel, fields in ignorable_fields.items():
            print(f"  {rel}: {', '.join(fields)}")
    counts: dict[str, int] = {}
    for r in report.values():
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    print("\n" + ", ".join(f"{n} {v}" for v, n in sorted(counts.items())) + f" ({len(report)} files)")
    print("RESULT: " + ("identical up to run-to-run fields" if not bad else f"{len(bad)} file(s) differ"))
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cli_results", description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="action", required=True)
    cap = sub.add_parser("capture", help="run every analysis command of a tree on the embedded model")
    cap.add_argument("--out", type=Path, required=True, help="capture folder (new, or with --only)")
    cap.add_argument("--tree", type=Path, default=Path.cwd(), help="the Glasshouse checkout to run (default: here)")
    cap.add_argument("--python", default=sys.executable, help="interpreter with the dependencies (default: this one)")
    cap.add_argument("--threads", type=int, default=2, help="OMP/MKL threads (fixed so that two captures agree)")
    cap.add_argument("--only", default=None, help="comma-separated steps to (re)run: " + ", ".join(s.name for s in STEPS))
    cmp = sub.add_parser("compare", help="compare the JSON files of two captures")
    cmp.add_argument("a", type=Path)
    cmp.add_argument("b", type=Path)
    cmp.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    cmp.add_argument("--ext", action="append", default=[],
                     help="also compare files with this ending byte for byte (repeatable; e.g. safetensors, npy)")
    sub.add_parser("list", help="print the steps and their command lines")
    args = parser.parse_args(argv)
    if args.action == "capture":
        only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
        return capture(args.out, args.tree, args.python, args.threads, only)
    if args.action == "compare":
        return compare(args.a, args.b, args.json, tuple(args.ext))
    for step in STEPS:
        print(f"{step.name:<24} glasshouse {' '.join(step.argv)}")
    for name, why in NOT_CAPTURED.items():
        print(f"{name:<24} not captured: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
