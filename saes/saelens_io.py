"""SAELens-compatible save and load (spec saes.md, "Interoperability"; issue 6.6).

A folder holds `cfg.json` and `sae_weights.safetensors` with W_enc [d_in, d_sae], b_enc [d_sae],
W_dec [d_sae, d_in], b_dec [d_in], and `threshold` [d_sae] for SAEs that use one at inference
(JumpReLU; BatchTopK / Mutual Choice write their global threshold expanded to d_sae, Feature
Choice its per-feature thresholds). Hooks are named with TransformerLens names.

Saving folds the activation norm scale s into the weights (W_enc * s, W_dec / s, b_dec / s; as
SAELens does after training), so the folder takes raw activations and records
"normalize_activations": "none"; the folded value is kept as "glasshouse_folded_norm_scale".
cfg.json carries the SAELens keys (architecture, d_in, d_sae, hook_name, hook_layer,
model_name, dtype, device, apply_b_dec_to_input, normalize_activations, activation_fn_str,
activation_fn_kwargs, k, ...) plus our config fields, and "weights_sha256", the SHA-256 of the
weights file: a file that no longer matches it is reported as altered. Folders written by SAELens
(no checksum) are checked for readability, names and shapes only.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from probes.errors import CheckpointError, InputError
from probes.io import atomic_write, write_json
from saes import registry
from saes.base import SAE
from saes.config import hook_layer

WEIGHTS = "sae_weights.safetensors"
CONFIG = "cfg.json"
_SAELENS_NAMES = {"standard": "standard", "relu": "standard", "topk": "topk", "jumprelu": "jumprelu",
                  "batchtopk": "batchtopk", "feature_choice": "feature_choice", "mutual_choice": "mutual_choice"}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_sae(sae: SAE, folder: str | os.PathLike[str]) -> Path:
    """Write `sae` as a SAELens folder (norm scale folded in); returns the folder."""
    out = Path(folder)
    s = float(sae.cfg.norm_scale)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in sae.weights().items()}
    tensors["W_enc"] = (tensors["W_enc"] * s).contiguous()
    tensors["W_dec"] = (tensors["W_dec"] / s).contiguous()
    tensors["b_dec"] = (tensors["b_dec"] / s).contiguous()
    atomic_write(out / WEIGHTS, lambda tmp: save_file(tensors, str(tmp)))
    cfg = sae.cfg.to_dict()
    k = cfg.get("k")
    cfg.update({
        "architecture": sae.cfg.architecture,
        "hook_layer": hook_layer(sae.cfg.hook_name),
        "hook_head_index": None,
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "norm_scale": 1.0,
        "glasshouse_folded_norm_scale": s,
        "activation_fn_str": "topk" if sae.cfg.architecture == "topk" else "relu",
        "activation_fn_kwargs": {"k": k} if k is not None else {},
        "finetuning_scaling_factor": False,
        "prepend_bos": False,
        "weights_sha256": _sha256(out / WEIGHTS),
    })
    write_json(out / CONFIG, cfg)
    return out


def _read_cfg(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG
    if not path.exists():
        raise CheckpointError(f"{folder} has no {CONFIG}; an SAE folder holds {CONFIG} and {WEIGHTS}.")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); the file is truncated or altered.") from exc
    for key in ("d_in", "d_sae", "hook_name"):
        if key not in data:
            raise CheckpointError(f"{path} lacks '{key}'; it is not an SAE config.")
    return dict(data)


def _read_weights(folder: Path, cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    path = folder / WEIGHTS
    if not path.exists():
        raise CheckpointError(f"{folder} has no {WEIGHTS}.")
    if cfg.get("weights_sha256") and _sha256(path) != cfg["weights_sha256"]:
        raise CheckpointError(
            f"{path} does not match the checksum in {CONFIG}: the file was truncated or altered after saving. "
            "Save the SAE again or restore the file."
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} cannot be read as safetensors ({exc}); the file is truncated or corrupted.") from exc
    d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    for name, shape in shapes.items():
        if name not in tensors:
            raise CheckpointError(f"{path} lacks the tensor '{name}' (has {sorted(tensors)}).")
        if tuple(tensors[name].shape) != shape:
            raise CheckpointError(f"{path}: {name} has shape {tuple(tensors[name].shape)}, cfg.json implies {shape}.")
    if "threshold" in tensors and tuple(tensors["threshold"].shape) != (d_sae,):
        raise CheckpointError(f"{path}: threshold has shape {tuple(tensors['threshold'].shape)}, expected ({d_sae},).")
    return {k: v.float() for k, v in tensors.items()}


def _architecture(cfg: dict[str, Any]) -> str:
    name = str(cfg.get("architecture", "standard"))
    if name == "standard" and cfg.get("activation_fn_str") == "topk":
        name = "topk"  # older SAELens: TopK as a standard SAE with a topk activation
    return _SAELENS_NAMES.get(name, name)


def load_sae(folder: str | os.PathLike[str], model: Any = None) -> SAE:
    """Load a SAELens-layout folder (ours or SAELens's). With `model`, check the hook and width.

    Raises CheckpointError for a missing, truncated or altered file, InputError for an unknown
    architecture or an SAE whose d_in does not match the model's activation at its hook.
    """
    path = Path(folder)
    cfg = _read_cfg(path)
    name = _architecture(cfg)
    fields = dict(cfg)
    fields["norm_scale"] = 1.0
    if "k" not in fields and isinstance(cfg.get("activation_fn_kwargs"), dict) and "k" in cfg["activation_fn_kwargs"]:
        fields["k"] = cfg["activation_fn_kwargs"]["k"]
    if "decoder_norm" not in cfg:
        fields["decoder_norm"] = "free"  # an imported SAE's rows are taken as they are
    sae_cfg = registry.make_config(name, **fields)
    tensors = _read_weights(path, cfg)
    sae = registry.build(sae_cfg)
    sae.load_weights(tensors)
    sae.eval()
    if model is not None:
        check_sae_matches_model(sae, model)
    return sae


def check_sae_matches_model(sae: SAE, model: Any) -> None:
    """InputError unless the model has the SAE's hook and its activation there has width d_in."""
    from saes.activation_store import check_hook

    width = check_hook(model, sae.cfg.hook_name)
    if width != sae.cfg.d_in:
        raise InputError(
            f"The SAE has d_in={sae.cfg.d_in} but {getattr(model, 'spec', 'the model')}'s activation at "
            f"{sae.cfg.hook_name} has width {width}. Use an SAE trained on this model and hook."
        )
