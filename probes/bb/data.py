"""The Bigram-Backcopy (BB) task: vocabulary, bigram statistics and the exact sequence generator.

Spec: docs/methods/extreme-tokens.md, "The Bigram-Backcopy (BB) task".

Choices where the spec leaves room (documented in docs/bb_lab.md and tested):
- Corpus: the texts of `probes.corpus.documents("prose")` (Python's documentation and docstrings),
  joined in their fixed order. Its 3 most frequent characters are ' ', 'e', 't', as in Tiny Shakespeare.
- Vocabulary: the 65 most frequent characters (ties broken by code point) get ids 1..65; `<s>` is id 0.
  Every other character is mapped away: it is removed, and it splits the text, so that no pair spanning
  it is counted (about 0.24% of the prose characters are dropped this way).
- Bigram: counts of every adjacent pair inside the kept runs (pairs at both alignments, i.e. (x0,x1),
  (x1,x2), ...); a row without counts (never happens on the prose corpus) falls back to the unigram.
- Unigram: the character counts of the kept text.
- Random numbers: each batch comes from numpy's generator seeded with (seed, stream, step), so a batch
  depends only on those numbers (a resumed run sees the same data).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from probes.errors import InputError

BOS = "<s>"
BOS_ID = 0
N_CHARS = 65
N_TRIGGERS = 3
SEQ_LEN = 257  # tokens per generated sequence; inputs seq[:256], targets seq[1:]
TRAIN_STREAM = 1
EVAL_STREAM = 2


@dataclass(frozen=True)
class BBTask:
    """The generator's parameters: characters, bigram transition, unigram marginal, triggers.

    Token ids: 0 is `<s>`, 1 + i is chars[i]. `transition[a, b]` = P(next = b | current = a) over the
    character ids 1..65 (row and column 0, `<s>`, are zero). `unigram` sums to one over 1..65.
    """

    chars: tuple[str, ...]
    transition: np.ndarray = field(repr=False)  # [V, V] float64
    unigram: np.ndarray = field(repr=False)  # [V] float64
    triggers: tuple[int, ...]  # token ids of the k most frequent characters
    source: str = "custom"

    @property
    def vocab(self) -> list[str]:
        """Token strings by id (id 0 is `<s>`)."""
        return [BOS, *self.chars]

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    @property
    def first_token_probs(self) -> np.ndarray:
        """The law of x1: the unigram with the triggers removed, renormalized."""
        p = self.unigram.copy()
        p[list(self.triggers)] = 0.0
        return p / p.sum()

    def is_trigger(self, ids: Tensor) -> Tensor:
        """Boolean mask of trigger tokens."""
        return torch.isin(ids, torch.tensor(self.triggers, dtype=ids.dtype, device=ids.device))

    def encode(self, text: str) -> list[int]:
        """Character ids of a text (characters outside the vocabulary raise InputError)."""
        index = {c: i + 1 for i, c in enumerate(self.chars)}
        missing = sorted({c for c in text if c not in index})
        if missing:
            raise InputError(f"Characters {missing!r} are not in the BB vocabulary; use only {''.join(self.chars)!r}.")
        return [index[c] for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.vocab[int(i)] for i in ids)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chars": list(self.chars),
            "triggers": [self.vocab[t] for t in self.triggers],
            "trigger_ids": list(self.triggers),
            "source": self.source,
            "unigram": self.unigram.tolist(),
            "transition": self.transition.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BBTask:
        return cls(
            chars=tuple(data["chars"]),
            transition=np.asarray(data["transition"], dtype=np.float64),
            unigram=np.asarray(data["unigram"], dtype=np.float64),
            triggers=tuple(int(t) for t in data["trigger_ids"]),
            source=str(data.get("source", "custom")),
        )


def estimate_task(texts: Iterable[str], n_chars: int = N_CHARS, n_triggers: int = N_TRIGGERS, source: str = "custom") -> BBTask:
    """Estimate the BB task from a character corpus (spec: BB task, vocabulary and bigram).

    Keeps the `n_chars` most frequent characters (ties by code point), removes the rest (each removed
    character splits the text), counts all adjacent pairs inside the kept runs and the kept characters.
    """
    texts = list(texts)
    counts: dict[str, int] = {}
    for text in texts:
        for c in text:
            counts[c] = counts.get(c, 0) + 1
    if len(counts) < n_chars:
        raise InputError(f"The corpus has only {len(counts)} distinct characters; the BB task needs {n_chars}.")
    if not 0 < n_triggers < n_chars:
        raise InputError(f"n_triggers must be between 1 and {n_chars - 1} (got {n_triggers}).")
    ranked = sorted(counts, key=lambda c: (-counts[c], ord(c)))
    chars = tuple(ranked[:n_chars])
    index = {c: i + 1 for i, c in enumerate(chars)}
    size = n_chars + 1
    pairs = np.zeros((size, size), dtype=np.float64)
    unigram = np.zeros(size, dtype=np.float64)
    kept = "".join(re.escape(c) for c in chars)
    for text in texts:
        for run in re.findall(f"[{kept}]+", text):
            ids = np.fromiter((index[c] for c in run), dtype=np.int64, count=len(run))
            np.add.at(unigram, ids, 1.0)
            np.add.at(pairs, (ids[:-1], ids[1:]), 1.0)
    unigram /= unigram.sum()
    rows = pairs.sum(axis=1, keepdims=True)
    transition = np.where(rows > 0, pairs / np.where(rows > 0, rows, 1.0), unigram[None, :])
    transition[BOS_ID] = 0.0
    transition[:, BOS_ID] = 0.0
    transition /= np.where(transition.sum(axis=1, keepdims=True) > 0, transition.sum(axis=1, keepdims=True), 1.0)
    triggers = tuple(index[c] for c in chars[:n_triggers])
    return BBTask(chars=chars, transition=transition, unigram=unigram, triggers=triggers, source=source)


@cache
def prose_task() -> BBTask:
    """The project's BB task: estimated from the prose corpus of probes.corpus (cached per process)."""
    from probes.corpus import documents

    return estimate_task((d.text for d in documents("prose")), source="probes.corpus prose")


