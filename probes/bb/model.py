"""The BB lab's transformer (the training module), in plain torch.

Spec: docs/methods/extreme-tokens.md, "The Bigram-Backcopy (BB) task", model.
Token + learned absolute position embeddings, pre-LayerNorm blocks, attention without biases scaled by
1/sqrt(d_head), ReLU MLP of width 4d without biases, final LayerNorm, untied unembedding (no bias).
LayerNorms are torch's standard ones (scale and bias), exactly as OPT's, so that a checkpoint saved as
an OPT model computes the same function (probes/bb/checkpoint.py).

Attention is "softmax" (causal softmax) or "relu": relu(q.k / sqrt(d_head)) / (i + 1) for query
position i (0-based, i + 1 keys visible), masked keys contributing 0 (the spec's ReLU mitigation).
Initialization (the spec does not give one): every Linear and Embedding weight ~ N(0, 0.02^2).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from probes.bb.options import ATTENTIONS  # one definition, torch-free
from probes.errors import InputError


@dataclass(frozen=True)
class BBConfig:
    """Sizes of the BB model (the spec's d = 256, one head, 1 or 3 layers)."""

    vocab_size: int = 66
    d_model: int = 256
    n_layers: int = 1
    n_heads: int = 1
    n_ctx: int = 256
    attention: str = "softmax"

    def __post_init__(self) -> None:
        if self.attention not in ATTENTIONS:
            raise InputError(f"Unknown attention '{self.attention}'. Use one of: {', '.join(ATTENTIONS)}.")
        if self.n_layers < 1 or self.n_heads < 1 or self.d_model % self.n_heads:
            raise InputError(
                f"Need n_layers >= 1 and d_model divisible by n_heads (got {self.n_layers}, {self.d_model}, {self.n_heads})."
            )

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def d_mlp(self) -> int:
        return 4 * self.d_model

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Block(nn.Module):
    """One pre-LayerNorm block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, cfg: BBConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.ln1 = nn.LayerNorm(d)
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, d, bias=False)
        self.o = nn.Linear(d, d, bias=False)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, cfg.d_mlp, bias=False)
        self.fc2 = nn.Linear(cfg.d_mlp, d, bias=False)

    def scores(self, h: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch head query key"]:
        """Attention logits q.k / sqrt(d_head) of this block on its normalized input h (no mask applied)."""
        b, n, _ = h.shape
        H, dh = self.cfg.n_heads, self.cfg.d_head
        q = self.q(h).view(b, n, H, dh).transpose(1, 2)
        k = self.k(h).view(b, n, H, dh).transpose(1, 2)
        return q @ k.transpose(-1, -2) / math.sqrt(dh)

    def pattern(self, h: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch head query key"]:
        """Attention weights of this block on its normalized input h."""
        return self.weights(self.scores(h))

    def weights(self, scores: Float[Tensor, "batch head query key"]) -> Float[Tensor, "batch head query key"]:
        """Causal softmax of the logits, or the ReLU mitigation relu(scores) / (i + 1)."""
        n = scores.shape[-1]
        causal = torch.ones(n, n, dtype=torch.bool, device=scores.device).tril()
        if self.cfg.attention == "softmax":
            return scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        n_keys = torch.arange(1, n + 1, device=scores.device, dtype=scores.dtype)[:, None]
        return torch.relu(scores).masked_fill(~causal, 0.0) / n_keys

    def head_values(self, h: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch head pos d_model"]:
        """v_k W_O^h for every key k and head h (the value state each key would write)."""
        b, n, _ = h.shape
        H, dh = self.cfg.n_heads, self.cfg.d_head
        v = self.v(h).view(b, n, H, dh).transpose(1, 2)  # [b, H, n, dh]
        w_o = self.o.weight.T.view(H, dh, -1)  # [H, dh, d]
        return torch.einsum("bhnd,hde->bhne", v, w_o)

    def forward(self, x: Float[Tensor, "batch pos d_model"], store: dict[str, list[Tensor]] | None = None) -> Tensor:
        h = self.ln1(x)
        scores = self.scores(h)
        pattern = self.weights(scores)
        b, n, _ = h.shape
        H, dh = self.cfg.n_heads, self.cfg.d_head
        v = self.v(h).view(b, n, H, dh).transpose(1, 2)
        z = (pattern @ v).transpose(1, 2).reshape(b, n, H * dh)
        x = x + self.o(z)
        x = x + self.fc2(torch.relu(self.fc1(self.ln2(x))))
        if store is not None:
            store["scores"].append(scores)
            store["pattern"].append(pattern)
            store["values"].append(self.head_values(h))
            store["resid_post"].append(x)
        return x


class BBModel(nn.Module):
    """The BB transformer. forward(ids) -> logits; forward(ids, store) also records internals."""

    def __init__(self, cfg: BBConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.n_ctx, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.unembed = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)

    def forward(
        self, ids: Int[Tensor, "batch pos"], store: dict[str, list[Tensor]] | None = None
    ) -> Float[Tensor, "batch pos vocab"]:
        n = ids.shape[-1]
        if n > self.cfg.n_ctx:
            raise InputError(f"Input has {n} positions but the BB model takes at most {self.cfg.n_ctx}.")
        x = self.embed(ids) + self.pos(torch.arange(n, device=ids.device))
        if store is not None:
            store["resid_pre0"].append(x)
        for block in self.blocks:
            x = block(x, store)
        return self.unembed(self.ln_f(x))

    def run_with_internals(self, ids: Int[Tensor, "batch pos"]) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and stacked internals: scores (unmasked logits) and pattern [layer, batch, head, q, k], values
        [layer, batch, head, pos, d_model] (v W_O per head), resid_post [layer, batch, pos, d_model]."""
        store: dict[str, list[Tensor]] = {"scores": [], "pattern": [], "values": [], "resid_post": [], "resid_pre0": []}
        logits = self.forward(ids, store)
        return logits, {k: torch.stack(v) for k, v in store.items()}
