"""The conversion cache (probes.model.model_cache) on a tiny random Llama standing in for a GGUF model.

The "GGUF" is a small file of bytes; the loader returns a seeded tiny model for it and reads the
saved folder back with transformers, as probes.model.loading's loader does. The real models' logits
against their GGUF loads are in test_loading.py.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from probes.model import model_cache as mc

WORDS = ["<unk>", "<bos>", "<pad>", "The", "days", "of", "the", "week", "are", "One,", "two,", "three,", "four,"]


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<bos>", pad_token="<pad>")


def _tiny_model(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(WORDS), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                      attn_implementation="eager")
    return LlamaForCausalLM(cfg).eval()


class Loader:
    """Counts its calls; `perturb` makes the reloaded copy differ from the 'GGUF' model."""

    def __init__(self, perturb: bool = False) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.perturb = perturb

    def __call__(self, location: str, gguf_file: str | None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.calls.append((location, gguf_file))
        if gguf_file is not None:
            return _tiny_model(), _tokenizer()
        model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32, attn_implementation="eager")
        if self.perturb:
            with torch.no_grad():
                model.model.norm.weight[0] += 1e-3
        return model.eval(), AutoTokenizer.from_pretrained(location)


@pytest.fixture
def gguf(tmp_path) -> Path:
    path = tmp_path / "pkg" / "tiny.gguf"
    path.parent.mkdir()
    path.write_bytes(b"GGUF" + bytes(range(256)) * 40)
    return path


@pytest.fixture(autouse=True)
def tiny_pkg_installed(monkeypatch):
    """entries() compares a copy with the installed package version; 'tiny-pkg' is installed as 1.0."""
    monkeypatch.setattr(mc, "_installed", lambda manifest: "1.0")


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "cache" / "models"


def _source(gguf: Path, version: str = "1.0") -> mc.Source:
    return mc.Source("tiny", "tiny-pkg", version, gguf, mc.converter_versions())


def _logits(model, ids=(3, 4, 5, 6, 7)):
    with torch.no_grad():
        return model(torch.tensor([list(ids)])).logits


def _hashes(monkeypatch) -> list[Path]:
    seen: list[Path] = []
    real = mc.sha256_file

    def counting(path: Path) -> str:
        seen.append(Path(path))
        return real(path)

    monkeypatch.setattr(mc, "sha256_file", counting)
    return seen


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(mc.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert mc.cache_root() == tmp_path / "xdg" / "glasshouse" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert mc.cache_root() == Path.home() / ".cache" / "glasshouse" / "models"
    monkeypatch.setenv(mc.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert mc.cache_root() == tmp_path / "elsewhere" / "models"
    for off in ("off", "OFF", "0", "none"):
        monkeypatch.setenv(mc.CACHE_ENV, off)
        assert mc.cache_root() is None
        with pytest.raises(mc.CacheError, match="off"):
            mc.ensure(_source(tmp_path / "x.gguf"), Loader())


def test_converts_once_then_loads_the_copy_without_hashing(gguf, root, monkeypatch):
    loader = Loader()
    folder = mc.ensure(_source(gguf), loader, root)
    assert loader.calls[0] == (str(gguf.parent), gguf.name)  # the GGUF once, then the saved copy for the check
    assert loader.calls[1][1] is None and Path(loader.calls[1][0]).name.startswith(".tmp-tiny-")
    sha = mc.sha256_file(gguf)
    assert folder == root / f"tiny-1.0-{sha[:12]}"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["gguf"]["sha256"] == sha and manifest["check"]["equal_to_gguf"] is True
    for name in mc.REQUIRED_FILES:
        assert manifest["files"][name]["sha256"] == mc.sha256_file(folder / name)
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]

    hashed = _hashes(monkeypatch)
    again = Loader()
    assert mc.ensure(_source(gguf), again, root) == folder
    assert again.calls == [] and hashed == []  # fast path: sizes and mtimes only
    model, _ = Loader()(str(folder), None)
    assert torch.equal(_logits(model), _logits(_tiny_model()))  # the copy is the model, bit for bit


def test_touched_gguf_is_hashed_once_and_its_copy_reused(gguf, root, monkeypatch):
    folder = mc.ensure(_source(gguf), Loader(), root)
    os.utime(gguf, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    hashed = _hashes(monkeypatch)
    loader = Loader()
    assert mc.ensure(_source(gguf), loader, root) == folder
    assert loader.calls == [] and hashed == [gguf]
    assert json.loads((folder / "manifest.json").read_text())["gguf"]["mtime_ns"] == gguf.stat().st_mtime_ns
    hashed.clear()
    assert mc.ensure(_source(gguf), loader, root) == folder and hashed == []


def test_other_gguf_or_package_version_is_converted_anew(gguf, root, caplog):
    first = mc.ensure(_source(gguf), Loader(), root)
    gguf.write_bytes(b"GGUF" + bytes(range(255, -1, -1)) * 40)
    second = mc.ensure(_source(gguf), Loader(), root)
    assert second != first and second.is_dir() and not first.exists()  # the older copy is removed
    caplog.set_level(logging.WARNING, logger="glasshouse.model_cache")
    third = mc.ensure(_source(gguf, version="2.0"), Loader(), root)
    assert third.name.startswith("tiny-2.0-") and not second.exists()
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == [third.name]


def _delete_weights(folder: Path) -> None:
    (folder / "model.safetensors").unlink()


def _bad_manifest(folder: Path) -> None:
    (folder / "manifest.json").write_text("{ not json")


def _flip_a_byte(folder: Path) -> None:
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    time.sleep(0.01)
    path.write_bytes(bytes(data))  # same size, new mtime: the load hashes it and sees the mismatch


def _truncate_tokenizer(folder: Path) -> None:
    path = folder / "tokenizer.json"
    path.write_bytes(path.read_bytes()[:100])


def _other_converter(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["converter"][0][1] = "0.0.1"
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage, why", [
    (_delete_weights, "model.safetensors is missing"),
    (_bad_manifest, "manifest.json is missing or unreadable"),
    (_flip_a_byte, "model.safetensors does not match its checksum"),
    (_truncate_tokenizer, "tokenizer.json has 100 bytes"),
    (_other_converter, "converted by"),
])
def test_damaged_or_stale_copy_is_rebuilt_with_a_message(gguf, root, caplog, damage, why):
    folder = mc.ensure(_source(gguf), Loader(), root)
    damage(folder)
    caplog.set_level(logging.WARNING, logger="glasshouse.model_cache")
    loader = Loader()
    rebuilt = mc.ensure(_source(gguf), loader, root)
    assert rebuilt == folder and len(loader.calls) == 2  # converted again, same key
    assert any(why in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)
    model, _ = Loader()(str(rebuilt), None)
    assert torch.equal(_logits(model), _logits(_tiny_model()))
    assert mc.entries(root, full=True)[0]["status"] == "ok"


def test_a_copy_that_does_not_reproduce_the_logits_is_refused(gguf, root):
    with pytest.raises(mc.CacheError, match="logits differ"):
        mc.ensure(_source(gguf), Loader(perturb=True), root)
    assert [p.name for p in root.iterdir() if not p.name.startswith(".lock")] == []


def test_silent_corruption_is_caught_by_verify(gguf, root):
    folder = mc.ensure(_source(gguf), Loader(), root)
    path = folder / "model.safetensors"
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # size and mtime as recorded
    assert mc.entries(root)[0]["status"] == "ok"  # the cheap check cannot see it (documented)
    status = mc.entries(root, full=True)[0]["status"]
    assert "model.safetensors does not match its checksum" in status


def test_two_threads_convert_once(gguf, root):
    loader = Loader()
    out: list[Path] = []
    threads = [threading.Thread(target=lambda: out.append(mc.ensure(_source(gguf), loader, root)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 2 and out[0] == out[1] and len(loader.calls) == 2


_KILLED_CONVERSION = """
import sys, time
sys.path[:0] = [{root!r}, {tests!r}]
from pathlib import Path
from probes.model import model_cache as mc
import test_model_cache as t

