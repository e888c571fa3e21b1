"""Feature dashboards as data (docs/methods/saes.md, "Feature dashboards"; docs/saes.md).

`feature_dashboards(model, sae, ids, features)` returns a JSON-ready dict the app reads, per feature:
- "top_examples": the `n_top` token positions with the largest activation, each with its context
  window (`context` tokens before, 3 after) as token strings and the activation on every token;
- "quantile_examples": for `n_quantiles` equal-width bands of (0, max], `per_quantile` random
  positions (seeded) from each band, same form;
- "histogram": counts of the positive activations in `bins` equal-width bins, and "density"
  (fraction of tokens with f > 0);
- "logit_effects": W_dec[j] scaled by the final norm's weights, through W_U: the `n_logits` tokens it
  promotes most ("top") and suppresses most ("bottom"), with values; the final norm's division by
  the residual's RMS is left out (a positive factor per position), as sae_vis does;
- "neighbours": the `n_neighbours` features with the largest cosine between decoder rows.
`prompt_features(model, sae, prompt)` gives, per token, the `top` most active features.
The figures and the HTML page of a feature are drawn from this data in app/figures/saes.py
(`feature_html(entry)` renders one feature as a self-contained page).
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from probes.errors import InputError
from saes.activation_store import hook_activations
from saes.base import SAE


def feature_activations(model: Any, sae: SAE, ids: Int[Tensor, "batch pos"], batch_prompts: int = 8) -> Float[Tensor, "batch pos d_sae"]:
    """The SAE's features at every position (position 0 zeroed when the SAE skipped it in training)."""
    sae.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, ids.shape[0], batch_prompts):
            acts = hook_activations(model, sae.cfg.hook_name, ids[i : i + batch_prompts])
            f = sae.encode(acts.reshape(-1, acts.shape[-1])).reshape(*acts.shape[:2], -1)
            if sae.cfg.skip_first_position:
                f[:, 0] = 0
            outs.append(f)
    return torch.cat(outs)


def _example(str_tokens: list[list[str]], acts: Tensor, b: int, p: int, context: int) -> dict[str, Any]:
    lo, hi = max(0, p - context), min(acts.shape[1], p + 4)
    return {"prompt": b, "position": p, "activation": float(acts[b, p]), "tokens": str_tokens[b][lo:hi],
            "activations": [float(v) for v in acts[b, lo:hi]], "focus": p - lo}


def feature_dashboards(
    model: Any, sae: SAE, ids: Int[Tensor, "batch pos"], features: list[int], n_top: int = 8, n_quantiles: int = 4,
    per_quantile: int = 2, context: int = 8, bins: int = 30, n_logits: int = 10, n_neighbours: int = 5, seed: int = 0,
) -> dict[str, Any]:
    """Dashboard data for `features` over the windows `ids` (module docstring)."""
    bad = [j for j in features if not 0 <= j < sae.cfg.d_sae]
    if bad:
        raise InputError(f"Feature {bad[0]} is out of range: the SAE has features 0..{sae.cfg.d_sae - 1}.")
    acts = feature_activations(model, sae, ids)
    str_tokens = model.tokens_from_ids(ids).str_tokens
    gen = torch.Generator().manual_seed(seed)
    logit_weights = _logit_effects(model, sae)
    w = sae.W_dec.detach() / sae.W_dec.detach().norm(dim=1, keepdim=True).clamp_min(1e-8)
    out: dict[str, Any] = {"kind": "sae_dashboard", "hook_name": sae.cfg.hook_name,
                           "architecture": sae.cfg.architecture, "d_sae": sae.cfg.d_sae,
                           "n_tokens": int(acts.shape[0] * acts.shape[1]), "features": {}}
    for j in features:
        a = acts[..., j]
        flat = a.flatten()
        order = flat.argsort(descending=True)[:n_top]
        top = [_example(str_tokens, a, int(i) // a.shape[1], int(i) % a.shape[1], context) for i in order if flat[i] > 0]
        positive = flat[flat > 0]
        vmax = float(positive.max()) if positive.numel() else 0.0
        quantiles = []
        for q in range(n_quantiles):
            lo, hi = vmax * q / n_quantiles, vmax * (q + 1) / n_quantiles
            idx = ((flat > lo) & (flat <= hi)).nonzero().flatten()
            pick = idx[torch.randperm(idx.numel(), generator=gen)[:per_quantile]]
            quantiles.append({"range": [lo, hi], "count": int(idx.numel()), "examples": [
                _example(str_tokens, a, int(i) // a.shape[1], int(i) % a.shape[1], context) for i in pick]})
        counts = torch.histc(positive, bins=bins, min=0, max=vmax) if positive.numel() else torch.zeros(bins)
        effect = logit_weights[j]
        top_ids, bottom_ids = effect.topk(n_logits).indices, (-effect).topk(n_logits).indices
        cos = w @ w[j]
        cos[j] = -2
        near = cos.topk(min(n_neighbours, sae.cfg.d_sae - 1))
        out["features"][str(j)] = {
            "feature": j, "density": float((flat > 0).float().mean()), "max_activation": vmax,
            "top_examples": top, "quantile_examples": quantiles,
            "histogram": {"counts": counts.tolist(), "edges": torch.linspace(0, vmax, bins + 1).tolist()},
            "logit_effects": {
                "top": [{"token": model.to_string([int(t)]), "id": int(t), "value": float(effect[t])} for t in top_ids],
                "bottom": [{"token": model.to_string([int(t)]), "id": int(t), "value": float(effect[t])} for t in bottom_ids],
            },
            "neighbours": [{"feature": int(i), "cosine": float(c)} for c, i in zip(near.values, near.indices, strict=True)],
        }
    return out


def _logit_effects(model: Any, sae: SAE) -> Float[Tensor, "d_sae d_vocab"]:
    """W_dec (raw units) * final-norm weights @ W_U."""
    w_dec = sae.W_dec.detach() / sae.cfg.norm_scale
    scale = model.norm_scales()["ln_final"].to(w_dec)
    return (w_dec * scale) @ model.W_U.to(w_dec)


def prompt_features(model: Any, sae: SAE, prompt: str, top: int = 5) -> dict[str, Any]:
    """The `top` most active features at each token of one prompt."""
    tokens = model.to_tokens(prompt)
    acts = feature_activations(model, sae, tokens.ids)[0]
    vals, idx = acts.topk(min(top, sae.cfg.d_sae), dim=-1)
    return {"kind": "sae_prompt", "prompt": prompt, "hook_name": sae.cfg.hook_name, "tokens": [
        {"token": t, "position": p, "features": [{"feature": int(i), "activation": float(v)}
                                                  for v, i in zip(vals[p], idx[p], strict=True) if v > 0]}
        for p, t in enumerate(tokens.str_tokens[0])]}
