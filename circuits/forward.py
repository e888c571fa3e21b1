"""The graph forward: a transformer run where every node's output is kept apart and every
input is a sum of upstream outputs, so single edges can be substituted (spec: circuits.md).

Built from the HookedModel's canonical weights (W_Q, W_K, W_V with grouped-query heads
expanded, W_O) and its HF sub-modules (attention-input norms, `apply_mlp`, final norm,
unembedding, the HF rotary module). Supported families: llama (Llama, Mistral, Qwen2,
SmolLM2) and gpt2. Gemma is refused: its post-attention norm acts on the sum of the heads,
so a head's contribution to the residual stream is not its own.

Constant terms (the attention output bias b_O) are the same on every run and are added to
every later input outside any edge. Right padding is safe: attention is causal, so padded
positions never feed real ones; the logits are read at each example's last real position.

Patched runs (`Patch`): the input of slot v at a position in span s is
    sum_u corrupted_u + keep[s, u, v] * (current_u - corrupted_u),
where current_u is u's output in this run. A head's key and value inputs may instead use a
per-(source span, destination span) mask `kv`: queries in span d read keys/values at
positions of span s built with kv[s, d]. keep = 1 everywhere gives the clean run,
keep = 0 everywhere the corrupted one (by construction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuits.graph import Graph
from probes.errors import InputError
from probes.hooked_model import holds_model_lock

SUPPORTED = ("llama", "gpt2")


@dataclass
class Patch:
    """What a patched run substitutes outside the kept edges.

    corrupted: per-node outputs used outside the circuit [batch, pos, n_forward, d_model].
    keep: [n_spans, n_forward, n_backward] (1 keeps the edge at positions of that span).
    kv: optional [n_spans_src, n_spans_dst, n_forward, 2, n_layers, n_heads] for key (0) and
        value (1) inputs; without it keys and values use `keep` at the key's own span.
    span_ids: [batch, pos] the span of every position (padding: any valid span).
    """

    corrupted: Float[Tensor, "batch pos n_forward d_model"]
    keep: Float[Tensor, "n_spans n_forward n_backward"]
    span_ids: Int[Tensor, "batch pos"]
    kv: Tensor | None = None


@dataclass
class GraphRun:
    """Logits (at `last` positions, or all positions) and every node's output."""

    logits: Tensor
    acts: Float[Tensor, "batch pos n_forward d_model"]
    slot_inputs: list[Tensor]  # per layer: [batch, pos, 3H, d_model] (grad runs only)
    mlp_inputs: list[Tensor]
    head_outputs: list[Tensor]  # per layer: [batch, pos, H, d_model]
    logits_input: Tensor | None


def rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class GraphForward:
    """Runs a HookedModel as a graph of nodes and edges (see the module docstring)."""

    def __init__(self, model: Any) -> None:
        family = model.facts.family
        if family not in SUPPORTED:
            raise InputError(
                f"Circuit discovery supports the {', '.join(SUPPORTED)} families; {model.spec} is {family}. "
                "Its head outputs do not add into the residual stream one by one (or its blocks run in parallel)."
            )
        self.model = model
        self.graph = Graph.from_model(model)
        f = model.facts
        self.L, self.H, self.d, self.dh = f.n_layers, f.n_heads, f.d_model, f.d_head
        self.family = family
        self.W_Q, self.W_K, self.W_V, self.W_O = model.W_Q, model.W_K, model.W_V, model.W_O
        self.b_Q, self.b_K, self.b_V, self.b_O = model.b_Q, model.b_K, model.b_V, model.b_O
        self.scale = self.dh**-0.5

    # --- pieces ------------------------------------------------------------------------------
    @holds_model_lock
    def embed(self, ids: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        """The input node's output: token embeddings (plus learned positions for GPT-2)."""
        x = self.model.embed_tokens(ids)
        pos_embed = self.model.adapter.pos_embed()
        if pos_embed is not None:
            x = x + pos_embed(torch.arange(ids.shape[1], device=x.device))[None]
        return x

    def _norm(self, module: Any, x: Tensor) -> Tensor:
        shape = x.shape
        return module(x.reshape(shape[0], -1, shape[-1])).reshape(shape)

    def _rotary(self, batch: int, pos: int, like: Tensor) -> tuple[Tensor, Tensor] | None:
        if self.family != "llama":
            return None
        rot = self.model.hf_model.model.rotary_emb
        ids = torch.arange(pos, device=like.device)[None].expand(batch, pos)
        cos, sin = rot(like, ids)
        return cos[:, :, None, :], sin[:, :, None, :]

    def project(self, layer: int, normed: Tensor, which: str) -> Tensor:
        """normed [..., H, d_model] -> [..., H, d_head] through W_Q/W_K/W_V (and bias)."""
        w = {"q": self.W_Q, "k": self.W_K, "v": self.W_V}[which][layer]
        b = {"q": self.b_Q, "k": self.b_K, "v": self.b_V}[which]
        out = torch.einsum("...hm,hme->...he", normed, w)
        return out + b[layer] if b is not None else out

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, rope: tuple[Tensor, Tensor] | None
    ) -> tuple[Tensor, Tensor]:
        """q, k, v [b, p, H, dh] -> (z [b, p, H, dh], pattern [b, H, p, p]), causal."""
        if rope is not None:
            cos, sin = rope
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) * self.scale
        n = scores.shape[-1]
        causal = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)
        pattern = scores.masked_fill(causal, float("-inf")).softmax(-1)
        return torch.einsum("bhqk,bkhe->bqhe", pattern, v), pattern

    def head_out(self, layer: int, z: Tensor) -> Tensor:
        return torch.einsum("bphe,hem->bphm", z, self.W_O[layer])

    def readout(self, x: Tensor) -> Tensor:
        return self.model.unembed(self.model.apply_final_norm(x))

    # --- the run -------------------------------------------------------------------------------
    @holds_model_lock
    def run(
        self,
        input_acts: Float[Tensor, "batch pos d_model"],
        last: Int[Tensor, " batch"] | None = None,
        patch: Patch | None = None,
        grad: bool = False,
    ) -> GraphRun:
        """Run from the input node's output. last=None returns logits at all positions.

        grad=True keeps every slot input as its own autograd tensor (for EAP); patch substitutes
        edges (see the module docstring) and is run without gradients.
        """
        g = self.graph
        b, p, _ = input_acts.shape
        with torch.set_grad_enabled(grad):
            acts = input_acts.new_zeros(b, p, g.n_forward, self.d)
            acts[:, :, 0] = input_acts.detach()
            rope = self._rotary(b, p, input_acts)
            const = input_acts.new_zeros(self.d)
            resid = input_acts + 0.0
            slot_inputs, mlp_inputs, head_outputs = [], [], []
            for layer in range(self.L):
                n = g.layer_start(layer)
                if patch is None:
                    x = (resid + const)[:, :, None, :].repeat(1, 1, 3 * self.H, 1)
                    slot_inputs.append(x)
                    xq, xk, xv = x[:, :, : self.H], x[:, :, self.H : 2 * self.H], x[:, :, 2 * self.H :]
                    out, _ = self._heads(layer, xq, xk, xv, rope)
                else:
                    out = self._patched_heads(layer, acts, n, patch, const, rope)
                head_outputs.append(out)
                resid = resid + out.sum(2)
                acts[:, :, n : n + self.H] = out.detach()
                if self.b_O is not None:
                    const = const + self.b_O[layer]
                m = g.mlp(layer)
                if patch is None:
                    xm = resid + const
                    mlp_inputs.append(xm)
                else:
                    xm = self._patched_input(acts, m, g.mlp_slot(layer), patch, const)
                mout = self.model.apply_mlp(layer, xm)
                resid = resid + mout
                acts[:, :, m] = mout.detach()
            if patch is None:
                xf = resid + const
            else:
                xf = self._patched_input(acts, g.n_forward, g.logits_slot, patch, const)
            logits_input = xf
            if last is not None:
                xf = xf[torch.arange(b), last.to(xf.device)]
            logits = self.readout(xf)
        return GraphRun(logits, acts, slot_inputs, mlp_inputs, head_outputs, logits_input)

    def _heads(
        self, layer: int, xq: Tensor, xk: Tensor, xv: Tensor, rope: tuple[Tensor, Tensor] | None
    ) -> tuple[Tensor, Tensor]:
        norm = self.model.adapter.attn_in_norm(layer)
        q = self.project(layer, self._norm(norm, xq), "q")
        k = self.project(layer, self._norm(norm, xk), "k")
        v = self.project(layer, self._norm(norm, xv), "v")
        z, pattern = self.attend(q, k, v, rope)
        return self.head_out(layer, z), pattern

    # --- patched inputs ------------------------------------------------------------------------
    def _patched_input(self, acts: Tensor, n: int, slot: int, patch: Patch, const: Tensor) -> Tensor:
        """Input of one backward slot fed by forward nodes 0..n-1."""
        keep = patch.keep[:, :n, slot]  # [S, n]
        base = patch.corrupted[:, :, :n].sum(2) + const
        active = keep.any(0).nonzero()[:, 0]
        if active.numel() == 0:
            return base
        k = keep[:, active][patch.span_ids]  # [b, p, a]
        diff = acts[:, :, active] - patch.corrupted[:, :, active]
        return base + torch.einsum("bpad,bpa->bpd", diff, k.to(diff.dtype))

    def _patched_slots(self, acts: Tensor, n: int, keep: Tensor, patch: Patch, const: Tensor) -> Tensor:
        """Inputs of several slots: keep [S, n, k] -> [b, p, k, d_model]."""
        base = (patch.corrupted[:, :, :n].sum(2) + const)[:, :, None, :]
        active = keep.any(0).any(-1).nonzero()[:, 0]
        if active.numel() == 0:
            return base.expand(-1, -1, keep.shape[-1], -1)
        k = keep[:, active][patch.span_ids].to(acts.dtype)  # [b, p, a, k]
        diff = acts[:, :, active] - patch.corrupted[:, :, active]
        return base + torch.einsum("bpad,bpak->bpkd", diff, k)

    def _patched_heads(
        self, layer: int, acts: Tensor, n: int, patch: Patch, const: Tensor, rope: tuple[Tensor, Tensor] | None
    ) -> Tensor:
        g, H = self.graph, self.H
        s0, _ = g.slot_layer_range(layer)
        keep = patch.keep[:, :n, s0 : s0 + 3 * H]
        if patch.kv is None:
            x = self._patched_slots(acts, n, keep, patch, const)
            return self._heads(layer, x[:, :, :H], x[:, :, H : 2 * H], x[:, :, 2 * H :], rope)[0]
        xq = self._patched_slots(acts, n, keep[..., :H], patch, const)
        norm = self.model.adapter.attn_in_norm(layer)
        q = self.project(layer, self._norm(norm, xq), "q")
        b, p = xq.shape[:2]
        z = q.new_zeros(b, p, H, self.dh)
        kv_layer = patch.kv[:, :, :n, :, layer, :]  # [S_src, S_dst, n, 2, H]
        dsts = [d for d in range(kv_layer.shape[1]) if bool((patch.span_ids == d).any())]
        empty = [d for d in dsts if not bool(kv_layer[:, d].any())]
        if empty:  # no kept key/value edge: every key and value is the corrupted one (shared)
            z = self._kv_attend(layer, acts, n, kv_layer[:, empty[0]], patch, const, q, rope, norm)
        for dst in dsts:
            if dst in empty:
                continue
            rows = patch.span_ids == dst  # query positions in span dst
            zd = self._kv_attend(layer, acts, n, kv_layer[:, dst], patch, const, q, rope, norm)
            z = torch.where(rows[:, :, None, None], zd, z)
        return self.head_out(layer, z)

    def _kv_attend(self, layer: int, acts: Tensor, n: int, kv: Tensor, patch: Patch, const: Tensor, q: Tensor,
                   rope: tuple[Tensor, Tensor] | None, norm: Any) -> Tensor:
        """Head outputs z with keys/values built from kv [S_src, n, 2, H]."""
        xk = self._patched_slots(acts, n, kv[:, :, 0], patch, const)
        xv = self._patched_slots(acts, n, kv[:, :, 1], patch, const)
        k = self.project(layer, self._norm(norm, xk), "k")
        v = self.project(layer, self._norm(norm, xv), "v")
        return self.attend(q, k, v, rope)[0]

