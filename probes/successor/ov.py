"""The effective OV circuit of every head, batched (spec: successor-heads.md, "Successor score of a head").

    logits(t) = W_U . W_OV^{l,h} . MLP0(W_E[t])        (rows: source token t, columns: output tokens)

Settings (`OVSettings`), each one switch recorded in every result:
- norm: which normalizations are applied.
  "none": none at all, the paper's choice for GPT-2 (TransformerLens fold_ln=False): MLP0 is applied
          to the raw embedding, W_OV and W_U to its output as they are.
  "mlp":  only MLP0's own input norm (what a first quick check on the embedded model used).
  "all":  every norm the forward pass puts on this path: MLP0's input norm, the head's attention
          input norm (ln1 of its layer), Gemma's post-attention norm on the head's output alone,
          and the final norm before W_U. This is what the model computes for the head's output on a
          one-token context whose residual is x (tests check it against a forward pass).
  "auto" (default): "none" for LayerNorm models (the paper's setting), "all" for RMSNorm models.
  Gemma's post-MLP norm and its sqrt(d_model) embedding scale are always applied: they are part of
  MLP0 and of the embedding, not optional normalizations.
- source: "mlp0" (the paper: MLP0 on the token embedding, no position, no layer-0 attention) or
  "resid": the residual stream entering the head's own layer at the token's position in a
  two-token context [BOS (or EOS), t] from a real forward pass. "resid" is the second look for deep,
  narrow models whose first MLP has not finished building the token's representation.
- include_embedding: add W_E[t] to MLP0's output (the residual after MLP0 when layer-0 attention is
  ignored). Off by default (the paper uses MLP0(W_E[t]) alone).
Biases (b_V, b_O) are left out: W_OV is the paper's object, and b_O is shared by all heads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from probes.errors import InputError
from probes.model.hooked_model import HookedModel, holds_model_lock

NORMS = ("auto", "none", "mlp", "all")
SOURCES = ("mlp0", "resid")


@dataclass(frozen=True)
class OVSettings:
    norm: str = "auto"
    source: str = "mlp0"
    include_embedding: bool = False

    def resolved(self, model: HookedModel) -> OVSettings:
        """Check the settings and replace norm="auto" by the model's choice."""
        if self.norm not in NORMS:
            raise InputError(f"norm must be one of {NORMS}, not {self.norm!r}.")
        if self.source not in SOURCES:
            raise InputError(f"source must be one of {SOURCES}, not {self.source!r}.")
        if self.norm != "auto":
            return self
        norm = "none" if model.facts.normalization == "layernorm" else "all"
        return OVSettings(norm, self.source, self.include_embedding)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_SETTINGS = OVSettings()


def mlp0_of_tokens(
    model: HookedModel, token_ids: Tensor | list[int], settings: OVSettings = DEFAULT_SETTINGS
) -> Float[Tensor, "n d_model"]:
    """MLP0(W_E[t]) for each token (with MLP0's input norm unless norm == "none"), W_E[t] added if asked."""
    s = settings.resolved(model)
    ids = torch.as_tensor(token_ids, dtype=torch.long)
    with torch.no_grad():
        emb = model.embed_tokens(ids).float()
        out = model.apply_mlp(0, emb.to(model.dtype), with_input_norm=s.norm != "none").float()
    return out + emb if s.include_embedding else out


def residual_of_tokens(model: HookedModel, token_ids: Tensor | list[int]) -> Float[Tensor, "layer n d_model"]:
    """The residual entering every layer at token t's position in the context [BOS or EOS, t]."""
    tok = model.tokenizer
    prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    if prefix is None:
        raise InputError("source='resid' needs a BOS or EOS token to put before each token; this tokenizer has neither.")
    ids = torch.as_tensor(token_ids, dtype=torch.long)
    rows = torch.stack([torch.full_like(ids, int(prefix)), ids], dim=1)
    names = {f"blocks.{layer}.hook_resid_pre" for layer in range(model.facts.n_layers)}
    with torch.no_grad():
        _, cache = model.run_with_cache(rows, names_filter=lambda name: name in names)
    return torch.stack([cache[f"blocks.{layer}.hook_resid_pre"][:, 1].float().cpu()
                        for layer in range(model.facts.n_layers)])


def source_vectors(
    model: HookedModel, token_ids: Tensor | list[int], settings: OVSettings
) -> Float[Tensor, "layer n d_model"]:
    """What each head reads for each token: MLP0(W_E[t]) for every layer, or the layer's own residual."""
    s = settings.resolved(model)
    if s.source == "resid":
        return residual_of_tokens(model, token_ids)
    x = mlp0_of_tokens(model, token_ids, s)
    return x[None].expand(model.facts.n_layers, *x.shape)


@holds_model_lock
def head_outputs(
    model: HookedModel, x: Float[Tensor, "layer n d_model"], settings: OVSettings,
    layers: list[int] | None = None,
) -> Float[Tensor, "layer head n d_model"]:
    """Each head's output x . W_V . W_O (after ln1 and Gemma's post-attention norm when norm == "all")."""
    s = settings.resolved(model)
    layer_ids = list(range(model.facts.n_layers)) if layers is None else [model.check_layer(la) for la in layers]
    outs = []
    with torch.no_grad():
        for i, layer in enumerate(layer_ids):
            xl = x[i] if x.shape[0] == len(layer_ids) else x[layer]
            if s.norm == "all":
                xl = model.attn_in_norm(layer)(xl.to(model.dtype).to(model.device))
            w_v = model.W_V[layer].float().to(xl.device)  # [head, d_model, d_head]
            w_o = model.W_O[layer].float().to(xl.device)  # [head, d_head, d_model]
            out = torch.einsum("nd,hde,hem->hnm", xl.float(), w_v, w_o)
            post = model.attn_out_norm(layer)
            if s.norm == "all" and post is not None:
                out = post(out.to(model.dtype)).float()
            outs.append(out.cpu())
    return torch.stack(outs)


def ov_logits(
    model: HookedModel, token_ids: Tensor | list[int], out_ids: Tensor | list[int],
    settings: OVSettings = DEFAULT_SETTINGS, layers: list[int] | None = None,
) -> Float[Tensor, "layer head n_src n_out"]:
    """Effective OV logits of every head: rows are source tokens, columns the output tokens `out_ids`."""
    s = settings.resolved(model)
    x = source_vectors(model, token_ids, s)
    if layers is not None:
        x = x[[model.check_layer(la) for la in layers]]
    out = head_outputs(model, x, s, layers)
    w_u = model.W_U[:, torch.as_tensor(out_ids, dtype=torch.long)].float().cpu()
    with torch.no_grad():
        if s.norm == "all":
            out = model.apply_final_norm(out.to(model.dtype).to(model.device)).float().cpu()
    return out @ w_u


def ov_logits_of_vectors(
    model: HookedModel, x: Float[Tensor, "n d_model"], layer: int, head: int, out_ids: Tensor | list[int],
    settings: OVSettings = DEFAULT_SETTINGS,
) -> Float[Tensor, "n n_out"]:
    """One head's effective OV logits for arbitrary source vectors (used by the mod-10 vector arithmetic)."""
    s = settings.resolved(model)
    layer, head = model.check_layer(layer), model.check_head(head)
    out = head_outputs(model, x[None].float(), s, [layer])[0, head]
    w_u = model.W_U[:, torch.as_tensor(out_ids, dtype=torch.long)].float().cpu()
    with torch.no_grad():
        if s.norm == "all":
            out = model.apply_final_norm(out.to(model.dtype).to(model.device)).float().cpu()
    return out @ w_u
