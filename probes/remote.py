"""Probe statistics computed inside an nnsight trace, so a remote run (NDIF) sends back only them.

Spec: docs/remote.md (scale beyond one machine) and docs/batch.md. Each function here traces an nnsight
`LanguageModel` (through probes.remote_analyses.RemoteModel), computes its statistic inside the trace and
`.save()`s only that statistic (per-sequence norms, attention on key 0), never whole activations or attention
patterns.

remote=False runs locally (the HookedModel's `model.nnsight` view), remote="local" runs nnsight's
serverless simulation of the remote path (serialize, deserialize, run), remote=True sends the
request to NDIF (needs network and an API key: `nnsight.CONFIG.set_default_api_key(KEY)` or
NDIF_API_KEY). `intercept_remote()` builds the request a remote run would send and stops there.

Inputs are unpadded token ids [batch, pos] (corpus windows): every position is a real token.
First-token attention reads the attention module's second output (the weights), which HF returns
only under eager attention; a server running sdpa returns None there and the run fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from jaxtyping import Float, Int
from torch import Tensor

from probes.errors import InputError, ModelLoadError
from probes.model.nnsight_view import layer_count, nnsight_paths


class RemoteRequestBlocked(RuntimeError):
    """Raised by `intercept_remote` instead of contacting NDIF."""


@dataclass
class InterceptedRequest:
    """What a remote run would have sent: the model key, the payload size and the traced source."""

    model_key: str
    payload_bytes: int
    source: str
    variables: list[str] = field(default_factory=list)
    blob: bytes = b""


def layer_path(lm: Any) -> str:
    """Dotted path of the decoder-layer list inside an nnsight LanguageModel's module (the architecture
    table of probes/model/architecture.py)."""
    return str(remote_paths(lm).layers)


def attn_name(lm: Any) -> str:
    """Name of a decoder layer's attention sub-module (the architecture table)."""
    return str(remote_paths(lm).attn)


def remote_paths(lm: Any) -> Any:
    """The architecture-table module paths of an nnsight model (InputError for an architecture without one)."""
    try:
        return nnsight_paths(lm)
    except ModelLoadError as err:
        raise InputError(f"Remote statistics cannot walk this model: {err}") from err


def _layout(lm: Any) -> tuple[str, str, int]:
    """The decoder-layer path, the attention name and the number of layers, read outside the trace."""
    return layer_path(lm), attn_name(lm), layer_count(lm)


def _check_ids(ids: Tensor) -> Tensor:
    if ids.ndim != 2 or ids.shape[0] < 1 or ids.shape[1] < 2:
        raise InputError(f"Token ids must be [batch, pos] with pos >= 2; got shape {tuple(ids.shape)}.")
    return ids.long()


def residual_norms(lm: Any, ids: Int[Tensor, "batch pos"], remote: bool | str = False) -> Float[Tensor, "layer pos"]:
    """Mean over sequences of the residual-stream norm after each decoder layer (resid_post), per position.

    RemoteModel.residual_norms (probes/remote_analyses.py) in one trace; only the norms come back.
    """
    from probes.remote_analyses import RemoteModel

    ids = _check_ids(ids)
    return RemoteModel(lm, remote=remote).residual_norms(ids).mean(dim=0)


def first_token_attention(
    lm: Any, ids: Int[Tensor, "batch pos"], min_query: int = 1, remote: bool | str = False
) -> Float[Tensor, "layer head"]:
    """Mean attention weight on key position 0, over sequences and queries q >= min_query.

    RemoteModel.attention_on_first in one trace (only A[:, :, :, 0] comes back), then
    probes.quantities.mean_from_query.
    """
    from probes.quantities import mean_from_query
    from probes.remote_analyses import RemoteModel

    ids = _check_ids(ids)
    if not 1 <= min_query < ids.shape[1]:
        raise InputError(f"min_query must be in 1..{ids.shape[1] - 1}; got {min_query}.")
    on_first = RemoteModel(lm, remote=remote).attention_on_first(ids)
    return mean_from_query(on_first, min_query).mean(dim=0)


@contextmanager
def intercept_remote(repo_id: str | None = None) -> Iterator[list[InterceptedRequest]]:
    """Within the block, a remote=True trace builds its request and raises RemoteRequestBlocked.

    Nothing is sent: the serialized payload is measured and the traced source recorded. The model
    key is built without asking the hub to canonicalize the repo id (nnsight normally does);
    `repo_id` names the model the request would ask for (default: the LanguageModel's own id).
    """
    import json

    from nnsight.intervention.backends.remote import RemoteBackend
    from nnsight.intervention.serialization import reduce_block
    from nnsight.modeling.huggingface import HuggingFaceModel

    seen: list[InterceptedRequest] = []

    def blocked(self: Any, *args: Any, **kwargs: Any) -> None:
        tracer: Any = args[-1] if args else kwargs["tracer"]
        blob = self._serialize(tracer)
        variables = dict(tracer.info.frame.f_locals)
        source, _glbls, shipped = reduce_block(tracer.node, tracer.info.frame.f_globals, variables)
        seen.append(InterceptedRequest(self.model_key, len(blob), source, sorted(shipped), blob))
        raise RemoteRequestBlocked(f"remote request to {self.host} for {self.model_key} intercepted")

    def no_network(self: Any, *args: Any, **kwargs: Any) -> None:
        raise RemoteRequestBlocked("network call intercepted")

    def offline_key(self: Any) -> str:
        return json.dumps({"repo_id": repo_id or self.repo_id, "revision": self.revision})

    saved = {name: getattr(RemoteBackend, name) for name in ("request", "submit", "poll", "_post")}
    saved_key = HuggingFaceModel._remoteable_model_key
    HuggingFaceModel._remoteable_model_key = offline_key  # type: ignore[method-assign]
    RemoteBackend.request = blocked  # type: ignore[method-assign]
    RemoteBackend.submit = blocked  # type: ignore[method-assign]
    RemoteBackend.poll = no_network  # type: ignore[method-assign]
    RemoteBackend._post = no_network  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        for name, fn in saved.items():
            setattr(RemoteBackend, name, fn)
        HuggingFaceModel._remoteable_model_key = saved_key  # type: ignore[method-assign]
