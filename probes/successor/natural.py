"""Where on natural text a head's direct effect on the logits is largest (spec: "Natural text").

For every position of corpus windows (probes.corpus), the head's write (Gemma: through its
post-attention norm, frozen scale) goes through the final norm with the clean run's frozen scale
and W_U, centred over the vocabulary (minus the mean over all tokens). The position's effect is
the largest centred logit the head adds; examples are the top positions with their context,
the token there, the actual next token, and the tokens the head promotes most.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from probes.corpus import sample
from probes.model.hooked_model import HookedModel
from probes.progress import NullReporter, Reporter
from probes.results import result_metadata
from probes.successor.in_context import final_norm_linear, head_writes


@dataclass
class NaturalExamples:
    metadata: dict[str, Any]
    layer: int
    head: int
    examples: list[dict[str, Any]]
    mean_effect: float

    def to_dict(self) -> dict[str, Any]:
        return {"metadata": self.metadata, "layer": self.layer, "head": self.head, "examples": self.examples,
                "mean_max_effect": self.mean_effect}


def natural_text_effects(
    model: HookedModel, layer: int, head: int, domain: str = "prose", n: int = 8, length: int = 96,
    top: int = 12, seed: int = 0, context: int = 12, reporter: Reporter | None = None,
) -> NaturalExamples:
    """The `top` positions of n corpus windows where head (layer, head) adds the most to one token's logit.
    reporter (probes.progress): one step per window, a cancel checked before each."""
    rep = reporter or NullReporter()
    layer, head = model.check_layer(layer), model.check_head(head)
    prefix = [int(model.tokenizer.bos_token_id)] if model.facts.prepends_bos else []
    corpus = sample(domain, n, length, model, seed=seed, prefix_ids=prefix)
    f = model.facts
    names = {f"blocks.{layer}.attn.hook_z", f"blocks.{f.n_layers - 1}.hook_resid_post"}
    w_u = model.W_U.float().cpu()
    found: list[tuple[float, int, int, list[int], list[float]]] = []
    maxima = []
    for row in range(n):
        rep.check()
        ids = corpus.ids[row : row + 1]
        with torch.no_grad():
            _, cache = model.run_with_cache(ids, names_filter=lambda name: name in names)
        z = cache[f"blocks.{layer}.attn.hook_z"][0].float().cpu()
        z = z.reshape(z.shape[0], 1, f.n_heads, f.d_head)  # positions as a batch, one layer
        writes = head_writes(model, z, [layer])[:, 0, head]  # [pos, d]
        final = final_norm_linear(model, cache[f"blocks.{f.n_layers - 1}.hook_resid_post"][0].float().cpu())
        logits = final(writes) @ w_u
        logits = logits - logits.mean(dim=-1, keepdim=True)
        best = logits.max(dim=-1).values
        maxima.append(best)
        for pos in range(len(prefix), ids.shape[1] - 1):
            top_vals, top_toks = logits[pos].topk(5)
            found.append((float(best[pos]), row, pos, [int(t) for t in top_toks], [float(v) for v in top_vals]))
        del cache
        rep.update(f"natural text: window {row + 1} of {n}", row + 1, n)
    found.sort(key=lambda r: -r[0])
    examples = []
    for value, row, pos, toks, vals in found[:top]:
        row_ids: list[int] = [int(t) for t in corpus.ids[row]]
        examples.append({
            "effect": value, "row": row, "position": pos, "source": corpus.sources[row],
            "context": model.to_string(row_ids[max(len(prefix), pos - context) : pos]),
            "token": model.to_str_tokens([row_ids[pos]])[0], "next_token": model.to_str_tokens([row_ids[pos + 1]])[0],
            "promoted": [{"token": model.to_str_tokens([t])[0], "logit": v} for t, v in zip(toks, vals, strict=True)],
        })
    settings = {"domain": domain, "n": n, "length": length, "layer": layer, "head": head}
    return NaturalExamples(result_metadata(model, settings, seed), layer, head, examples,
                           float(torch.cat(maxima).mean()))
