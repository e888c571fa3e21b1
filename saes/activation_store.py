"""Activations at a TransformerLens hook, streamed, shuffled and optionally cached (docs/methods/saes.md; docs/saes.md).

Three sources share one method, `iter_batches(batch_size, seed, start_step)`, which yields
float32 [batch_size, d_in] tensors in an order fixed by `seed`, and can start at any step (so a
resumed training run sees the same batches as an uninterrupted one):
- `ActivationStore`: runs the model over probes.corpus windows (domains cycled in turn), stopping
  the forward pass right after the hook, and shuffles through a buffer of `buffer_tokens`
  (fill, permute, hand out the first half, keep the second, refill). `start_step` > 0 replays the
  stream from the beginning and discards what was already used (same result, costs time).
- `CachedActivations`: a folder written by `cache_activations` (format below), read through a
  memory map; each epoch is a fresh permutation seeded by (seed, epoch); the last partial batch of
  an epoch is dropped.
- `TensorSource`: the same over an in-memory tensor (tests, notebooks).

On-disk cache format ("glasshouse-activations-v1"), one folder:
    meta.json        {"format", "model", "hook_name", "hook_name_out", "d_out", "d_in", "n_tokens", "dtype", "context_length",
                      "domains", "seed", "skip_first_position", "python_version", "created"}
    activations.npy  [n_tokens, d_in] float32 or float16, numpy .npy (np.load(mmap_mode="r")); for a transcoder
                     (hook_name_out set) each row is [input | target] from one pass, d_in = both widths
    token_ids.npy    [n_tokens] int32, the token at each activation
    positions.npy    [n_tokens] int32, its position in its context window
Rows are in corpus order (unshuffled). The folder is written under a temporary name and renamed
into place when complete, so a killed caching run never leaves a folder that looks finished.
Position 0 of every window is left out when `skip_first_position` (it is an attention sink whose
norm is many times the others').
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from probes.corpus import DOMAINS, sample
from probes.errors import CheckpointError, InputError, advice, cause
from probes.progress import NullReporter, Reporter, TqdmReporter
from saes.multi import activations_at, side_by_side

CACHE_FORMAT = "glasshouse-activations-v1"


class _StopForward(Exception):
    pass


def check_hook(model: Any, hook_name: str) -> int:
    """The width of the activation at `hook_name` (InputError if the model has no such hook)."""
    hooks = model.hook_names()
    if hook_name not in hooks:
        near = sorted(h for h in hooks if h.endswith(hook_name.split(".")[-1]))[:3]
        raise InputError(f"The model has no hook '{hook_name}'. Hook names look like: {', '.join(near) or 'blocks.0.hook_resid_post'}.")
    ids = torch.tensor([[int(model.tokenizer.eos_token_id or 0)] * 2])
    return int(hook_activations(model, hook_name, ids).shape[-1])


def hook_activations(model: Any, hook_name: str, ids: Tensor) -> Float[Tensor, "batch pos d_in"]:
    """Activations at `hook_name` for token ids [batch, pos], stopping the forward pass at the hook."""
    got: dict[str, Tensor] = {}

    def grab(act: Tensor, hook: Any) -> None:
        got["act"] = act.detach().float().cpu()
        raise _StopForward

    try:
        model.run_with_hooks(ids, fwd_hooks=[(hook_name, grab)])
    except _StopForward:
        pass
    if "act" not in got:
        raise InputError(f"The hook '{hook_name}' did not fire; check the hook name.")
    return got["act"]


class ActivationStore:
    """Streams activations at a hook over probes.corpus windows (see module docstring)."""

    def __init__(
        self,
        model: Any,
        hook_name: str,
        domains: Sequence[str] = DOMAINS,
        context_length: int = 128,
        prompts_per_batch: int = 8,
        seed: int = 0,
        buffer_tokens: int = 32768,
        skip_first_position: bool = True,
        hook_name_out: str | None = None,
    ) -> None:
        bad = [d for d in domains if d not in DOMAINS]
        if bad or not domains:
            raise InputError(f"Unknown corpus domain(s) {bad}; choose from {', '.join(DOMAINS)}.")
        self.model = model
        self.hook_name = hook_name
        self.hook_name_out = hook_name_out  # a transcoder's target: rows [input | target] from one pass
        self.hooks = [hook_name] + ([hook_name_out] if hook_name_out else [])
        self.d_out = check_hook(model, hook_name_out) if hook_name_out else 0
        self.d_in = check_hook(model, hook_name) + self.d_out
        self.domains = list(domains)
        self.context_length = context_length
        self.prompts_per_batch = prompts_per_batch
        self.seed = seed
        self.buffer_tokens = buffer_tokens
        self.skip_first_position = skip_first_position

    def chunks(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """(activations [n, d_in], token ids [n], positions [n]) per model batch, in corpus order, forever."""
        i = 0
        while True:
            domain = self.domains[i % len(self.domains)]
            s = sample(domain, self.prompts_per_batch, self.context_length, self.model, seed=self.seed * 1_000_003 + i)
            acts = side_by_side(activations_at(self.model, self.hooks, s.ids), self.hooks)  # one pass for both
            start = 1 if self.skip_first_position else 0
            pos = torch.arange(start, s.ids.shape[1]).expand(s.ids.shape[0], -1)
            yield acts[:, start:].reshape(-1, self.d_in), s.ids[:, start:].reshape(-1), pos.reshape(-1)
            i += 1

    def iter_batches(self, batch_size: int, seed: int = 0, start_step: int = 0) -> Iterator[Tensor]:
        """Shuffled batches through the buffer; `start_step` batches are replayed and discarded."""
        gen = torch.Generator().manual_seed(seed)
        buffer = torch.empty(0, self.d_in)
        chunks = self.chunks()
        step = 0
        half = max(self.buffer_tokens // 2, batch_size)
        while True:
            while buffer.shape[0] < 2 * half:
                buffer = torch.cat([buffer, next(chunks)[0]])
            buffer = buffer[torch.randperm(buffer.shape[0], generator=gen)]
            out, buffer = buffer[:half], buffer[half:]
            for j in range(half // batch_size):
                if step >= start_step:
                    yield out[j * batch_size : (j + 1) * batch_size]
                step += 1


def _epoch_batches(n: int, batch_size: int, seed: int, start_step: int) -> Iterator[Tensor]:
    per_epoch = n // batch_size
    if per_epoch < 1:
        raise InputError(f"Only {n} activations for batches of {batch_size}; use a smaller batch or more tokens.")
    step = start_step
    while True:
        epoch, i = divmod(step, per_epoch)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=gen)
        yield perm[i * batch_size : (i + 1) * batch_size].sort().values
        step += 1


class TensorSource:
    """Batches from an in-memory [n, d_in] tensor, one seeded permutation per epoch."""

    def __init__(self, activations: Float[Tensor, "n d_in"]) -> None:
        self.activations = activations.float()
        self.d_in = int(activations.shape[-1])

    def __len__(self) -> int:
        return int(self.activations.shape[0])

    def iter_batches(self, batch_size: int, seed: int = 0, start_step: int = 0) -> Iterator[Tensor]:
        for idx in _epoch_batches(len(self), batch_size, seed, start_step):
            yield self.activations[idx]


class CachedActivations:
    """Batches from an on-disk cache folder (format in the module docstring)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.exists():
            raise CheckpointError(f"{self.folder} is not an activation cache (no meta.json). Build one with cache_activations().")
        try:
            self.meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{meta_path} cannot be read as JSON ({cause(exc)}). " + advice(
                exc, damaged=f"The cache is damaged: delete {self.folder} to rebuild it, or pass another --cache folder.")
            ) from exc
        if not isinstance(self.meta, dict) or not all(k in self.meta for k in ("n_tokens", "d_in", "hook_name")):
            raise CheckpointError(f"{meta_path} lacks n_tokens, d_in or hook_name; the cache is damaged. Delete "
                                  f"{self.folder} to rebuild it.")
        if self.meta.get("format") != CACHE_FORMAT:
            raise CheckpointError(f"{meta_path} has format {self.meta.get('format')!r}, expected {CACHE_FORMAT!r}.")
        try:
            self.activations = np.load(self.folder / "activations.npy", mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{self.folder / 'activations.npy'} cannot be read ({cause(exc)}). "
                                  + advice(exc, damaged="Rebuild the cache.")) from exc
        expected = (self.meta["n_tokens"], self.meta["d_in"])
        if tuple(self.activations.shape) != expected:
            raise CheckpointError(f"activations.npy has shape {self.activations.shape}, meta.json says {expected}; rebuild the cache.")
        self.d_in = int(self.meta["d_in"])
        self.hook_name = str(self.meta["hook_name"])
        self.hook_name_out = self.meta.get("hook_name_out")  # a transcoder cache: rows [input | target]
        self.d_out = int(self.meta.get("d_out") or 0)

    def __len__(self) -> int:
        return int(self.meta["n_tokens"])

    def rows(self, start: int, stop: int) -> Float[Tensor, "n d_in"]:
        return torch.from_numpy(np.array(self.activations[start:stop], dtype=np.float32))

    def iter_batches(self, batch_size: int, seed: int = 0, start_step: int = 0, limit: int | None = None) -> Iterator[Tensor]:
        """Shuffled batches over the first `limit` rows (all by default)."""
        n = len(self) if limit is None else min(limit, len(self))
        for idx in _epoch_batches(n, batch_size, seed, start_step):
            yield torch.from_numpy(np.array(self.activations[idx.numpy()], dtype=np.float32))


