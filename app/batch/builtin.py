"""The probes the foundation supports on its own, registered for batch plans.

Spec: docs/batch.md. Both are written with probes.model.capture (local) and probes.remote (nnsight / NDIF):
- residual_norms: ||resid_post[layer, pos]||_2, mean over the corpus sequences; one row per
  (layer, position), metric "resid_post_norm".
- first_token_attention: attention weight on key position 0, mean over sequences and over the
  queries q >= min_query (default 1: every non-first query); one row per (layer, head),
  metric "first_token_attention".
Both process the corpus in chunks of batch_size and keep only running sums.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from app.batch.registry import ProbeEntry, Row, Setting, register
from app.figures.batch import first_token_attention_figure, residual_norms_figure
from probes.attention_stats import attention_statistics
from probes.corpus import CorpusSample
from probes.errors import InputError
from probes.model.capture import capture
from probes.quantities import mean_from_query

BOS = Setting(bool, False, "put the tokenizer's BOS token before every corpus window")
BATCH = Setting(int, 8, "sequences per forward pass", minimum=1)


def corpus_ids(tokenizer: Any, corpus: CorpusSample, prepend_bos: bool) -> Int[Tensor, "n pos"]:
    """The corpus windows as ids, with a BOS column first when asked for."""
    ids = corpus.ids
    if not prepend_bos:
        return ids
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        raise InputError("prepend_bos=true but the tokenizer has no BOS token; set prepend_bos=false.")
    return torch.cat([torch.full((ids.shape[0], 1), int(bos), dtype=ids.dtype), ids], dim=1)


def chunked_mean(ids: Tensor, batch_size: int, per_chunk_mean: Callable[[Tensor], Tensor]) -> Tensor:
    """Mean over all rows of ids of a statistic computed as a mean per chunk of rows (float64)."""
    total = torch.zeros(())
    for start in range(0, ids.shape[0], batch_size):
        chunk = ids[start : start + batch_size]
        total = total + per_chunk_mean(chunk).double() * len(chunk)
    return total / ids.shape[0]


def run_residual_norms(model: Any, settings: dict[str, Any], corpus: CorpusSample, seed: int) -> list[Row]:
    """docs/batch.md residual_norms: mean over sequences of ||resid_post|| per layer and position."""
    ids = corpus_ids(model.tokenizer, corpus, settings["prepend_bos"])

    def chunk_mean(chunk: Tensor) -> Tensor:
        resid = capture(model, chunk, what=["resid_post"], batch_size=len(chunk))["resid_post"]
        return resid.double().norm(dim=-1).mean(dim=0)  # [layer, pos]

    return norm_rows(chunked_mean(ids, settings["batch_size"], chunk_mean))


def norm_rows(mean: Tensor) -> list[Row]:
    return [{"metric": "resid_post_norm", "value": float(mean[layer, pos]), "layer": layer, "head": None,
             "position": pos} for layer in range(mean.shape[0]) for pos in range(mean.shape[1])]


def run_first_token_attention(model: Any, settings: dict[str, Any], corpus: CorpusSample, seed: int) -> list[Row]:
    """docs/batch.md first_token_attention: mean attention on key 0 over queries q >= min_query, per layer/head."""
    ids = corpus_ids(model.tokenizer, corpus, settings["prepend_bos"])
    q0 = settings["min_query"]
    if q0 >= ids.shape[1]:
        raise InputError(f"min_query={q0} leaves no query in windows of {ids.shape[1]} tokens; lower it.")

    def chunk_mean(chunk: Tensor) -> Tensor:  # the statistics path: SDPA, no T x T pattern (docs/kernels.md)
        on_first = attention_statistics(model, chunk, n_sink=1, batch_size=len(chunk), outputs=False).sink[..., 0]
        return mean_from_query(on_first, q0, dtype=torch.float64).mean(dim=0)  # [layer, head]

    return attention_rows(chunked_mean(ids, settings["batch_size"], chunk_mean))


def attention_rows(mean: Tensor) -> list[Row]:
    return [{"metric": "first_token_attention", "value": float(mean[layer, head]), "layer": layer, "head": head,
             "position": None} for layer in range(mean.shape[0]) for head in range(mean.shape[1])]


def remote_residual_norms(
    lm: Any, settings: dict[str, Any], corpus: CorpusSample, seed: int, remote: bool | str
) -> list[Row]:
    """residual_norms through nnsight (probes.remote): only the [layer, pos] means come back."""
    from probes import remote as nd

    ids = corpus_ids(lm.tokenizer, corpus, settings["prepend_bos"])
    return norm_rows(chunked_mean(ids, settings["batch_size"], lambda chunk: nd.residual_norms(lm, chunk, remote=remote)))


def remote_first_token_attention(
    lm: Any, settings: dict[str, Any], corpus: CorpusSample, seed: int, remote: bool | str
) -> list[Row]:
    """first_token_attention through nnsight (probes.remote): only the [layer, head] means come back."""
    from probes import remote as nd

    ids = corpus_ids(lm.tokenizer, corpus, settings["prepend_bos"])
    mean = chunked_mean(
        ids, settings["batch_size"], lambda chunk: nd.first_token_attention(lm, chunk, settings["min_query"], remote=remote)
    )
    return attention_rows(mean)


register(ProbeEntry(
    name="residual_norms",
    description="norm of resid_post per layer and position, mean over sequences",
    run=run_residual_norms,
    settings={"prepend_bos": BOS, "batch_size": BATCH},
    figure=residual_norms_figure,
    run_remote=remote_residual_norms,
), replace=True)

register(ProbeEntry(
    name="first_token_attention",
    description="mean attention on the first token per layer and head, over non-first queries",
    run=run_first_token_attention,
    settings={"prepend_bos": BOS, "batch_size": BATCH,
              "min_query": Setting(int, 1, "first query position averaged over", minimum=1)},
    figure=first_token_attention_figure,
    run_remote=remote_first_token_attention,
), replace=True)
