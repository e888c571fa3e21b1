"""`ModelLike`: what an analysis's collect step may ask of a model, local or remote (docs/architecture.md).

HookedModel (probes/model/hooked_model.py) and RemoteModel (probes/remote_analyses.py: an nnsight
LanguageModel run here, in nnsight's local simulation or on NDIF) both satisfy it; mypy checks that through
`_both_satisfy` below. The measurements return statistics only, never activations or patterns, so that a
remote run sends back only what the analysis reduces: per-sequence residual norms, attention on the first
key, the sink metric's alpha per key, the active-dormant head statistics and the extreme-token
measurements. A collect step that needs more than this protocol offers runs locally only (its Analysis
declares remote=False).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch
    from jaxtyping import Float, Int
    from torch import Tensor

    from probes.model.facts import ModelFacts
    from probes.model.tokens import Tokens
    from probes.successor.in_context import PromptSet


class ModelLike(Protocol):
    """A model an analysis can run on: its facts, its tokens, and statistics-only measurements."""

    spec: str
    tokenizer: Any

    @property
    def facts(self) -> ModelFacts: ...

    @property
    def backend(self) -> str:
        """Where the measurements run: "local" (a HookedModel, which can also run hooks, losses and weights),
        else the remote backend; an analysis leaves out the parts that need a local model when it is not "local"."""
        ...

    @property
    def measured_layers(self) -> list[int]:
        """The layers the attention measurements return, in order (every layer, unless a remote model was asked
        for fewer); residual norms and attention on the first token always cover every layer."""
        ...

    def tokens_from_ids(self, rows: Sequence[Sequence[int]] | Tensor, prepend_bos: bool = False,
                        max_length: int | None = None) -> Tokens: ...

    def to_tokens(self, prompts: str | Sequence[str], prepend_bos: bool | None = None,
                  max_length: int | None = None) -> Tokens: ...

    def to_str_tokens(self, prompt: str | Sequence[int] | Tensor, prepend_bos: bool | None = None) -> list[str]: ...

    def check_layers(self, layers: Sequence[int] | None) -> list[int]: ...

    def attention_run(self, attention: str = "fast") -> str:
        """The attention the measurements asked for `attention` ("fast" | "patterns") run, as results record it."""
        ...

    def residual_norms(self, ids: Int[Tensor, "batch pos"], dtype: torch.dtype | None = None,
                       zero: tuple[str, int] | None = None, attention: str = "fast") -> Float[Tensor, "batch layer pos"]:
        """||resid_post|| after every layer at every position (dtype: the norm's, default float32), with one
        layer's MLP or attention output zeroed when `zero` = ("mlp" | "attn", layer) says so; attention
        "fast" | "patterns" as attention_run."""
        ...

    def attention_on_first(self, ids: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch layer head pos"]:
        """The attention weight every query puts on key 0, per layer and head."""
        ...

    def sink_alpha(self, ids: Int[Tensor, "batch pos"], attention: str = "fast"
                   ) -> Float[Tensor, "batch layer head pos"]:
        """alpha_k: the attention key k receives, averaged over the queries that see it (attention-sinks.md)."""
        ...

    def head_statistics(self, ids: Int[Tensor, "batch pos"], attention: str = "fast"
                        ) -> dict[str, Float[Tensor, "batch layer head"]]:
        """probes.dormant.HEAD_STATISTICS of every sequence: dormancy, row entropy, column entropy."""
        ...

    def extreme_statistics(self, ids: Int[Tensor, "batch pos"], attention: str = "fast") -> dict[str, Tensor]:
        """The per-token extreme-token measurements (probes.extreme; attention "fast" | "patterns"): "sink" [b, layer, head] attention on the
        first token, "value" [b, layer, head, T] value norms, "resid" [b, layer, T] residual norms, "gap"
        [b, layer, head, T] logit gaps."""
        ...

    def head_dla(self, prompts: PromptSet, batch_size: int = 16) -> dict[str, Tensor]:
        """Per-head direct logit attribution at each prompt's last token (probes.successor.in_context.head_dla):
        "correct" [p, layer, head], "per_t" [p, layer, head, |T|], "col" [p], "logit_diff" [p], "top1" [p],
        "logits_on_targets" [p, |T|]."""
        ...


def _both_satisfy() -> list[ModelLike]:  # pragma: no cover - read by mypy, never run
    from probes.model.hooked_model import HookedModel
    from probes.remote_analyses import RemoteModel

    local: HookedModel = HookedModel.__new__(HookedModel)
    remote: RemoteModel = RemoteModel.__new__(RemoteModel)
    return [local, remote]
