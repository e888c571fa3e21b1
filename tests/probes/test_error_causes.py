"""Wrapped load failures name their real cause (probes.errors.cause) and give the advice that cause calls for.

Guards the fault behind a transformers 5.25 report: an ImportError (a file benchmarks/kernels.py shadowing
the installed `kernels` package) came out as "Could not load the model in ... (cannot import name ...).
The folder needs a config.json, tokenizer files and intact weights; re-save it ...": no exception type, and
advice to re-save a healthy folder. Each test below fails against that code (the comment says how).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from probes.errors import CheckpointError, ModelLoadError, cause, environment_advice, fault

SHADOWED = "cannot import name 'CUDAProperties' from 'kernels' (/x/benchmarks/kernels.py)"
WORDS = ["<unk>", "<bos>", "<pad>", "The", "days", "of", "the", "week"]
FOLDER_ADVICE = "needs a config.json"  # the missing-files advice


# ---- the helper ---------------------------------------------------------------------------------------------


def test_cause_names_type_and_first_line():
    assert cause(ValueError("bad value\nsecond line")) == "ValueError: bad value"
    assert cause(MemoryError()) == "MemoryError"
    assert cause(KeyError("files")) == "KeyError: 'files'"


def test_cause_names_the_inner_exception_that_shows_the_fault():
    try:
        try:
            json.loads("{not json")
        except json.JSONDecodeError as inner:
            raise OSError("It looks like the config file is not valid") from inner
    except OSError as exc:
        outer = exc
    text = cause(outer)
    assert text.startswith("OSError: It looks like") and "caused by JSONDecodeError: Expecting property name" in text
    assert fault(outer) == "damaged"


@pytest.mark.parametrize(("exc", "kind"), [
    (ImportError(SHADOWED), "environment"),
    (ModuleNotFoundError("No module named 'kernels'"), "environment"),
    (MemoryError(), "memory"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "memory"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: not enough memory"), "memory"),
    (json.JSONDecodeError("Expecting value", "x", 0), "damaged"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "damaged"),
    (EOFError("Ran out of input"), "damaged"),
    (FileNotFoundError(2, "No such file or directory", "/x/config.json"), "missing"),
    (OSError("/x does not appear to have a file named model.safetensors"), "missing"),
    (PermissionError(13, "Permission denied", "/x/model.safetensors"), "access"),
    (ValueError("rope_scaling must be a dict"), None),
])
def test_fault_by_class(exc, kind):
    assert fault(exc) == kind


def test_shadowing_file_is_named_only_outside_site_packages():
    assert "/x/benchmarks/kernels.py may be a file of yours shadowing the installed package 'kernels'" in (
        environment_advice(ImportError(SHADOWED)))
    installed = ImportError("cannot import name 'X' from 'kernels' (/v/lib/python3.11/site-packages/kernels/__init__.py)")
    assert "shadowing the installed package" not in environment_advice(installed)
    assert "pip check" in environment_advice(ModuleNotFoundError("No module named 'kernels'"))


# ---- the model load path (probes.model.loading._from_pretrained / _explain_load_failure) -------------------


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<bos>", pad_token="<pad>")


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    """A complete tiny HF folder: config.json, model.safetensors, tokenizer files."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(WORDS), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)
    folder = tmp_path_factory.mktemp("tiny") / "model"
    LlamaForCausalLM(cfg).save_pretrained(folder)
    _tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture
def model_dir(saved_model, tmp_path) -> Path:
    """A fresh copy of the tiny folder, to damage."""
    return Path(shutil.copytree(saved_model, tmp_path / "model"))


def _load_error(folder: Path) -> str:
    from probes import load_model

    with pytest.raises(ModelLoadError) as info:
        load_model(str(folder), device="cpu")
    return str(info.value)


def _raise_on_model_load(monkeypatch, exc: BaseException) -> None:
    from transformers import AutoModelForCausalLM

    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", fail)


