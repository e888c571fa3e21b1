"""Where an analysis runs: the backend registry (local | ndif | ndif-local).

Spec: docs/remote.md. Every entry point (CLI `--backend`, batch plans' `backend = ...`,
notebooks) names a backend with one of these words and gets the same behaviour:

- local: a HookedModel on this machine; the analyses of probes/sinks.py, probes/extreme.py, ... run
  through TransformerLens hooks.
- ndif: the remote versions of probes/remote_analyses.py, sent to NDIF (nnsight `remote=True`). The
  model is a hub id the server hosts; nothing is loaded here but its config and tokenizer. The API key
  is nnsight's own (`nnsight.CONFIG.set_default_api_key(KEY)`, saved in nnsight's config; or the
  NDIF_API_KEY environment variable, which nnsight reads). The hub name is checked before anything is
  sent.
- ndif-local: the same remote versions through nnsight's serverless simulation (`remote="local"`): the
  request is serialized and deserialized with this project's modules hidden, then run on a model
  loaded here. A run that passes here is what NDIF would run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from probes.errors import InputError

BACKENDS = ("local", "ndif", "ndif-local")
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


@dataclass(frozen=True)
class Backend:
    """One backend: its name, the `remote=` argument nnsight gets, and whether it needs NDIF."""

    name: str
    remote: bool | str
    needs_key: bool
    description: str


REGISTRY: dict[str, Backend] = {
    "local": Backend("local", False, False, "this machine, TransformerLens hooks on a HookedModel"),
    "ndif": Backend("ndif", True, True, "NDIF: the statistics are computed on the server, only they come back"),
    "ndif-local": Backend("ndif-local", "local", False,
                          "nnsight's serverless simulation of the NDIF path, on a model loaded here"),
}


def get_backend(name: str) -> Backend:
    """The backend of that name; InputError listing the known ones otherwise."""
    if name not in REGISTRY:
        raise InputError(f"Unknown backend {name!r}. Choose one of: {', '.join(BACKENDS)}.")
    return REGISTRY[name]


def remote_arg(name: str) -> bool | str:
    """What nnsight's `trace(..., remote=)` gets for a backend: False, True or "local"."""
    return get_backend(name).remote


def check_hub_id(repo_id: str) -> str:
    """Refuse anything that is not a hub model id `owner/name` (checked before any request is built).

    NDIF hosts hub models by their id; an embedded spec (smollm2-135m), a folder or a typo would only
    fail on the server, after the request was sent.
    """
    from probes.model.model_specs import EMBEDDED

    if not isinstance(repo_id, str) or not HUB_ID.fullmatch(repo_id) or ".." in repo_id:
        hint = ""
        if isinstance(repo_id, str) and repo_id.lower() in EMBEDDED:
            hint = (f" '{repo_id}' is an embedded model; NDIF serves hub models such as "
                    f"{EMBEDDED[repo_id.lower()].bridge_name!r} (or use --backend ndif-local to simulate).")
        raise InputError(f"{repo_id!r} is not a hub model id (owner/name, e.g. meta-llama/Llama-3.1-8B) that NDIF "
                         f"could host.{hint}")
    return repo_id


def ndif_api_key() -> str:
    """The NDIF API key from nnsight's own config (CONFIG.API.APIKEY, which also reads NDIF_API_KEY)."""
    import nnsight

    key = nnsight.CONFIG.API.APIKEY or os.environ.get("NDIF_API_KEY", "")
    if not key:
        raise InputError("No NDIF API key. Get one at https://login.ndif.us and store it in nnsight's config: "
                         "python -c \"import nnsight; nnsight.CONFIG.set_default_api_key('KEY')\" "
                         "(or set NDIF_API_KEY).")
    return str(key)


def check_backend_request(name: str, spec: str) -> Backend:
    """Everything that can be checked before a model is opened or a request sent: backend, hub id, key."""
    backend = get_backend(name)
    if name == "ndif":
        check_hub_id(spec)
        ndif_api_key()
    return backend


def open_model(spec: str, backend: str, device: str | None = None, dtype: str = "float32",
               device_map: Any = None) -> Any:
    """The object the analyses get: a HookedModel (local) or an nnsight LanguageModel (ndif, ndif-local).

    ndif: a LanguageModel over the hub id, with meta weights (config and tokenizer only).
    ndif-local: the loaded HookedModel's nnsight view (its traces hold the model's lock).
    """
    check_backend_request(backend, spec)
    if backend == "ndif":
        return ndif_model(spec)
    from probes.model.loading import load_model

    model = load_model(spec, device=device, dtype=dtype, device_map=device_map)
    return model.nnsight if backend == "ndif-local" else model


def ndif_model(repo_id: str) -> Any:
    """An nnsight LanguageModel for a hub model, without local weights, for remote=True runs (docs/remote.md).

    Reads the config and tokenizer from the hub (network). Set the key first:
    `nnsight.CONFIG.set_default_api_key("...")`.
    """
    from nnsight import LanguageModel

    check_hub_id(repo_id)  # before the hub or NDIF is contacted
    ndif_api_key()
    return LanguageModel(repo_id)
