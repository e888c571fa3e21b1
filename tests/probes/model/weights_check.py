"""Shared check: canonical weights recompute v, z, head outputs, attention output (and q where no rotary)."""

from __future__ import annotations

import torch

from probes.model.capture import capture

ATOL = 1e-4
PROMPT = "The quick brown fox jumps over the lazy dog because it can."


def check_weights_reproduce_heads(model, layers, prompt=PROMPT, atol=ATOL):
    result = capture(model, prompt, what=["resid_pre", "pattern", "q", "v", "z", "head_out", "attn_out"], layers=layers)
    for i, layer in enumerate(layers):
        x = result["resid_pre"][0, i]  # [pos, d_model]
        normed = model.adapter.attn_in_norm(layer)(x)
        v = torch.einsum("pm,hmd->phd", normed, model.W_V[layer])
        if model.b_V is not None:
            v = v + model.b_V[layer]
        assert torch.allclose(v, result["v"][0, i], atol=atol), "W_V (kv groups expanded) must give the hooked v"
        z = torch.einsum("hqk,khd->qhd", result["pattern"][0, i], v)
        assert torch.allclose(z, result["z"][0, i], atol=atol), "pattern @ v must give the hooked z"
        head_out = torch.einsum("phd,hdm->phm", z, model.W_O[layer])
        assert torch.allclose(head_out, result["head_out"][0, i], atol=atol)
        total = head_out.sum(dim=1) + (model.b_O[layer] if model.b_O is not None else 0)
        out_norm = model.adapter.attn_out_norm(layer)
        tol = atol
        if out_norm is not None:
            # Gemma's post-attention RMSNorm divides a head sum of size ~500 (late layers) by its RMS:
            # fp32 rounding of that sum reaches ~2e-4 after the norm, so this comparison uses 1e-3.
            total = out_norm(total)
            tol = 1e-3
        assert torch.allclose(total, result["attn_out"][0, i], atol=tol, rtol=1e-4)
        if model.facts.positional == "learned":
            q = torch.einsum("pm,hmd->phd", normed, model.W_Q[layer])
            if model.b_Q is not None:
                q = q + model.b_Q[layer]
            assert torch.allclose(q, result["q"][0, i], atol=atol)
