"""The conformance zoo: every family of tests/conformance/families.py loaded once per session,
with plain HF eager references recorded before the bridge is booted, and the record of outcomes
from which docs/support.md is written (scripts/support_matrix.py)."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from probes import load_model
from probes.model.hooked_model import HookedModel
from tests.conformance.families import FAMILIES, PROMPT, save

OUT_PROJ = re.compile(r"\.(\d+)\.(self_attn|attn|attention|self_attention)\.(o_proj|dense|c_proj|out_proj)$")
POST_ATTN_NORM = re.compile(r"\.(\d+)\.post_attention_layernorm$")

# column -> the words a refusal must contain (besides the family)
COMMANDS = {
    "info": "glasshouse info",
    "capture": "capture",
    "sinks": "glasshouse sinks",
    "attention statistics": "attention statistics",
    "extreme": "glasshouse extreme",
    "dormant": "glasshouse dormant",
    "successor (OV)": "glasshouse successor",
    "successor (in-context DLA)": "glasshouse successor",
    "circuit": "glasshouse circuit",
}
RESULTS: dict[tuple[str, str], str] = {}  # (family, command) -> "yes" | "refused: ..."


@dataclass
class Entry:
    model: HookedModel
    ids: torch.Tensor  # [1, T] the prompt as the tokenizer makes it
    logits: torch.Tensor
    attentions: list[torch.Tensor]  # per layer [H, T, T]
    hidden: list[torch.Tensor]  # HF hidden_states: [T, d] per entry (0 = embeddings)
    z: list[torch.Tensor]  # per layer [T, H, d_head]: the input of the output projection
    w_o: list[torch.Tensor]  # per layer [H, d_head, d_model] read from the HF output projection
    attn_write: list[torch.Tensor]  # per layer [T, d_model]: what attention adds to the residual
    n_params: int
    extra: dict[str, Any] = field(default_factory=dict)


_ZOO: dict[str, Entry] = {}
_DIR = Path(tempfile.mkdtemp(prefix="glasshouse-conformance-"))


def _w_o(module: Any, n_heads: int, d_head: int) -> torch.Tensor:
    w = module.weight.detach()
    w = w if type(module).__name__ == "Conv1D" else w.T  # -> [H * d_head, d_model]
    return w.reshape(n_heads, d_head, -1).clone()


def entry(name: str) -> Entry:
    """The family's model and its HF references (built on first use, seed 0)."""
    if name in _ZOO:
        return _ZOO[name]
    fam = FAMILIES[name]
    folder = save(fam, _DIR / name)
    ref: dict[str, Any] = {}

    def record(hf: Any, tok: Any) -> None:
        ids = tok(PROMPT, return_tensors="pt").input_ids
        cfg = hf.config
        n_heads = cfg.num_attention_heads
        d_head = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
        z: dict[int, torch.Tensor] = {}
        write: dict[int, torch.Tensor] = {}
        w_o: dict[int, torch.Tensor] = {}
        handles = []
        has_post = any(POST_ATTN_NORM.search(n) for n, _ in hf.named_modules()) and "Gemma" in type(hf).__name__
        for mname, module in hf.named_modules():
            m = OUT_PROJ.search(mname)
            if m:
                layer = int(m.group(1))
                w_o[layer] = _w_o(module, n_heads, d_head)
                handles.append(module.register_forward_hook(
                    lambda mod, args, out, layer=layer: z.__setitem__(layer, args[0][0].detach().clone())))
                if not has_post:
                    handles.append(module.register_forward_hook(
                        lambda mod, args, out, layer=layer: write.__setitem__(layer, out[0].detach().clone())))
            p = POST_ATTN_NORM.search(mname)
            if p and has_post:
                post_layer = int(p.group(1))
                handles.append(module.register_forward_hook(
                    lambda mod, args, out, layer=post_layer: write.__setitem__(layer, out[0].detach().clone())))
        with torch.no_grad():
            out = hf(ids, output_attentions=True, output_hidden_states=True)
        for h in handles:
            h.remove()
        layers = sorted(w_o)
        ref.update(ids=ids, logits=out.logits[0], attentions=[a[0] for a in out.attentions],
                   hidden=[x[0] for x in out.hidden_states], z=[z[la].reshape(-1, n_heads, d_head) for la in layers],
                   w_o=[w_o[la] for la in layers], attn_write=[write[la] for la in layers],
                   n_params=sum(p.numel() for p in hf.parameters()))

    model = load_model(str(folder), device="cpu", before_wrap=record)
    _ZOO[name] = Entry(model=model, **ref)
    return _ZOO[name]


def windows_seen(e: Entry) -> list[int]:
    """Each layer's sliding window as HF's own attention shows it (0 = the first key stays visible)."""
    out = []
    for a in e.attentions:
        visible = (a > 0).any(0)  # [T, T]
        T = visible.shape[0]
        if bool(visible[T - 1, 0]):
            out.append(0)
        else:
            i, j = visible.nonzero(as_tuple=True)
            out.append(int((i - j).max()) + 1)
    return out


def visible_keys(window: int, T: int) -> torch.Tensor:
    i = torch.arange(T)
    d = i[:, None] - i[None, :]
    return (d >= 0) & (d < window) if window else d >= 0
