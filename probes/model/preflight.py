"""Checks on a model spec that are cheap and run before any model loads (docs/cli.md).

`check_model_spec(spec)` resolves the spec (probes.model.model_specs) and then refuses, with a message
saying what to do:
- a model folder without tokenizer files (transformers would build a one-entry tokenizer from the
  config and every later step would fail far from the cause);
- a hub name when the hub cannot be reached: one TCP connect with a short timeout replaces the
  minute of download retries huggingface_hub would spend. A name already in the local HF cache is
  then loaded from the cache (offline mode is switched on for this process, with a note).
Nothing here imports torch or transformers.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

from probes.errors import ModelLoadError
from probes.model.model_specs import ResolvedSpec, resolve_spec

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.spm")
CONNECT_TIMEOUT_S = 3.0


def check_model_spec(spec: str) -> ResolvedSpec:
    """Resolve `spec` and refuse what would fail (or silently go wrong) once loading starts."""
    resolved = resolve_spec(spec)
    if resolved.kind in {"folder", "checkpoint"} and not resolved.gguf_file:
        check_tokenizer_files(Path(resolved.location))
    if resolved.kind == "hub" and not _offline():
        check_hub_reachable(resolved.spec)
    return resolved


def check_tokenizer_files(folder: Path) -> None:
    """A HF model folder must hold a tokenizer (tokenizer.json, a sentencepiece model or a vocab)."""
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(
            f"{folder} has no tokenizer files (none of {', '.join(TOKENIZER_FILES[:4])}, ...). Save the tokenizer "
            "next to the model with tokenizer.save_pretrained(folder), or copy its files from the original model.")


def _offline() -> bool:
    return any(os.environ.get(v, "0").lower() in {"1", "true", "yes", "on"} for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_endpoint() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def hub_reachable(timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """None when the hub endpoint accepts a TCP connection within `timeout`, else the reason it does not.

    The connect runs in a daemon thread, so a name lookup that hangs (getaddrinfo has no timeout of
    its own) is bounded by `timeout` as well.
    """
    host, port = _hub_endpoint()
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(None)
        except OSError as exc:
            outcome.append(f"{host}:{port}: {exc.strerror or exc}")

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return outcome[0] if outcome else f"{host}:{port}: no answer within {timeout:.0f} s"


def _cached(spec: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(spec, "config.json"), str)
    except Exception:
        return False


def _go_offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # already imported: it read the variable at import time
        constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]


def check_hub_reachable(spec: str) -> None:
    """Fail fast for a hub name without network; use the local cache when it holds the model."""
    reason = hub_reachable()
    if reason is None:
        return
    if _cached(spec):
        print(f"glasshouse: the hub is unreachable ({reason}); loading '{spec}' from the local HF cache.",
              file=sys.stderr)
        _go_offline()
        return
    raise ModelLoadError(
        f"Cannot load '{spec}': the HuggingFace hub is unreachable ({reason}) and the model is not in the local "
        "cache. Connect to the network (or set HF_ENDPOINT to a mirror), download it once elsewhere, or use an "
        "embedded model (smollm2-135m, gemma3-270m) or a local model folder. HF_HUB_OFFLINE=1 skips the hub.")
