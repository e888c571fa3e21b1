"""Tokens and the token helpers every model offers, local or remote (docs/architecture.md, "ModelLike").

`TokenView` needs only `spec`, `tokenizer` and `facts` (n_ctx, d_vocab, prepends_bos): HookedModel and the
remote model (probes/remote_analyses.py) both inherit it, so they tokenize, check and display tokens alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from probes.errors import InputError


@dataclass
class Tokens:
    """A tokenized batch: right-padded ids, their mask, and the string of every token."""

    ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    str_tokens: list[list[str]]
    prepend_bos: bool

    @property
    def lengths(self) -> list[int]:
        return [int(n) for n in self.attention_mask.sum(dim=1).tolist()]


class TokenView:
    """Tokenize, pad, check and display tokens the same way for every model and backend."""

    spec: str
    tokenizer: Any
    facts: Any

    def to_tokens(
        self,
        prompts: str | Sequence[str],
        prepend_bos: bool | None = None,
        max_length: int | None = None,
    ) -> Tokens:
        """Tokenize prompts the same way for every backend, right-padded, with an explicit BOS choice.

        prepend_bos=None keeps the tokenizer's default (SmolLM2: none; Gemma 3: `<bos>`); True puts
        the BOS first when the tokenizer does not; False removes it when it does.
        """
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not texts:
            raise InputError("No prompts given. Pass a string or a non-empty list of strings.")
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"Prompt {i} is empty. Give each prompt at least one non-space character.")
        want_bos = self.facts.prepends_bos if prepend_bos is None else prepend_bos
        if want_bos and self.tokenizer.bos_token_id is None:
            raise InputError(f"{self.spec}'s tokenizer has no BOS token; call with prepend_bos=False.")
        rows = [self._encode_one(t, want_bos) for t in texts]
        return self.tokens_from_ids(rows, prepend_bos=want_bos, max_length=max_length)

    def _encode_one(self, text: str, want_bos: bool) -> list[int]:
        ids = list(self.tokenizer(text, add_special_tokens=False).input_ids)
        return [int(self.tokenizer.bos_token_id)] + ids if want_bos else ids

    def tokens_from_ids(
        self,
        rows: Sequence[Sequence[int]] | Tensor,
        prepend_bos: bool = False,
        max_length: int | None = None,
    ) -> Tokens:
        """Pad already-tokenized rows into a batch and check them against the model's limits."""
        if isinstance(rows, Tensor):
            if rows.ndim == 1:
                rows = rows[None]
            rows = rows.tolist()
        rows = [list(map(int, r)) for r in rows]
        if not rows or any(len(r) == 0 for r in rows):
            raise InputError("A prompt has no tokens. Give each prompt at least one token.")
        limit = min(self.facts.n_ctx, max_length) if max_length else self.facts.n_ctx
        longest = max(len(r) for r in rows)
        if longest > limit:
            raise InputError(
                f"A prompt has {longest} tokens but {self.spec} takes at most {limit} (n_ctx). "
                "Shorten the prompt or split it into windows."
            )
        bad = [t for r in rows for t in r if not 0 <= t < self.facts.d_vocab]
        if bad:
            raise InputError(f"Token id {bad[0]} is outside the vocabulary (0..{self.facts.d_vocab - 1}).")
        pad = self.tokenizer.pad_token_id
        pad = 0 if pad is None else int(pad)
        ids = torch.full((len(rows), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        str_tokens = [self.tokenizer.convert_ids_to_tokens(r) for r in rows]
        str_tokens = [[self.display_token(t) for t in row] for row in str_tokens]
        return Tokens(ids=ids, attention_mask=mask, str_tokens=str_tokens, prepend_bos=prepend_bos)

    def display_token(self, token: str | None) -> str:
        """A token as shown: its text, or the special token's own name (<bos>)."""
        if token is None:
            return ""
        return self.tokenizer.convert_tokens_to_string([token]) if not token.startswith("<") else token

    def to_str_tokens(self, prompt: str | Sequence[int] | Tensor, prepend_bos: bool | None = None) -> list[str]:
        """The string of every token of one prompt (as the backends see it)."""
        if isinstance(prompt, str):
            return self.to_tokens(prompt, prepend_bos=prepend_bos).str_tokens[0]
        return self.tokens_from_ids([list(map(int, prompt))]).str_tokens[0]

    def to_string(self, ids: Sequence[int] | Tensor) -> str:
        return str(self.tokenizer.decode(ids.tolist() if isinstance(ids, Tensor) else list(ids)))
