"""The graph forward: a transformer run where every node's output is kept apart and every
input is a sum of upstream outputs, so single edges can be substituted (spec: circuits.md).

Built from the HookedModel's canonical weights (W_Q, W_K, W_V with grouped-query heads
expanded, W_O) and what the model says of its attention: the attention-input norm, the q/k
norms on each head (Qwen3), the rotary embedding (partial rotary: the first rotary_dim features),
the softmax scale and the sliding window of every layer (Mistral), `apply_mlp`, the final norm
and the unembedding. Sequential blocks whose heads add into the residual stream one by one are
supported (Llama, Mistral, Qwen2, Qwen3, SmolLM2, Phi-3, StableLM, GPT-2, OPT). Refused: models
with a post-attention norm (Gemma 2/3: it acts on the sum of the heads, so a head's
contribution is not its own), parallel attention and MLP (GPT-NeoX, Phi, Falcon: the graph's
head -> same-layer MLP edges do not exist) and attention soft-capping.

Self-check: on construction the clean graph run of a probe prompt is compared with the model's
own forward (`HookedModel.reference_logits`); beyond `SELF_CHECK_TOL` (relative to the logits'
scale) the graph forward refuses, naming the family, rather than give the circuits of another model.

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

import weakref
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuits.graph import Graph
from probes.errors import InputError
from probes.model.architecture import apply_rotary as rotary
from probes.model.architecture import rotate_half  # noqa: F401  (re-exported: the graph forward's RoPE helper)
from probes.model.hooked_model import holds_model_lock

SELF_CHECK_TOL = {torch.float32: 1e-4, torch.float64: 1e-6}  # max |diff| / max(1, max |logit|); else 2e-2
PROBE_LENGTH = 24
_CHECKED: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()  # model -> self-check error


def refusal(model: Any) -> str | None:
    """Why the graph forward cannot run this model (None when it can)."""
    f = model.facts
    name = f"{model.spec} ({f.architecture}, family {f.family})"
    if f.parallel_residual:
        return (f"Circuit discovery does not support {name}: its attention and MLP run in parallel on the same "
                "residual, so the graph's head -> same-layer MLP edges do not exist.")
    if model.attn_out_norm(0) is not None:
        return (f"Circuit discovery does not support {name}: its post-attention norm acts on the sum of the heads, "
                "so a head's contribution to the residual stream is not its own.")
    if f.attn_softcap:
        return f"Circuit discovery does not support {name}: it soft-caps its attention logits."
    return None


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


def apply_rotary(x: Tensor, rope: tuple[Tensor, Tensor]) -> Tensor:
    """HF's rotary on the first rotary_dim features of each head (all of them unless partial rotary)."""
    return rotary(x, rope[0], rope[1])


class GraphForward:
    """Runs a HookedModel as a graph of nodes and edges (see the module docstring)."""

    def __init__(self, model: Any, check: bool = True) -> None:
        reason = refusal(model)
        if reason:
            raise InputError(reason + " Use another model for `glasshouse circuit`.")
        self.model = model
        self.graph = Graph.from_model(model)
        f = model.facts
        self.L, self.H, self.d, self.dh = f.n_layers, f.n_heads, f.d_model, f.d_head
        self.family = f.family
        self.W_Q, self.W_K, self.W_V, self.W_O = model.W_Q, model.W_K, model.W_V, model.W_O
        self.b_Q, self.b_K, self.b_V, self.b_O = model.b_Q, model.b_K, model.b_V, model.b_O
        self.scales = [model.attn_scale(layer) for layer in range(self.L)]
        self.scale = self.scales[0]
        if check:
            self.self_check()

    def self_check(self) -> float:
        """Compare the clean graph run of a probe prompt with the model's own logits; refuse beyond tolerance."""
        key = self.model
        if key not in _CHECKED:
            f = self.model.facts
            n = min(PROBE_LENGTH, f.n_ctx)
            ids = (torch.arange(n) * 7919 + 11)[None] % f.d_vocab
            with torch.no_grad():
                ref = self.model.reference_logits(ids).float()
                out = self.run(self.embed(ids)).logits.float()
            _CHECKED[key] = float((out - ref).abs().max()) / max(1.0, float(ref.abs().max()))
        err, tol = _CHECKED[key], SELF_CHECK_TOL.get(self.model.dtype, 2e-2)
        if not err <= tol:
            f = self.model.facts
            raise InputError(
                f"Circuit discovery's graph forward does not reproduce {self.model.spec} ({f.architecture}, family "
                f"{f.family}): on a probe prompt its logits differ from the model's by {err:.3g} (relative; tolerance "
                f"{tol:g}). This family is not supported by `glasshouse circuit`."
            )
        return err

    # --- pieces ------------------------------------------------------------------------------
    @holds_model_lock
    def embed(self, ids: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        """The input node's output: token embeddings (plus learned positions for GPT-2)."""
        x = self.model.embed_tokens(ids)
        pos = self.model.position_embeddings(ids.shape[1])
        return x if pos is None else x + pos.to(x.dtype)[None]

    def _norm(self, module: Any, x: Tensor) -> Tensor:
        shape = x.shape
        return module(x.reshape(shape[0], -1, shape[-1])).reshape(shape)

    def _rotary(self, batch: int, pos: int, like: Tensor) -> tuple[Tensor, Tensor] | None:
        """cos, sin [1, pos, 1, rotary_dim] (None for learned positions)."""
        cs = self.model.rotary_cos_sin(pos, like)
        if cs is None:
            return None
        return cs[0].to(like.dtype)[None, :, None, :], cs[1].to(like.dtype)[None, :, None, :]

    def project(self, layer: int, normed: Tensor, which: str) -> Tensor:
        """normed [..., H, d_model] -> [..., H, d_head] through W_Q/W_K/W_V (and bias; q/k norms where the
        model has them)."""
        w = {"q": self.W_Q, "k": self.W_K, "v": self.W_V}[which][layer]
        b = {"q": self.b_Q, "k": self.b_K, "v": self.b_V}[which]
        out = torch.einsum("...hm,hme->...he", normed, w)
        out = out + b[layer] if b is not None else out
        return self.head_norm(layer, out, which)

    def head_norm(self, layer: int, x: Tensor, which: str) -> Tensor:
        """The model's norm on each query or key head (x [..., H, d_head]); identity without one."""
        return self.model.apply_qk_norm(layer, x, which)

    def masked(self, layer: int, scores: Tensor) -> Tensor:
        """Scores [..., q, k] with keys outside the causal (and sliding) window at -inf."""
        n = scores.shape[-1]
        hidden = ~self.model.key_visible(layer, n).to(scores.device)
        return scores.masked_fill(hidden, float("-inf"))

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, rope: tuple[Tensor, Tensor] | None, layer: int = 0
    ) -> tuple[Tensor, Tensor]:
        """q, k, v [b, p, H, dh] -> (z [b, p, H, dh], pattern [b, H, p, p]), causal (and windowed)."""
        if rope is not None:
            q, k = apply_rotary(q, rope), apply_rotary(k, rope)
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) * self.scales[layer]
        pattern = self.masked(layer, scores).softmax(-1)
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
        norm = self.model.attn_in_norm(layer)
        q = self.project(layer, self._norm(norm, xq), "q")
        k = self.project(layer, self._norm(norm, xk), "k")
        v = self.project(layer, self._norm(norm, xv), "v")
        z, pattern = self.attend(q, k, v, rope, layer)
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
        norm = self.model.attn_in_norm(layer)
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
        return self.attend(q, k, v, rope, layer)[0]

