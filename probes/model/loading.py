"""`load_model(spec)`: resolve a spec, load the HF model with eager attention, wrap it once.

Spec: docs/methods/embedded-model.md. The embedded models, local folders, the project's own
checkpoints and hub names all go through `_load_hf` and `_wrap`; only where the weights come
from differs. Models are cached per process: the same spec, device and dtype give the same object.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch

from probes.errors import ModelLoadError, advice, cause, common_advice, exception_chain, fault
from probes.model.hooked_model import HookedModel
from probes.model.model_specs import DEFAULT_MODEL, ResolvedSpec, resolve_spec

_CACHE: dict[tuple[str, str, str, str], HookedModel] = {}

DeviceMap = str | dict[str, str | int]

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ModelLoadError(f"Unknown dtype '{dtype}'. Use one of: {', '.join(DTYPES)}.")
    return DTYPES[dtype]


def _parse_device(device: str | None) -> str:
    device = device or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"Device '{device}' was asked for but this machine has no CUDA GPU. Use device='cpu'.")
    return device


def load_model(
    spec: str = DEFAULT_MODEL,
    device: str | None = None,
    dtype: str | torch.dtype = "float32",
    before_wrap: Callable[[Any, Any], None] | None = None,
    device_map: DeviceMap | None = None,
) -> HookedModel:
    """Load a causal LM as a `HookedModel` (one copy of the weights, eager attention, cached per process).

    spec: an embedded name (`smollm2-135m`, `gemma3-270m`), a local HF folder, a Glasshouse
    checkpoint folder, or a hub name (needs network or the hub cache).
    before_wrap(hf_model, tokenizer), if given, runs on the plain HF model before the bridge is
    booted (booting replaces HF's modules in place; tests use this to compute HF reference outputs).
    It runs only when the model is actually loaded, not on a cache hit.
    device_map (docs/batch.md), if given, is passed to `from_pretrained` (accelerate places
    the layers: "auto", "balanced", "sequential", "cpu" or a dict module name -> device) and the
    bridge wraps the dispatched model as it is; `device` is then ignored (the model's device is that
    of its first parameter, where inputs go).
    """
    torch_dtype = _parse_dtype(dtype)
    dev = _parse_device(device) if device_map is None else None
    resolved = resolve_spec(spec)
    map_key = "" if device_map is None else json.dumps(device_map, sort_keys=True)
    key = (resolved.location + "|" + (resolved.gguf_file or ""), dev or "", str(torch_dtype), map_key)
    if key not in _CACHE:
        hf_model, tokenizer = _load_hf(resolved, torch_dtype, device_map)
        if before_wrap is not None:
            if dev is not None:
                hf_model.to(dev)
            before_wrap(hf_model, tokenizer)
        _CACHE[key] = _wrap(resolved, hf_model, tokenizer, dev, torch_dtype)
    return _CACHE[key]


def loaded_models() -> list[str]:
    """Specs loaded in this process (the per-process cache)."""
    return [m.spec for m in _CACHE.values()]


def clear_cache() -> None:
    _CACHE.clear()


def _refuse_if_marked(resolved: ResolvedSpec) -> None:
    """A checkpoint whose glasshouse.json sets `refuse_load_model` (e.g. a ReLU-attention BB model,
    which HF and the bridge would run with softmax attention) cannot be loaded as a HookedModel."""
    if resolved.kind != "checkpoint":
        return
    import json
    from pathlib import Path

    try:
        reason = json.loads((Path(resolved.location) / "glasshouse.json").read_text()).get("refuse_load_model")
    except (OSError, ValueError, AttributeError):
        return
    if reason:
        raise ModelLoadError(f"{resolved.location}: {reason}")


def _load_hf(resolved: ResolvedSpec, dtype: torch.dtype, device_map: DeviceMap | None = None) -> tuple[Any, Any]:
    """The plain HF model and tokenizer of a resolved spec; an embedded model comes from its
    converted copy in the conversion cache (probes.model.model_cache), made on first use."""
    _refuse_if_marked(resolved)
    if resolved.kind == "folder" and not resolved.gguf_file:
        from pathlib import Path

        from probes.model.preflight import check_tokenizer_files

        check_tokenizer_files(Path(resolved.location))  # else transformers makes a one-entry tokenizer
    cached = _cached_folder(resolved)
    if cached is not None:
        try:
            return _finish(*_from_pretrained(str(cached), None, dtype, device_map, resolved))
        except ModelLoadError as exc:  # e.g. a damaged file that kept its size and mtime
            from probes.model import model_cache

            model_cache.log.warning("glasshouse: the cached copy %s did not load (%s); rebuilding it.", cached, exc)
            model_cache.remove_entry(cached)
            cached = _cached_folder(resolved)
    if cached is not None:
        return _finish(*_from_pretrained(str(cached), None, dtype, device_map, resolved))
    return _finish(*_from_pretrained(resolved.location, resolved.gguf_file, dtype, device_map, resolved))


def _cached_folder(resolved: ResolvedSpec) -> Any:
    """The checked converted folder of an embedded model, or None (cache off, or it failed: warned)."""
    if resolved.kind != "embedded" or resolved.embedded is None or resolved.gguf_file is None:
        return None
    from pathlib import Path

    from probes.model import model_cache

    if model_cache.cache_root() is None:
        return None
    gguf = Path(resolved.location) / resolved.gguf_file
    source = model_cache.source_for(resolved.spec, resolved.embedded.packages[0], gguf)

    def loader(location: str, gguf_file: str | None) -> tuple[Any, Any]:
        return _from_pretrained(location, gguf_file, torch.float32, None, resolved)

    try:
        return model_cache.ensure(source, loader)
    except model_cache.CacheError as exc:
        model_cache.log.warning("glasshouse: not using the conversion cache for %s (%s); loading the GGUF.",
                                resolved.spec, exc)
        return None


def _from_pretrained(location: str, gguf_file: str | None, dtype: torch.dtype, device_map: DeviceMap | None = None,
                     resolved: ResolvedSpec | None = None) -> tuple[Any, Any]:
    """AutoTokenizer + AutoModelForCausalLM (eager attention), nothing else done to them.

    A GGUF file is parsed once for the tokenizer, the config and the weights (transformers would
    parse it three times; the metadata parse is most of a GGUF load).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {} if gguf_file is None else {"gguf_file": gguf_file}
    model_kwargs: dict[str, Any] = {} if device_map is None else {"device_map": device_map}
    parsed_once = _gguf_parsed_once() if gguf_file else contextlib.nullcontext()
    try:
        with parsed_once, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(
                location, dtype=dtype, attn_implementation="eager", **kwargs, **model_kwargs
            )
    except ModelLoadError:
        raise
    except Exception as exc:
        where = resolved or ResolvedSpec(spec=location, kind="folder", location=location)
        raise ModelLoadError(_explain_load_failure(where, exc)) from exc
    return model, tokenizer


_GGUF_LOCK = threading.Lock()


@contextlib.contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """Within the block, GGUFReader(path) and load_gguf_checkpoint(path, return_tensors=False) are
    computed once per path. One GGUF load at a time in this process (the patch is module-global)."""
    import copy

    import gguf
    from transformers import modeling_gguf_pytorch_utils as mgu

    real_reader, real_load = gguf.GGUFReader, mgu.load_gguf_checkpoint
    readers: dict[tuple[str, str], Any] = {}
    metadata: dict[str, Any] = {}

    def reader(path: Any, mode: Any = "r") -> Any:
        key = (os.fspath(path), mode)
        if key not in readers:
            readers[key] = real_reader(path, mode)
        return readers[key]

    def load(path: Any, return_tensors: bool = False, model_to_load: Any = None, torch_dtype: Any = None) -> Any:
        if return_tensors:
            return real_load(path, return_tensors=True, model_to_load=model_to_load, torch_dtype=torch_dtype)
        key = os.fspath(path)
        if key not in metadata:
            metadata[key] = real_load(path, return_tensors=False)
        return copy.deepcopy(metadata[key])

    with _GGUF_LOCK:
        gguf.GGUFReader, mgu.load_gguf_checkpoint = reader, load  # type: ignore[assignment,misc]
        try:
            yield
        finally:
            gguf.GGUFReader, mgu.load_gguf_checkpoint = real_reader, real_load  # type: ignore[misc]


def _finish(model: Any, tokenizer: Any) -> tuple[Any, Any]:
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
    # GGUF-derived configs have architectures=None, which the bridge cannot map.
    if not getattr(model.config, "architectures", None):
        model.config.architectures = [type(model).__name__]
    return model, tokenizer


def _explain_load_failure(resolved: ResolvedSpec, exc: Exception) -> str:
    """The message for a failed load: where, the underlying exception, and the advice its fault calls for."""
    why = cause(exc)
    if resolved.kind == "hub":
        return f"Could not load '{resolved.spec}' from the hub ({why}). " + advice(
            exc, damaged="A downloaded file is damaged: delete the model from the HF cache (~/.cache/huggingface/hub) "
                         "and download it again.",
            other="Check the name, your network and, for gated models, your HF token; or use an embedded model "
                  "such as smollm2-135m.")
    if resolved.kind in {"folder", "checkpoint"}:
        return f"Could not load the model in {resolved.location} ({why}). " + _folder_advice(resolved, exc)
    return f"Could not load the embedded model {resolved.spec} ({why}). " + advice(
        exc, damaged="Its file is damaged: reinstall its package (see README).",
        other="Reinstall its package (see README).")


def _folder_advice(resolved: ResolvedSpec, exc: Exception) -> str:
    """Advice for a local folder: the missing-files advice only when files are missing (on disk or by the
    exception's class), the damaged-file advice naming the file when one is damaged."""
    common = common_advice(exc)
    if common is not None:
        return common
    kind, location = fault(exc), resolved.location
    if kind == "damaged":
        damaged = os.path.join(location, resolved.gguf_file) if resolved.gguf_file else _damaged_file(location, exc)
        return (f"{damaged} is damaged or truncated: re-save the model with save_pretrained, or copy or download "
                "that file again.")
    lacking = [] if resolved.gguf_file else _missing_files(location)  # a GGUF file holds all three
    if lacking or kind == "missing":
        what = f"it lacks {', '.join(lacking)}" if lacking else "a file it refers to is missing"
        return (f"The folder needs a config.json, tokenizer files and weights, and {what}; save the model there "
                "with save_pretrained.")
    return f"Check that transformers {_transformers_version()} supports the model its config.json describes."


def _missing_files(location: str) -> list[str]:
    """What a HF model folder lacks of config.json, tokenizer files and weights (empty if not a folder)."""
    from pathlib import Path

    from probes.model.preflight import TOKENIZER_FILES

    folder = Path(location)
    if not folder.is_dir():
        return []
    names = {p.name for p in folder.iterdir()}
    lacking = [] if "config.json" in names else ["config.json"]
    if not names & set(TOKENIZER_FILES):
        lacking.append("tokenizer files")
    if not any(n.endswith((".safetensors", ".bin", ".pt", ".gguf", ".index.json")) for n in names):
        lacking.append("weights")
    return lacking


def _damaged_file(location: str, exc: BaseException) -> str:
    """The file of the folder that the exception names, or its safetensors weights for a SafetensorError."""
    from pathlib import Path

    folder = Path(location)
    files = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    text = " ".join(str(e) for e in exception_chain(exc))
    named = [n for n in files if f"{folder / n}" in text or f"'{n}'" in text]
    if not named and "SafetensorError" in {type(e).__name__ for e in exception_chain(exc)}:
        named = [n for n in files if n.endswith(".safetensors")]
    return f"{folder / named[0]}" if len(named) == 1 else f"A file in {folder}"


def _transformers_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformers")
    except PackageNotFoundError:
        return "(not installed)"


def _wrap(
    resolved: ResolvedSpec, hf_model: Any, tokenizer: Any, device: str | None, dtype: torch.dtype
) -> HookedModel:
    """Boot the bridge on the loaded model; device None means accelerate placed it (device_map)."""
    from transformer_lens.model_bridge import TransformerBridge

    bridge_name = resolved.embedded.bridge_name if resolved.embedded else resolved.spec
    if device is not None:
        hf_model.to(device)
    else:
        device = str(next(hf_model.parameters()).device)
    tl_logger = logging.getLogger("transformer_lens")
    previous = tl_logger.level
    tl_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bridge = TransformerBridge.boot_transformers(
                bridge_name, hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=dtype
            )
    except Exception as exc:
        raise ModelLoadError(
            f"TransformerLens could not wrap {resolved.spec} ({type(hf_model).__name__}): {cause(exc)}. "
            + (common_advice(exc) or "This architecture may be unsupported by TransformerLens 4's bridge.")
        ) from exc
    finally:
        tl_logger.setLevel(previous)
    return HookedModel(resolved.spec, resolved.kind, hf_model, tokenizer, bridge)
