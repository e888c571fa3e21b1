"""scripts/gpu_check.sh --dry-run (benchmarks/RESULTS.md): the GPU check script runs end to end on the CPU.

The dry run uses a 2-layer random Llama with the embedded model's tokenizer (taken from the `smollm`
fixture, so no second load), a few of the CLI rows, the kernel-test step with the CUDA-redirect
plugin, the sink map and the SAE step. Its sink map is checked against a plain HF eager forward with
output_attentions on the same tokens. About 60 s on 2 busy cores, most of it Python start-ups.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ROW_KEYS = {"command", "device", "dtype", "seconds", "status", "error"}
CLI_ROWS = ["extreme", "sae train", "sae eval", "bb train", "batch"]


def _module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


gpu_check = _module("gpu_check_under_test", ROOT / "benchmarks" / "gpu_check.py")
plugin = _module("gpu_check_pytest_cuda_under_test", ROOT / "scripts" / "gpu_check_pytest_cuda.py")


@pytest.fixture(scope="module")
def tiny_model(smollm, tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("arch")
    smollm.tokenizer.save_pretrained(src)
    smollm.hf_model.config.save_pretrained(src)
    dest = tmp_path_factory.mktemp("tiny") / "model"
    assert gpu_check.main(["make-model", str(dest), "--kind", "tiny", "--from", str(src)]) == 0
    return dest


@pytest.fixture(scope="module")
def dry_run(tiny_model, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    res = tmp_path_factory.mktemp("results")
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_CLI_ONLY": ",".join(CLI_ROWS),
           "GPU_CHECK_WORK": str(tmp_path_factory.mktemp("work"))}
    proc = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry-run", "--model", str(tiny_model),
                           "--steps", "install,tests,cli,sinkmap,sae", str(res)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return res, proc


def test_dry_run_steps_all_pass(dry_run):
    res, proc = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    steps = [json.loads(x) for x in (res / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == ["install", "tests", "cli", "sinkmap", "sae"]
    assert all(s["status"] == "ok" and s["rc"] == 0 and 0 <= s["seconds"] <= s["limit_s"] + 10 for s in steps)
    # at most 8 files: what the device machine returns from $OUT
    assert len(list(res.iterdir())) <= 8
    assert "gpu_check: done" in (res / "gpu_check.log").read_text()


def test_dry_run_command_rows(dry_run, tiny_model):
    res, _ = dry_run
    rows = json.loads((res / "gpu_smoke.json").read_text())
    assert [r["name"] for r in rows] == ["load", *CLI_ROWS]
    for r in rows:
        assert ROW_KEYS <= set(r)
        assert r["status"] == "ok" and r["error"] is None, r
        assert r["seconds"] > 0
    by = {r["name"]: r for r in rows}
    assert by["extreme"]["device"] == "cpu" and by["extreme"]["dtype"] == "float32"
    assert f"--model {tiny_model} --device cpu --dtype float32" in by["extreme"]["command"]
    bb = by["bb train"]
    assert "--device cpu" in bb["command"] and "--dtype" not in bb["command"] and "no --dtype" in bb["note"]
    assert (bb["device"], bb["dtype"]) == ("cpu", "float32")


def test_dry_run_kernel_tests_ran_through_the_plugin(dry_run):
    res, proc = dry_run
    suite = ET.parse(res / "kernel_tests.xml").getroot().find("testsuite")
    assert suite is not None and int(suite.get("tests", 0)) >= 2
    assert int(suite.get("failures", 0)) == 0 and int(suite.get("errors", 0)) == 0
    assert "kernel calls with backend='triton' on CPU tensors run on cpu" in proc.stdout


def test_dry_run_sink_map_matches_hf_eager(dry_run, tiny_model):
    """The sink map's mean attention on token 0 per layer, against HF output_attentions on the same ids."""
    from transformers import AutoModelForCausalLM

    res, _ = dry_run
    out = json.loads((res / "sinkmap.json").read_text())
    assert out["model_level"]["status"] == "ok" and out["kernel_one_layer"]["status"] == "ok"
    t = out["T"]
    assert out["eager_pattern_bytes_per_layer"] == 4 * t * t * 4  # 4 heads, fp32
    hf = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="eager").eval()
    ids = torch.randint(3, hf.config.vocab_size, (1, t), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        attn = hf(ids, output_attentions=True).attentions
    want = [float(a[0, :, 1:, 0].mean()) for a in attn]
    assert out["model_level"]["mean_sink_by_layer"] == pytest.approx(want, abs=1e-4)


def test_dry_run_sae_rows_are_consistent(dry_run):
    res, _ = dry_run
    out = json.loads((res / "sae_train.json").read_text())
    assert out["status"] == "ok"
    steps = out["steps"]
    assert set(steps) == {"dense", "sparse_kernels", "sparse_torch", "dense_auxk", "sparse_kernels_auxk",
                          "sparse_torch_auxk"}
    for row in steps.values():
        assert row["tokens_per_s"] == pytest.approx(out["batch"] / (row["step_ms"] / 1e3), rel=1e-3)
    ratios = out["ratios"]
    assert ratios["sparse_kernels_over_dense"] == pytest.approx(
        steps["sparse_kernels"]["tokens_per_s"] / steps["dense"]["tokens_per_s"], rel=1e-2)
    eq = out["equality"]
    assert eq["status"] == "ok" and eq["dead"] > 0 and eq["auxk_dense"] > 0  # AuxK was part of the comparison
    for name in ("sparse_kernels", "sparse_torch"):
        assert eq[name]["ok"] and set(eq[name]["grad_rel_err"]) == {"W_enc", "b_enc", "W_dec", "b_dec"}
    assert out["selection_agreement"] == 1.0


def test_sae_equality_check_can_fail(monkeypatch):
    """A sparse step with a wrong gradient is reported as a mismatch (the check is not vacuous)."""
    from saes.architectures.topk import TopKSAE

    real = TopKSAE.loss_sparse

    def wrong(self, x, dead_mask=None, backend="auto"):
        out = real(self, x, dead_mask, backend="torch")
        out.loss = out.loss + 1e-3 * self.b_dec.sum()  # same value scale, a wrong b_dec gradient
        return out

    monkeypatch.setattr(TopKSAE, "loss_sparse", wrong)
    eq = gpu_check.sae_step_equality(12, 40, 5, 17, "cpu")
    assert eq["status"] == "mismatch" and eq["sparse_torch"]["grad_rel_err"]["b_dec"] > 1e-4


def test_failed_and_timed_out_commands_become_rows(tmp_path):
    bad = gpu_check.CliCase("sinks", ["sinks", "--model", str(tmp_path / "missing"), "--device", "cpu"])
    row = gpu_check.run_cli_case(bad, "cpu", "float32", tmp_path, limit=60)
    assert row.status == "failed" and "No such folder" in row.error
    slow = gpu_check.CliCase("slow", ["--help"], prepare=lambda: time.sleep(5))
    t0 = time.perf_counter()
    row = gpu_check.run_cli_case(slow, "cpu", "float32", tmp_path, limit=0.3)
    assert row.status == "timeout" and "limit" in row.error and time.perf_counter() - t0 < 3


def test_redirect_moves_only_triton_calls_on_cpu_tensors():
    seen = []

    def kernel(x, w, backend="auto"):
        seen.append((x.device.type, w.device.type))
        return torch.zeros(1)

    wrapped = plugin.redirect(kernel, device="meta")
    x = torch.ones(2)
    wrapped(x, x, backend="triton")
    wrapped(x, x, backend="auto")
    wrapped(x, x.to("meta"), backend="triton")  # not all on the CPU: left alone
    plugin.redirect(kernel, device="cpu")(x, x, backend="triton")
    assert seen == [("meta", "meta"), ("cpu", "cpu"), ("cpu", "meta"), ("cpu", "cpu")]
    moved = plugin._move({"a": (x, [x]), "b": 3}, "meta")
    assert moved["a"][0].is_meta and moved["a"][1][0].is_meta and moved["b"] == 3


@pytest.mark.parametrize("dry", [True, False])
def test_every_cli_row_parses(tmp_path, dry):
    """The rows' arguments are valid for the current CLI (GPU sizes too), and those that take a device get it."""
    from app.cli import build_parser

    parser = build_parser()
    for case in gpu_check.cli_cases("smollm2-135m", "cuda", "bfloat16", tmp_path, dry):
        args = parser.parse_args(case.argv)
        assert callable(args.func), case.name
        if case.takes_device and not case.takes_dtype:
            assert args.device == "cuda" and not hasattr(args, "dtype") and case.note, case.name
        elif case.takes_device:
            assert (args.device, args.dtype) == ("cuda", "bfloat16"), case.name
        else:
            assert not hasattr(args, "device") and case.note, case.name
