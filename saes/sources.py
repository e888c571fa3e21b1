"""One entry point for an SAE from anywhere: `load_sae(source)` (docs/saes.md, "Loading released SAEs";
docs/methods/saes.md, "Interoperability").

A source is
- a folder of ours or of SAELens (cfg.json + sae_weights.safetensors; saes.saelens_io reads it),
- a Gemma Scope folder or file in its native layout: `params.npz` (or `params.safetensors`) holding W_enc
  [d_in, d_sae], W_dec [d_sae, d_in], b_enc [d_sae], b_dec [d_in] and threshold [d_sae] of a JumpReLU SAE
  whose encoder reads x itself (z = x W_enc + b_enc, no b_dec subtracted: folded into b_enc on reading),
- or `hf://OWNER/REPO/PATH[@REVISION]`: PATH of a hub repo, fetched with huggingface_hub (into its cache;
  offline, a repo already in the cache is read from there) and then read as one of the two above.

The hook a Gemma Scope SAE reads is not in its files: it is read from the path (`layer_<L>` gives the
layer; a repo or folder named `...-res`, `...-mlp` or `...-att` gives the site: blocks.L.hook_resid_post,
blocks.L.hook_mlp_out; attention-output SAEs, which read the heads' concatenated z, are refused for now), or
given as `hook=` (`--hook`). Gemma Scope 2's repos (Gemma 3) are read the same way: a path with `layer_<L>`,
a site in the repo's or a folder's name, or `hook=`; the layout assumed is the first release's, and a file
set it does not match is refused with the names it holds.

With a model, the SAE is checked before use: its hook exists and has width d_in
(saes.saelens_io.check_sae_matches_model), and an SAE trained elsewhere (SAELens, Gemma Scope, the hub)
reconstructs the model's activations there on a few prompts better than their mean does (FVU < MAX_FVU); an
SAE of another model or hook fails that with the number, rather than giving nonsense later. Our own folders
record their model and hook exactly and skip it, as does `check=False`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from probes.errors import CheckpointError, InputError, cause

HF_PREFIX = "hf://"
NATIVE_FILES = ("params.npz", "params.safetensors")
NATIVE_TENSORS = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")
SITES = {"res": "hook_resid_post", "resid": "hook_resid_post", "resid_post": "hook_resid_post",
         "mlp": "hook_mlp_out", "mlp_out": "hook_mlp_out"}
REFUSED_SITES = {"att": "attention-output SAEs read the heads' concatenated z (blocks.L.attn.hook_z, "
                        "n_heads x d_head wide), which Glasshouse's activation store does not flatten yet",
                 "transcoders": "transcoders map one hook to another; Glasshouse loads SAEs only so far"}
CHECK_PROMPTS = ("The quick brown fox jumps over the lazy dog. It was a bright cold day in April.",
                 "def add(a, b):\n    return a + b\n\nprint(add(2, 3))")
MAX_FVU = 1.0  # fraction of variance unexplained: 1.0 is what the activations' mean reconstructs


def load_sae(source: str | os.PathLike[str], model: Any = None, hook: str | None = None, check: bool = True) -> Any:
    """The SAE at `source` (module docstring), checked against `model` when one is given (spec: saes.md)."""
    path = resolve(source)
    native = native_file(path)
    ours = False
    if native is not None:
        sae = load_native(native, hook or hook_from_path(str(source)), getattr(model, "spec", ""))
    elif (path / "cfg.json").exists():
        from saes.saelens_io import load_sae as load_folder

        sae = load_folder(path)
        ours = '"glasshouse_architecture"' in (path / "cfg.json").read_text()
        if hook is not None and hook != sae.cfg.hook_name:
            raise InputError(f"{source} is an SAE of {sae.cfg.hook_name} (its cfg.json says so); leave --hook out.")
    else:
        raise CheckpointError(f"{source}: no SAE found. An SAE is a folder with cfg.json and sae_weights.safetensors "
                              f"(ours, SAELens), or Gemma Scope's {' or '.join(NATIVE_FILES)}, or hf://OWNER/REPO/PATH "
                              "for one of those on the hub.")
    if model is not None:
        from saes.saelens_io import check_sae_matches_model

        check_sae_matches_model(sae, model)
        if check and not ours:
            check_reconstruction(sae, model, str(source))
    return sae


# --- where the files are ----------------------------------------------------------------------------

def parse_hf(uri: str) -> tuple[str, str, str | None]:
    """hf://OWNER/REPO/PATH[@REVISION] -> (repo id, path inside it, revision)."""
    rest = uri[len(HF_PREFIX):]
    rest, _, revision = rest.partition("@")
    parts = [p for p in rest.split("/") if p]
    if len(parts) < 2 or any(p in (".", "..") for p in parts):
        raise InputError(f"Cannot read '{uri}': write hf://OWNER/REPO/PATH, e.g. "
                         "hf://google/gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_71.")
    return "/".join(parts[:2]), "/".join(parts[2:]), revision or None


def resolve(source: str | os.PathLike[str]) -> Path:
    """A local path for `source`: itself, or the hub path fetched into huggingface_hub's cache."""
    text = str(source)
    if not text.startswith(HF_PREFIX):
        path = Path(text).expanduser()
        if not path.exists():
            raise CheckpointError(f"{source}: no such SAE folder or file. Give a folder with cfg.json, a Gemma Scope "
                                  "params.npz, or hf://OWNER/REPO/PATH.")
        return path
    repo, inner, revision = parse_hf(text)
    from huggingface_hub import snapshot_download

    patterns = [inner, f"{inner}/*"] if inner else None
    try:
        local = snapshot_download(repo_id=repo, revision=revision, allow_patterns=patterns)
    except Exception as exc:  # network, auth, missing repo: huggingface_hub raises many kinds
        raise InputError(f"Cannot fetch {text} from the hub ({type(exc).__name__}: {cause(exc)}). Check the repo id "
                         "and path, your network (or HF_HUB_OFFLINE=1 with the files in the cache) and, for a "
                         "gated repo, `huggingface-cli login`.") from exc
    path = Path(local) / inner
    if not path.exists():
        raise InputError(f"{text}: the repo {repo} has no '{inner}'. Browse https://huggingface.co/{repo} for the "
                         "layer / width / L0 folders.")
    return path