class Hanging(t.Loader):
    def __call__(self, location, gguf_file):
        if gguf_file is None:  # the copy is written: stop here until killed
            print("saved", flush=True)
            time.sleep(600)
        return super().__call__(location, gguf_file)

mc.ensure(t._source(Path({gguf!r})), Hanging(), Path({cache!r}))
"""


def test_kill_mid_conversion_leaves_nothing_a_load_uses(gguf, root):
    repo = Path(__file__).resolve().parents[3]
    script = _KILLED_CONVERSION.format(root=str(repo), tests=str(Path(__file__).parent), gguf=str(gguf),
                                       cache=str(root))
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"saved"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    leftovers = [p for p in root.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers and (leftovers[0] / "model.safetensors").is_file()  # the half-done copy
    assert mc.lookup(root, _source(gguf)) is None  # ... is not used
    loader = Loader()
    folder = mc.ensure(_source(gguf), loader, root)
    assert len(loader.calls) == 2 and not [p for p in root.iterdir() if p.name.startswith(".tmp-")]
    assert mc.entries(root)[0]["folder"] == str(folder)


def test_models_command_lists_the_cache(gguf, root, monkeypatch, capsys):
    from app.cli import main

    folder = mc.ensure(_source(gguf), Loader(), root)
    monkeypatch.setenv(mc.CACHE_ENV, str(root.parent))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert str(root) in out and "tiny" in out and mc.human_size(size) in out and "ok" in out
    assert main(["models", "--json"]) == 0
    rows = {r["spec"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["smollm2-135m"]["cache_dir"] == str(root)
    capsys.readouterr()
    assert main(["models", "--verify"]) == 0
    monkeypatch.setenv(mc.CACHE_ENV, "off")
    assert main(["models"]) == 0
    assert "off" in capsys.readouterr().out