def test_import_error_is_named_without_the_folder_advice(model_dir, monkeypatch):
    # old: no "ImportError", and "The folder needs a config.json ... re-save it with save_pretrained"
    _raise_on_model_load(monkeypatch, ImportError(SHADOWED))
    msg = _load_error(model_dir)
    assert f"ImportError: {SHADOWED}" in msg
    assert "/x/benchmarks/kernels.py may be a file of yours shadowing the installed package 'kernels'" in msg
    assert "config.json" not in msg and "save_pretrained" not in msg


@pytest.mark.parametrize("exc", [MemoryError(), torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")])
def test_memory_error_is_named_with_memory_advice(model_dir, monkeypatch, exc):
    # old: no exception type (a bare MemoryError gave "(MemoryError)" only by accident) and the folder advice
    _raise_on_model_load(monkeypatch, exc)
    msg = _load_error(model_dir)
    assert f"({cause(exc)})" in msg and type(exc).__name__ in msg
    assert "not enough memory" in msg and "smaller dtype" in msg
    assert "config.json" not in msg and "save_pretrained" not in msg


def test_corrupt_weights_name_the_error_and_the_file(model_dir):
    # old: "(Error while deserializing header: ...)" without "SafetensorError", and no file named as damaged
    weights = model_dir / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(b"\xff" * 64 + data[64:])
    msg = _load_error(model_dir)
    assert "(SafetensorError: Error while deserializing header" in msg
    assert f"{weights} is damaged or truncated" in msg
    assert FOLDER_ADVICE not in msg


def test_corrupt_config_names_the_json_error(model_dir):
    # old: the OSError's text only; the JSONDecodeError under it and the damaged file went unnamed
    config = model_dir / "config.json"
    config.write_text(config.read_text()[:30])
    msg = _load_error(model_dir)
    assert "caused by JSONDecodeError" in msg and f"{config} is damaged or truncated" in msg


def test_missing_config_still_gets_the_folder_advice(model_dir):
    # the advice is kept from the old code, which did not name transformers' ValueError ("Unrecognized model ...")
    # nor say which file is missing
    from probes.model.loading import _from_pretrained

    (model_dir / "config.json").unlink()
    with pytest.raises(ModelLoadError) as info:
        _from_pretrained(str(model_dir), None, torch.float32)
    msg = str(info.value)
    assert msg.startswith(f"Could not load the model in {model_dir} (ValueError: ")
    assert FOLDER_ADVICE in msg and "it lacks config.json" in msg


def test_missing_file_named_by_transformers_gets_the_folder_advice(model_dir, monkeypatch):
    _raise_on_model_load(monkeypatch, OSError(f"{model_dir} does not appear to have a file named model-00002.safetensors"))
    msg = _load_error(model_dir)
    assert "OSError: " in msg and FOLDER_ADVICE in msg and "a file it refers to is missing" in msg


def test_other_errors_of_a_complete_folder_get_no_folder_advice(model_dir, monkeypatch):
    # old: every failure of a folder, whatever it was, advised re-saving it
    _raise_on_model_load(monkeypatch, ValueError("rope_scaling must be a dict"))
    msg = _load_error(model_dir)
    assert "(ValueError: rope_scaling must be a dict)" in msg and FOLDER_ADVICE not in msg
    assert "supports the model its config.json describes" in msg


def test_hub_load_names_an_import_error():
    # old: "Check the name, your network and ... your HF token" for a broken environment
    from probes.model.loading import _explain_load_failure
    from probes.model.model_specs import ResolvedSpec

    msg = _explain_load_failure(ResolvedSpec(spec="gpt2", kind="hub", location="gpt2"), ImportError(SHADOWED))
    assert f"ImportError: {SHADOWED}" in msg and "network" not in msg and "shadowing" in msg


def test_bridge_failure_names_its_cause(model_dir, monkeypatch):
    # old: "TransformerLens could not wrap ...: . This architecture may be unsupported" for a MemoryError
    from transformer_lens.model_bridge import TransformerBridge

    def fail(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(TransformerBridge, "boot_transformers", fail)
    msg = _load_error(model_dir)
    assert "TransformerLens could not wrap" in msg and ": MemoryError." in msg and "not enough memory" in msg
    assert "unsupported" not in msg


# ---- BB checkpoints (probes.bb.checkpoint.load_checkpoint) ----------------------------------------------------


@pytest.fixture
def bb_checkpoint(tmp_path) -> Path:
    from probes.bb.checkpoint import save_checkpoint
    from probes.bb.data import estimate_task
    from probes.bb.model import BBConfig, BBModel

    task = estimate_task(["the cat sat on the mat; then the dog ate the hat. " * 4], n_chars=12)
    model = BBModel(BBConfig(vocab_size=task.vocab_size, d_model=16, n_ctx=16))
    return save_checkpoint(tmp_path / "ck", model, task, 1, {})


def _bb_error(folder: Path) -> str:
    from probes.bb.checkpoint import load_checkpoint

    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder)
    return str(info.value)


def test_bb_out_of_memory_is_not_called_damage(bb_checkpoint, monkeypatch):
    # old: torch.OutOfMemoryError (a RuntimeError) gave "do not fit its config (...); the checkpoint is damaged"
    import safetensors.torch

    def fail(path):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(safetensors.torch, "load_file", fail)
    msg = _bb_error(bb_checkpoint)
    assert "OutOfMemoryError: CUDA out of memory" in msg and "not enough memory" in msg and "damaged" not in msg


def test_bb_corrupt_weights_name_the_error(bb_checkpoint):
    # old: the SafetensorError escaped unwrapped (the hashes had been rewritten to match the damaged file)
    from probes.bb.checkpoint import MARKER, _sha256

    weights = bb_checkpoint / "model.safetensors"
    weights.write_bytes(b"\xff" * 64 + weights.read_bytes()[64:])
    meta = json.loads((bb_checkpoint / MARKER).read_text())
    meta["files"]["model.safetensors"] = _sha256(weights)
    (bb_checkpoint / MARKER).write_text(json.dumps(meta))
    msg = _bb_error(bb_checkpoint)
    assert "SafetensorError: " in msg and f"{weights} is damaged" in msg


def test_bb_damaged_marker_names_the_error(bb_checkpoint):
    # old: "is damaged (Expecting property name ...)" without the exception type
    from probes.bb.checkpoint import MARKER

    (bb_checkpoint / MARKER).write_text("{not json")
    assert "is damaged (JSONDecodeError: Expecting property name" in _bb_error(bb_checkpoint)


def test_bb_import_error_is_not_hidden(bb_checkpoint, monkeypatch):
    # unchanged (this site never caught it): an ImportError still propagates as itself, naming its own cause
    import safetensors.torch

    import probes.bb.checkpoint as ck

    def fail(path):
        raise ImportError(SHADOWED)

    monkeypatch.setattr(safetensors.torch, "load_file", fail)
    with pytest.raises(ImportError, match="CUDAProperties"):
        ck.load_checkpoint(bb_checkpoint)


# ---- optional extras (probes.extras.require_extra) ------------------------------------------------------------


def test_a_broken_extra_is_not_called_missing(tmp_path, monkeypatch):
    # old: "... and glasshouse_fake_extra is not installed. Install it with: pip install ..." for an installed
    # module whose own import failed
    from probes.extras import MissingExtraError, require_extra

    (tmp_path / "glasshouse_fake_extra.py").write_text(f"raise ImportError({SHADOWED!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingExtraError) as info:
        require_extra("glasshouse_fake_extra", "export", "PNG export")
    msg = str(info.value)
    assert "installed but does not import" in msg and f"(ImportError: {SHADOWED})" in msg
    assert "shadowing the installed package 'kernels'" in msg and "not installed" not in msg
    with pytest.raises(MissingExtraError, match=r"is not installed \(ModuleNotFoundError: No module named"):
        require_extra("glasshouse_no_such_extra", "export", "PNG export")


def test_offline_hub_lookup_names_an_import_error(monkeypatch):
    # old: the ImportError was swallowed and the spec called an unknown model, with nothing about the cause
    import huggingface_hub

    from probes.model.model_specs import resolve_spec

    def fail(*args, **kwargs):
        raise ImportError(SHADOWED)

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", fail)
    with pytest.raises(ModelLoadError) as info:
        resolve_spec("someone/some-model")
    msg = str(info.value)
    assert "Unknown model 'someone/some-model'" in msg and f"Looking in the HF cache failed (ImportError: {SHADOWED})" in msg