def window_activations(model: Any, hook_name: str, ids: Int[Tensor, "n pos"], start: int = 1, batch: int = 8
                       ) -> Float[Tensor, "tokens d_in"]:
    """Activations at `hook_name` of every window from position `start` on (an SAE skips position 0), `batch`
    windows per forward pass, flattened to rows [n * (pos - start), d_in]."""
    parts = [hook_activations(model, hook_name, ids[i : i + batch])[:, start:] for i in range(0, ids.shape[0], batch)]
    return torch.cat([p.reshape(-1, p.shape[-1]) for p in parts])


def collect_activations(model: Any, hook_name: str, n_tokens: int, context: int = 65, seed: int = 0,
                        batch: int = 8, reporter: Reporter | None = None) -> Float[Tensor, "n d_in"]:
    """`n_tokens` activations at `hook_name` on prose windows of `context` tokens (probes.corpus, `seed`),
    position 0 left out (the SAE skips it), `batch` windows per forward pass; the app's training input.
    reporter (probes.progress): updated after every forward pass, checked for a cancel before each."""
    if n_tokens < 1 or context < 2 or batch < 1:
        raise InputError(f"Need n_tokens >= 1, context >= 2 and batch >= 1 (got {n_tokens}, {context}, {batch}).")
    rep = reporter or NullReporter()
    n = max(1, -(-n_tokens // (context - 1)))
    ids = sample("prose", n, context, model, seed=seed).ids
    acts = []
    for i in range(0, n, batch):
        rep.check()
        acts.append(hook_activations(model, hook_name, ids[i : i + batch])[:, 1:])
        done = min(n, i + batch)
        rep.update(f"collecting activations at {hook_name}: window {done} of {n}", done, n)
    return torch.cat(acts).reshape(-1, acts[0].shape[-1])[:n_tokens]


def cache_activations(
    store: ActivationStore, folder: str | os.PathLike[str], n_tokens: int, dtype: str = "float32", progress: bool = True,
    reporter: Reporter | None = None,
) -> CachedActivations:
    """Run the store until `n_tokens` activations are collected and write them as a cache folder.
    reporter (probes.progress): per model batch; a cancel leaves no finished cache (default: a terminal
    bar unless progress is False)."""
    target = Path(folder)
    if (target / "meta.json").exists():
        raise InputError(f"{target} already holds an activation cache; remove it or pick another folder.")
    tmp = target.with_name(f".{target.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    acts = np.lib.format.open_memmap(tmp / "activations.npy", mode="w+", dtype=np.dtype(dtype), shape=(n_tokens, store.d_in))
    ids = np.zeros(n_tokens, dtype=np.int32)
    pos = np.zeros(n_tokens, dtype=np.int32)
    filled = 0
    rep = reporter or TqdmReporter(f"caching {store.hook_name}", disable=not progress)
    for a, t, p in store.chunks():
        rep.check()
        take = min(a.shape[0], n_tokens - filled)
        if not torch.isfinite(a[:take]).all():
            raise InputError(f"Activations at {store.hook_name} contain NaN or inf; the model or its dtype is broken.")
        acts[filled : filled + take] = a[:take].numpy().astype(dtype)
        ids[filled : filled + take] = t[:take].numpy()
        pos[filled : filled + take] = p[:take].numpy()
        filled += take
        rep.update(f"caching {store.hook_name}: {filled} of {n_tokens} tokens", filled, n_tokens)
        if filled >= n_tokens:
            break
    rep.close()
    acts.flush()
    del acts
    np.save(tmp / "token_ids.npy", ids)
    np.save(tmp / "positions.npy", pos)
    meta = {
        "format": CACHE_FORMAT, "model": getattr(store.model, "spec", "?"), "hook_name": store.hook_name,
        "hook_name_out": store.hook_name_out, "d_out": store.d_out, "d_in": store.d_in, "n_tokens": n_tokens, "dtype": dtype, "context_length": store.context_length,
        "domains": store.domains, "seed": store.seed, "skip_first_position": store.skip_first_position,
        "python_version": sys.version.split()[0], "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    if target.exists():
        target.rmdir()
    os.replace(tmp, target)
    from probes.io import fsync_dir

    fsync_dir(target.parent)
    return CachedActivations(target)


def estimate_norm_scale(sample_acts: Float[Tensor, "n d_in"]) -> float:
    """s such that the mean of ||x * s|| over the sample is sqrt(d_in) (SAELens "expected_average_only_in")."""
    mean_norm = float(sample_acts.float().norm(dim=-1).mean())
    if not math.isfinite(mean_norm) or mean_norm <= 0:
        raise InputError("Cannot estimate the activation scale: the sample has zero, NaN or inf norms.")
    return math.sqrt(sample_acts.shape[-1]) / mean_norm