def native_file(path: Path) -> Path | None:
    """Gemma Scope's params file at `path` (a file, or a folder holding one), else None."""
    if path.is_file():
        return path if path.name in NATIVE_FILES else None
    found = [path / name for name in NATIVE_FILES if (path / name).exists()]
    return found[0] if found and not (path / "cfg.json").exists() else None


def hook_from_path(text: str) -> str:
    """blocks.L.<site hook> from a Gemma Scope path: `layer_<L>` and a site suffix (-res, -mlp) somewhere in it."""
    parts = [p for p in re.split(r"[/\\]", text) if p]
    layers = [int(m[1]) for p in parts if (m := re.fullmatch(r"layer_(\d+)(?:_.*)?", p))]
    sites = [m[1] for p in parts if (m := re.search(r"-(res|resid|resid_post|mlp|mlp_out|att|transcoders)$", p))]
    sites += [p for p in parts if p in SITES or p in REFUSED_SITES]
    if sites and sites[-1] in REFUSED_SITES:
        raise InputError(f"{text}: {REFUSED_SITES[sites[-1]]}.")
    if not layers or not sites:
        missing = " and ".join(w for w, ok in (("the layer (layer_<L>)", layers), ("the site (-res or -mlp)", sites))
                               if not ok)
        raise InputError(f"{text}: a Gemma Scope SAE's files do not say which hook it reads, and its path does not say "
                         f"{missing}. Give the hook, e.g. --hook blocks.12.hook_resid_post.")
    return f"blocks.{layers[-1]}.{SITES[sites[-1]]}"


# --- Gemma Scope's native layout ------------------------------------------------------------------------

def read_native(file: Path) -> dict[str, Any]:
    """The tensors of a params.npz / params.safetensors (CheckpointError for an unreadable or incomplete file)."""
    import numpy as np
    import torch

    try:
        if file.suffix == ".npz":
            with np.load(file) as data:
                tensors = {k: torch.from_numpy(np.asarray(data[k])) for k in data.files}
        else:
            from safetensors.torch import load_file

            tensors = load_file(str(file))
    except Exception as exc:  # zip, pickle and safetensors errors alike: the file is damaged
        raise CheckpointError(f"{file} cannot be read ({type(exc).__name__}: {cause(exc)}); the file is truncated "
                              "or corrupted: download it again.") from exc
    missing = [k for k in NATIVE_TENSORS if k not in tensors]
    if missing:
        raise CheckpointError(f"{file} lacks {missing} (holds {sorted(tensors)}); a Gemma Scope SAE holds "
                              f"{', '.join(NATIVE_TENSORS)}.")
    return {k: tensors[k] for k in NATIVE_TENSORS}


def load_native(file: Path, hook: str, model_name: str = "") -> Any:
    """A Gemma Scope JumpReLU SAE: its tensors checked by shape and value, the encoder's lack of b_dec folded in."""
    from saes.saelens_io import _check_tensors, sae_from_parts

    t = read_native(file)
    if t["W_enc"].ndim != 2:
        raise CheckpointError(f"{file}: W_enc has shape {tuple(t['W_enc'].shape)}; expected [d_in, d_sae].")
    d_in, d_sae = (int(n) for n in t["W_enc"].shape)
    shapes = {"W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,), "threshold": (d_sae,)}
    for name, shape in shapes.items():
        if tuple(t[name].shape) != shape:
            raise CheckpointError(f"{file}: {name} has shape {tuple(t[name].shape)}; W_enc [{d_in}, {d_sae}] implies "
                                  f"{shape}.")
    tensors = {k: v.double() for k, v in t.items()}
    _check_tensors(tensors, file)
    cfg = {"architecture": "jumprelu", "d_in": d_in, "d_sae": d_sae, "hook_name": hook, "model_name": model_name,
           "apply_b_dec_to_input": False, "source_layout": "gemma_scope"}
    return sae_from_parts(cfg, "jumprelu", tensors)


# --- the check before use ----------------------------------------------------------------------------

def check_reconstruction(sae: Any, model: Any, where: str, prompts: Sequence[str] = CHECK_PROMPTS) -> float:
    """The SAE's FVU on the model's activations at its hook over `prompts` (first position left out, as
    training does); InputError when it is not below MAX_FVU."""
    from saes.evaluate import reconstruction_metrics
    from saes.multi import activations_at, side_by_side

    tokens = model.to_tokens(list(prompts))
    real = tokens.attention_mask[:, 1:].bool()  # right padding: the real positions, the first left out
    hooks = sae.cfg.hooks
    got = activations_at(model, hooks, tokens.ids)  # a transcoder's input and target from one pass
    acts = side_by_side({name: got[name][:, 1:][real] for name in hooks}, hooks)
    fvu = float(reconstruction_metrics(sae, acts).fvu)
    if not fvu < MAX_FVU:
        raise InputError(f"{where} reconstructs {getattr(model, 'spec', 'the model')}'s {hooks[-1]} with FVU "
                         f"{fvu:.3g} on {len(prompts)} check prompts: no better than the activations' mean. It was "
                         "trained on another model or hook (or the hook read from its path is wrong: give --hook). "
                         "Pass check=False (--no-check) to load it anyway.")
    return fvu