def _sample_rows(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling: row b of `cdf` with uniform u[b] -> an index."""
    idx = (cdf < u[:, None]).sum(axis=1)
    return np.minimum(idx, cdf.shape[1] - 1)


def generate(task: BBTask, batch: int, seed: int, step: int, length: int = SEQ_LEN, stream: int = TRAIN_STREAM) -> Int[Tensor, "batch length"]:
    """Generate `batch` BB sequences of `length` tokens (spec: BB task, generation).

    x0 = <s>; x1 ~ unigram without triggers; for t >= 2, x_t = x_{t-2} if x_{t-1} is a trigger, else
    x_t ~ P(. | x_{t-1}). The batch depends only on (seed, stream, step).
    """
    if batch < 1 or length < 2:
        raise InputError(f"Need batch >= 1 and length >= 2 (got batch={batch}, length={length}).")
    rng = np.random.default_rng([int(seed), int(stream), int(step)])
    u = rng.random((length, batch))
    seq = np.zeros((batch, length), dtype=np.int64)
    seq[:, 0] = BOS_ID
    seq[:, 1] = _sample_rows(np.broadcast_to(np.cumsum(task.first_token_probs), (batch, task.vocab_size)), u[1])
    cdf = np.cumsum(task.transition, axis=1)
    is_trig = np.zeros(task.vocab_size, dtype=bool)
    is_trig[list(task.triggers)] = True
    for t in range(2, length):
        prev = seq[:, t - 1]
        drawn = _sample_rows(cdf[prev], u[t])
        seq[:, t] = np.where(is_trig[prev], seq[:, t - 2], drawn)
    return torch.from_numpy(seq)


def split(seq: Int[Tensor, "batch length"]) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Inputs seq[:, :-1] and targets seq[:, 1:]."""
    return seq[:, :-1], seq[:, 1:]


def oracle_probs(task: BBTask, inputs: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos vocab"]:
    """The true next-token law at every input position (spec: BB task, risks).

    Position 0 (<s>): x1's law; after a trigger at position t >= 1: one-hot on x_{t-1}; otherwise
    P(. | x_t). (At t = 1 no trigger occurs, since x1 is never a trigger.)
    """
    trans = torch.from_numpy(task.transition).float()
    probs = trans[inputs]
    probs[:, 0] = torch.from_numpy(task.first_token_probs).float()
    trig = task.is_trigger(inputs)
    trig[:, 0] = False
    back = torch.zeros_like(probs)
    prev = torch.roll(inputs, 1, dims=1)
    back.scatter_(-1, prev[..., None], 1.0)
    return torch.where(trig[..., None], back, probs)
