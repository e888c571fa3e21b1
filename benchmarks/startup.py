"""Startup costs (benchmarks/RESULTS.md): the conversion cache against the GGUF load it replaces, and the CLI's start.

In one run, interleaved rounds, each case in a fresh process (CPU = user + system of that
process and its threads, wall beside it):
- convert: load_model with an empty cache folder (the GGUF parsed once, de-quantized, saved, reloaded
  and its logits checked against the GGUF model's);
- cached: load_model from the converted copy;
- gguf: the load the cache replaces, as main did it (AutoTokenizer + AutoModelForCausalLM on the GGUF,
  which parses it three times, then the bridge);
- gguf-once: load_model with the cache off (GLASSHOUSE_CACHE=off: the GGUF parsed once, no copy);
- info: `glasshouse info MODEL --json` end to end, cached; help: `glasshouse --help` end to end;
  argerror: `glasshouse sinks --n x` (an argparse error) end to end.
The load cases time load_model alone, in a process whose torch/transformers/TransformerLens
imports are already done (they cost the same in every case); info/help/argerror are whole processes.
The logits of a fixed prompt from `cached` and `gguf` are compared bit for bit (SHA-256 of the
float32 bytes). A temporary cache folder is used; the user's cache is not touched.

    python -m benchmarks.startup [--model smollm2-135m] [--rounds 3]

Spec: benchmarks/RESULTS.md; probes/model/model_cache.py says what the cache keys on and checks.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, this folder would lead sys.path and its module names could shadow installed packages
# (benchmarks/kernels.py once hid the `kernels` distribution): the repository root leads instead.
if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "The days of the week are Monday, Tuesday, Wednesday,"

CHILD = r"""
import hashlib, json, sys, time, warnings
import torch, transformers, transformer_lens.model_bridge  # imports: not timed
mode, spec, prompt = sys.argv[1], sys.argv[2], sys.argv[3]
t0, c0 = time.perf_counter(), time.process_time()
if mode == "gguf":  # main's load path: three GGUF parses, then the bridge
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from probes.model.loading import _finish, _wrap
    from probes.model.model_specs import resolve_spec
    r = resolve_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = AutoTokenizer.from_pretrained(r.location, gguf_file=r.gguf_file)
        hf = AutoModelForCausalLM.from_pretrained(r.location, gguf_file=r.gguf_file, dtype=torch.float32,
                                                  attn_implementation="eager")
    model = _wrap(r, *_finish(hf, tok), "cpu", torch.float32)
else:
    from probes.model.loading import load_model
    model = load_model(spec, device="cpu")
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
with torch.no_grad():
    logits = model.forward(model.to_tokens(prompt)).float().contiguous()
digest = hashlib.sha256(logits.numpy().tobytes()).hexdigest()
print("RESULT " + json.dumps({"wall": wall, "cpu": cpu, "logits": digest,
                              "from": str(getattr(model.hf_model, "name_or_path", ""))}))
"""


def _env(cache: Path | str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "GLASSHOUSE_CACHE": str(cache), "TQDM_DISABLE": "1"}


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a process; return (wall s, CPU s of the process, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 2):
        raise SystemExit(f"{argv} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc.stdout


def load_case(mode: str, spec: str, cache: Path | str) -> dict[str, float | str]:
    _, _, out = _run([sys.executable, "-c", CHILD, mode, spec, PROMPT], _env(cache))
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def process_case(args: list[str], cache: Path | str) -> dict[str, float | str]:
    wall, cpu, _ = _run([sys.executable, "-m", "app.cli", *args], _env(cache))
    return {"wall": wall, "cpu": cpu}


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    import transformers

    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python "
            f"{platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-convert", action="store_true", help="skip the timed first conversions")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="glasshouse-startup-"))
    cached_dir, convert_dir = work / "cached", work / "convert"
    print(f"machine: {machine()}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    load_case("cached", args.model, cached_dir)  # the copy every `cached` round reads (not timed)
    cases = {
        "convert": lambda: (shutil.rmtree(convert_dir, ignore_errors=True), load_case("convert", args.model,
                                                                                     convert_dir))[1],
        "gguf": lambda: load_case("gguf", args.model, "off"),
        "cached": lambda: load_case("cached", args.model, cached_dir),
        "gguf-once": lambda: load_case("gguf-once", args.model, "off"),
        "info": lambda: process_case(["info", args.model, "--json", "--device", "cpu"], cached_dir),
        "help": lambda: process_case(["--help"], cached_dir),
        "argerror": lambda: process_case(["sinks", "--n", "x"], cached_dir),
    }
    if args.no_convert:
        del cases["convert"]
    results: dict[str, list[dict[str, float | str]]] = {k: [] for k in cases}
    names = list(cases)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]  # rotate the order every round
        for name in order:
            results[name].append(cases[name]())
            last = results[name][-1]
            print(f"round {r + 1} {name:<10} wall {float(last['wall']):7.2f} s  cpu {float(last['cpu']):7.2f} s",
                  flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")

    def med(name: str, key: str) -> float:
        return statistics.median(float(x[key]) for x in results[name])

    print("\n| case | wall s (median) | CPU s (median) | rounds |\n|---|---|---|---|")
    for name in names:
        print(f"| {name} | {med(name, 'wall'):.2f} | {med(name, 'cpu'):.2f} | {len(results[name])} |")
    identical = {str(x["logits"]) for x in results["cached"] + results["gguf"] + results["gguf-once"]
                 + results.get("convert", [])}
    print(f"\nlogits of {PROMPT!r}: {'identical (one SHA-256) in every case' if len(identical) == 1 else identical}")
    print(f"cached load read from: {results['cached'][0]['from']}")
    for base in ("gguf", "gguf-once") + (("convert",) if "convert" in results else ()):
        print(f"{base} / cached load_model: wall {med(base, 'wall') / med('cached', 'wall'):.1f}x, "
              f"CPU {med(base, 'cpu') / med('cached', 'cpu'):.1f}x")
    print(f"gguf / gguf-once (parsing once): wall {med('gguf', 'wall') / med('gguf-once', 'wall'):.1f}x, "
          f"CPU {med('gguf', 'cpu') / med('gguf-once', 'cpu'):.1f}x")
    shutil.rmtree(work, ignore_errors=True)
    if len(identical) != 1:
        raise SystemExit("the cached copy's logits differ from the GGUF load's")


if __name__ == "__main__":
    main()
