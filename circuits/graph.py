"""The computational graph of a transformer for circuit discovery (spec: circuits.md, "Graph").

Forward nodes (sources): the input (embeddings), every attention head, every MLP.
Backward slots (destinations): each head's q, k and v inputs, each MLP's input, the logits.
An edge u -> v exists when u's output reaches v's input through the residual stream: u is
the input, or u sits in an earlier layer, or u is a head of the same layer and v that layer's
MLP (sequential blocks). Counts: n_forward = 1 + L(H+1), n_backward = L(3H+1) + 1; for
GPT-2 small's shape (12 layers, 12 heads) there are 32,491 edges.

Index layout. Forward: input 0; head (l, h) at 1 + l(H+1) + h; MLP l at 1 + l(H+1) + H.
Backward: head slot (l, h, s) with s in q=0, k=1, v=2 at l(3H+1) + sH + h; MLP l at
l(3H+1) + 3H; logits at L(3H+1).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from jaxtyping import Bool
from torch import Tensor

from probes.errors import InputError

SLOTS = ("q", "k", "v")


@dataclass(frozen=True)
class Graph:
    """The node and edge layout for a model with n_layers blocks of n_heads heads and one MLP."""

    n_layers: int
    n_heads: int

    def __post_init__(self) -> None:
        if self.n_layers < 1 or self.n_heads < 1:
            raise InputError(f"A graph needs at least one layer and one head (got {self.n_layers}, {self.n_heads}).")

    @classmethod
    def from_model(cls, model: Any) -> Graph:
        """The graph of a loaded HookedModel (only its facts are read)."""
        return cls(int(model.facts.n_layers), int(model.facts.n_heads))

    # --- sizes -----------------------------------------------------------------------------
    @property
    def n_forward(self) -> int:
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def n_backward(self) -> int:
        return self.n_layers * (3 * self.n_heads + 1) + 1

    @property
    def n_edges(self) -> int:
        return int(self.edge_mask.sum())

    # --- indices ---------------------------------------------------------------------------
    def head(self, layer: int, head: int) -> int:
        return 1 + layer * (self.n_heads + 1) + head

    def mlp(self, layer: int) -> int:
        return 1 + layer * (self.n_heads + 1) + self.n_heads

    def layer_start(self, layer: int) -> int:
        """Forward index of the first node of `layer` (= the number of nodes before it)."""
        return 1 + layer * (self.n_heads + 1)

    def head_slot(self, layer: int, head: int, slot: int) -> int:
        return layer * (3 * self.n_heads + 1) + slot * self.n_heads + head

    def mlp_slot(self, layer: int) -> int:
        return layer * (3 * self.n_heads + 1) + 3 * self.n_heads

    @property
    def logits_slot(self) -> int:
        return self.n_layers * (3 * self.n_heads + 1)

    def slot_layer_range(self, layer: int) -> tuple[int, int]:
        """[start, end) of the backward slots of one layer's heads (q, k, v blocks)."""
        start = layer * (3 * self.n_heads + 1)
        return start, start + 3 * self.n_heads

    # --- names -----------------------------------------------------------------------------
    @cached_property
    def forward_names(self) -> list[str]:
        names = ["input"]
        for layer in range(self.n_layers):
            names += [f"a{layer}.h{h}" for h in range(self.n_heads)] + [f"m{layer}"]
        return names

    @cached_property
    def backward_names(self) -> list[str]:
        names: list[str] = []
        for layer in range(self.n_layers):
            for slot in SLOTS:
                names += [f"a{layer}.h{h}<{slot}>" for h in range(self.n_heads)]
            names.append(f"m{layer}")
        return names + ["logits"]

    @cached_property
    def backward_to_forward(self) -> list[int | None]:
        """The forward node each backward slot belongs to (None for the logits)."""
        out: list[int | None] = []
        for layer in range(self.n_layers):
            for _slot in SLOTS:
                out += [self.head(layer, h) for h in range(self.n_heads)]
            out.append(self.mlp(layer))
        return out + [None]

    # --- edges -----------------------------------------------------------------------------
    @cached_property
    def upstream_count(self) -> list[int]:
        """For each backward slot, how many forward nodes (a prefix 0..n-1) feed it."""
        counts: list[int] = []
        for layer in range(self.n_layers):
            counts += [self.layer_start(layer)] * (3 * self.n_heads)
            counts.append(self.layer_start(layer) + self.n_heads)
        return counts + [self.n_forward]

    @cached_property
    def edge_mask(self) -> Bool[Tensor, "n_forward n_backward"]:
        """True where an edge u -> v exists."""
        counts = torch.tensor(self.upstream_count)
        return torch.arange(self.n_forward)[:, None] < counts[None, :]

    def edge_name(self, u: int, v: int) -> str:
        return f"{self.forward_names[u]}->{self.backward_names[v]}"
