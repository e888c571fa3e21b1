"""SAELens-compatible save and load, SAELens 6 both ways (docs/methods/saes.md, "Interoperability"; docs/saes.md).

A folder holds `cfg.json` and `sae_weights.safetensors` with W_enc [d_in, d_sae], b_enc [d_sae],
W_dec [d_sae, d_in], b_dec [d_in], and `threshold` [d_sae] for SAEs that use one at inference; a
gated SAE has b_gate, b_mag and r_mag [d_sae] instead of b_enc (SAELens 6's "gated" layout).

Writing (`save_sae`) produces the SAELens 6 layout: hook_name, model_name, hook_head_index and
prepend_bos under "metadata" (with "sae_lens_version": "6.0.0", the layout's version, so that
SAELens reads it as a v6 config), and an "architecture" SAELens 6 knows: standard, topk (with "k"
and "rescale_acts_by_decoder_norm": false), jumprelu or gated. BatchTopK, Matryoshka BatchTopK, Mutual
Choice and Feature Choice are written as "jumprelu" with their inference thresholds (a global one
expanded to d_sae), as SAELens itself stores a (Matryoshka) BatchTopK SAE; "glasshouse_architecture"
keeps the real name and all our config fields sit at the top level (SAELens ignores keys it does not
know), so our own round trip is lossless. The activation norm scale s is folded into the weights (W_enc * s,
W_dec / s, b_dec / s; "normalize_activations": "none"); "glasshouse_folded_norm_scale" records
s. The rows of W_dec in the file then have norm 1/s, so "decoder_norm" says "free" there and
"glasshouse_trained_decoder_norm" keeps the trained setting; `load_sae` unfolds both for our own
folders. "weights_sha256" is the SHA-256 of the weights file. A transcoder folds its input scale s into W_enc
and its output scale s_out into W_dec, b_dec (/ s_out) and W_skip (* s / s_out), written as SAELens's
"jumprelu_transcoder" / "jumprelu_skip_transcoder", or "topk_transcoder" (which SAELens does not have).

Reading (`load_sae`) takes our folders, SAELens 6 folders (inference and training ones) and the
pre-6 flat layout. Every field that changes what SAELens computes is reproduced or refused with an
InputError naming it:
- architecture standard / topk / jumprelu / gated, the transcoders ("transcoder", "skip_transcoder",
  "jumprelu_transcoder", "jumprelu_skip_transcoder": d_out, hook_name_out, W_dec [d_sae, d_out], W_skip
  [d_out, d_in], b_dec never applied to the input; ReLU ones as JumpReLU with a zero threshold), and the
  training-only "batchtopk" and
  "matryoshka_batchtopk" (the topk_threshold becomes the JumpReLU threshold, as SAELens's
  save_inference_model does; matryoshka_widths become the prefixes, d_sae appended when the last is
  below it, as SAELens appends it); others are refused;
- rescale_acts_by_decoder_norm (topk, batchtopk, matryoshka_batchtopk): SAELens multiplies the
  pre-activations by n_j = ||W_dec[j]|| before the selection and the codes by 1/n_j before decoding; folded as
  SAELens folds it (W_enc[:, j] * n_j, b_enc[j] * n_j, W_dec[j] / n_j);
- apply_b_dec_to_input false: z = x W_enc + b_enc, folded into b_enc (b_enc + b_dec W_enc); for a
  gated SAE into both paths' biases (b_gate + b_dec W_enc, b_mag + b_dec (W_enc * exp(r_mag)));
- a JumpReLU "log_threshold" tensor becomes threshold = exp(log_threshold);
- normalize_activations "none" and "expected_average_only_in" (SAELens applies nothing for it at
  inference) are read; "constant_norm_rescale", "layer_norm" and "covariance_whitening" (a
  per-token rescaling between encode and decode) are refused; so are reshape_activations other
  than "none", a hook_head_index, finetuning_scaling_factor, and tensors our SAEs would not use.
The folding runs in float64. Every folder is checked: the checksum where present, readable
safetensors, tensor names and shapes, and finite values in every tensor (CheckpointError naming
the tensor otherwise).
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

from probes.errors import CheckpointError, InputError, advice, cause
from probes.io import atomic_write, write_json
from saes import registry
from saes.base import SAE
from saes.config import hook_layer

WEIGHTS = "sae_weights.safetensors"
CONFIG = "cfg.json"
LAYOUT_VERSION = "6.0.0"
_AS_JUMPRELU = ("batchtopk", "matryoshka_batchtopk", "mutual_choice", "feature_choice")
_SAELENS_ARCHS = {"standard": "standard", "relu": "standard", "topk": "topk", "jumprelu": "jumprelu",
                  "batchtopk": "batchtopk", "matryoshka_batchtopk": "matryoshka_batchtopk", "gated": "gated"}
_RESCALED = ("topk", "batchtopk", "matryoshka_batchtopk")  # SAELens archs with rescale_acts_by_decoder_norm
_REFUSED_NORMS = ("constant_norm_rescale", "layer_norm", "covariance_whitening")
_META_KEYS = ("model_name", "hook_name", "hook_head_index", "prepend_bos", "context_size", "dataset_path")
_TENSORS = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "log_threshold", "topk_threshold")
_GATED_TENSORS = ("W_enc", "W_dec", "b_dec", "b_gate", "b_mag", "r_mag")  # SAELens 6 "gated": no b_enc
_TRANSCODERS = ("topk_transcoder", "jumprelu_transcoder")
# SAELens 6 transcoders, all read as our JumpReLU transcoder (ReLU = JumpReLU with a zero threshold)
_SAELENS_TRANSCODERS = ("transcoder", "skip_transcoder", "jumprelu_transcoder", "jumprelu_skip_transcoder")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_sae(sae: SAE, folder: str | os.PathLike[str]) -> Path:
    """Write `sae` as a SAELens 6 folder (norm scale folded in; see module docstring); returns the folder."""
    out = Path(folder)
    s = float(sae.cfg.norm_scale)
    s_out = float(getattr(sae.cfg, "out_norm_scale", s))  # a transcoder's target scale; an SAE's is s
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in sae.weights().items()}
    tensors["W_enc"] = (tensors["W_enc"] * s).contiguous()
    tensors["W_dec"] = (tensors["W_dec"] / s_out).contiguous()
    tensors["b_dec"] = (tensors["b_dec"] / s_out).contiguous()
    if "W_skip" in tensors:
        tensors["W_skip"] = (tensors["W_skip"] * (s / s_out)).contiguous()
    _check_tensors(tensors, out / WEIGHTS)
    atomic_write(out / WEIGHTS, lambda tmp: save_file(tensors, str(tmp)))
    cfg = sae.cfg.to_dict()
    name = sae.cfg.architecture
    cfg.update({
        "architecture": "jumprelu" if name in _AS_JUMPRELU else name,
        "glasshouse_architecture": name,
        "hook_layer": hook_layer(sae.cfg.hook_name),
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "norm_scale": 1.0,
        "glasshouse_folded_norm_scale": s,
        "decoder_norm": sae.cfg.decoder_norm if s == 1.0 else "free",
        "glasshouse_trained_decoder_norm": sae.cfg.decoder_norm,
        "metadata": {"sae_lens_version": LAYOUT_VERSION, "model_name": sae.cfg.model_name,
                     "hook_name": sae.cfg.hook_name, "hook_head_index": None, "prepend_bos": False},
        "weights_sha256": _sha256(out / WEIGHTS),
    })
    if name == "topk":
        cfg["rescale_acts_by_decoder_norm"] = False
    if name in _TRANSCODERS:  # SAELens 6's transcoder fields; a TopK transcoder has no SAELens architecture
        skip = "W_skip" in tensors
        cfg.update({"architecture": ("jumprelu_skip_transcoder" if skip else "jumprelu_transcoder")
                    if name == "jumprelu_transcoder" else name,
                    "apply_b_dec_to_input": False, "hook_layer_out": hook_layer(sae.cfg.hook_name_out),  # type: ignore[attr-defined]
                    "hook_head_index_out": None, "out_norm_scale": 1.0, "glasshouse_folded_out_norm_scale": s_out,
                    "decoder_norm": sae.cfg.decoder_norm if s_out == 1.0 else "free"})
    write_json(out / CONFIG, cfg)
    return out


def _read_cfg(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG
    if not path.exists():
        raise CheckpointError(f"{folder} has no {CONFIG}; an SAE folder holds {CONFIG} and {WEIGHTS}.")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({cause(exc)}); the file is truncated or altered.") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a JSON object; it is not an SAE config.")
    data = _flatten(dict(data))
    for key in ("d_in", "d_sae", "hook_name"):
        if key not in data:
            raise CheckpointError(f"{path} lacks '{key}' (at the top level or under 'metadata'); it is not an SAE config.")
    return data


def _flatten(cfg: dict[str, Any]) -> dict[str, Any]:
    """Lift v6 metadata keys (hook_name, model_name, ...) to the top level; pre-6 names to v6 names."""
    meta = cfg.get("metadata")
    if isinstance(meta, dict):
        for key in _META_KEYS:
            if key in meta and key not in cfg:
                cfg[key] = meta[key]
    if "hook_name" not in cfg and "hook_point" in cfg:
        cfg["hook_name"] = cfg["hook_point"]
    if "hook_head_index" not in cfg and "hook_point_head_index" in cfg:
        cfg["hook_head_index"] = cfg["hook_point_head_index"]
    return cfg


def _check_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """CheckpointError naming the first tensor that is not floating point or holds NaN / inf."""
    for name, t in tensors.items():
        if not t.is_floating_point():
            raise CheckpointError(f"{path}: tensor '{name}' has dtype {t.dtype}; SAE weights are floating point.")
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise CheckpointError(
                f"{path}: tensor '{name}' holds {bad} NaN or inf value{'s' if bad > 1 else ''}; the SAE would "
                "compute NaN. The file is corrupted or the run that wrote it diverged: restore it or train again."
            )


def _read_weights(folder: Path, cfg: dict[str, Any], name: str) -> dict[str, torch.Tensor]:
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
        raise CheckpointError(f"{path} cannot be read as safetensors ({cause(exc)}). "
                              + advice(exc, damaged="The file is truncated or corrupted: restore it or save the SAE again.")
                              ) from exc
    d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    gated = name == "gated"
    d_out = int(cfg.get("d_out") or d_in) if name in _TRANSCODERS else d_in
    shapes = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_out), "b_dec": (d_out,)}
    if name in _TRANSCODERS and "W_skip" in tensors:
        shapes["W_skip"] = (d_out, d_in)
    shapes.update(dict.fromkeys(("b_gate", "b_mag", "r_mag") if gated else ("b_enc",), (d_sae,)))
    for key, shape in shapes.items():
        if key not in tensors:
            raise CheckpointError(f"{path} lacks the tensor '{key}' (has {sorted(tensors)}).")
        if tuple(tensors[key].shape) != shape:
            raise CheckpointError(f"{path}: {key} has shape {tuple(tensors[key].shape)}, cfg.json implies {shape}.")
    for key in ("threshold", "log_threshold"):
        if key in tensors and tuple(tensors[key].shape) != (d_sae,):
            raise CheckpointError(f"{path}: {key} has shape {tuple(tensors[key].shape)}, expected ({d_sae},).")
    if "topk_threshold" in tensors and tensors["topk_threshold"].numel() != 1:
        raise CheckpointError(f"{path}: topk_threshold has shape {tuple(tensors['topk_threshold'].shape)}, expected ().")
    unknown = sorted(set(tensors) - set(_GATED_TENSORS if gated else _TENSORS) - ({"W_skip"} if name in _TRANSCODERS else set()))
    if unknown:
        raise InputError(f"{path} holds tensors {unknown} that Glasshouse's SAEs do not use (an architecture it does not "
                         "implement); loading without them would compute something else.")
    _check_tensors(tensors, path)
    return {k: v.double() for k, v in tensors.items()}


def _architecture(cfg: dict[str, Any]) -> str:
    if cfg.get("glasshouse_architecture"):
        return str(cfg["glasshouse_architecture"])
    name = str(cfg.get("architecture", "standard"))
    act = cfg.get("activation_fn", cfg.get("activation_fn_str"))
    if name == "standard" and act == "topk":
        name = "topk"  # older SAELens: TopK as a standard SAE with a topk activation
    if name in _SAELENS_TRANSCODERS:
        return "jumprelu_transcoder"
    if name not in _SAELENS_ARCHS:
        known = ", ".join(sorted(set(_SAELENS_ARCHS) - {"relu"}))
        raise InputError(f"Unknown SAE architecture '{name}' in cfg.json 'architecture': Glasshouse reads the SAELens "
                         f"architectures {known} (and its own). Convert the SAE to one of them.")
    return _SAELENS_ARCHS[name]


def _refuse(folder: Path, field: str, value: Any, why: str) -> None:
    raise InputError(f"{folder / CONFIG}: '{field}' = {value!r} is not supported: {why}. Glasshouse refuses it rather "
                     "than compute something other than what SAELens computes.")


def _check_fields(folder: Path, cfg: dict[str, Any]) -> None:
    """InputError for each field whose computation the reader does not reproduce (module docstring)."""
    norm = cfg.get("normalize_activations", "none")
    if norm in _REFUSED_NORMS:
        _refuse(folder, "normalize_activations", norm, "it rescales every token between encode and decode")
    if norm not in (None, False, "none", "expected_average_only_in"):
        _refuse(folder, "normalize_activations", norm, "an unknown normalisation")
    if cfg.get("reshape_activations", "none") not in ("none", None):
        _refuse(folder, "reshape_activations", cfg["reshape_activations"], "only flat activations [..., d_in] are read")
    if cfg.get("hook_head_index") is not None:
        _refuse(folder, "hook_head_index", cfg["hook_head_index"], "per-head SAEs are not read")
    if cfg.get("finetuning_scaling_factor"):
        _refuse(folder, "finetuning_scaling_factor", cfg["finetuning_scaling_factor"], "a learned scale is not read")


def _convert(cfg: dict[str, Any], name: str, t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SAELens's computation folded into ours (module docstring), in float64, returned as float32."""
    ours = bool(cfg.get("glasshouse_architecture"))
    if "log_threshold" in t and "threshold" not in t:
        t["threshold"] = t.pop("log_threshold").exp()
    if "topk_threshold" in t:
        t["threshold"] = t.pop("topk_threshold").reshape(()).expand(int(cfg["d_sae"])).clone()
    if name in _RESCALED and cfg.get("rescale_acts_by_decoder_norm") and not ours:
        n = t["W_dec"].norm(dim=1).clamp_min(1e-8)
        t["W_enc"], t["b_enc"], t["W_dec"] = t["W_enc"] * n[None, :], t["b_enc"] * n, t["W_dec"] / n[:, None]
    if name in _TRANSCODERS:  # b_dec is in the output's space: never applied to the input
        if "threshold" not in t and name == "jumprelu_transcoder":
            t["threshold"] = torch.zeros(int(cfg["d_sae"]), dtype=t["W_enc"].dtype)  # SAELens's ReLU transcoder
        s_in = float(cfg.get("glasshouse_folded_norm_scale") or 1.0)
        s_out = float(cfg.get("glasshouse_folded_out_norm_scale") or 1.0)
        if ours:
            t["W_enc"], t["W_dec"], t["b_dec"] = t["W_enc"] / s_in, t["W_dec"] * s_out, t["b_dec"] * s_out
            if "W_skip" in t:
                t["W_skip"] = t["W_skip"] * (s_out / s_in)
        return {k: v.float() for k, v in t.items()}
    if cfg.get("apply_b_dec_to_input", True) is False:
        if name == "gated":
            shift = t["b_dec"] @ t["W_enc"]
            t["b_gate"], t["b_mag"] = t["b_gate"] + shift, t["b_mag"] + shift * t["r_mag"].exp()
        else:
            t["b_enc"] = t["b_enc"] + t["b_dec"] @ t["W_enc"]
    s = float(cfg.get("glasshouse_folded_norm_scale") or 1.0)
    if ours and s != 1.0:
        t["W_enc"], t["W_dec"], t["b_dec"] = t["W_enc"] / s, t["W_dec"] * s, t["b_dec"] * s
    return {k: v.float() for k, v in t.items()}


def load_sae(folder: str | os.PathLike[str], model: Any = None) -> SAE:
    """Load a SAELens-layout folder (ours, SAELens 6's, or pre-6). With `model`, check the hook and width.

    Raises CheckpointError for a missing, truncated, altered or non-finite file, InputError for an
    architecture or a field Glasshouse does not reproduce (named in the message), or an SAE whose
    d_in does not match the model's activation at its hook. saes.sources.load_sae takes any source.
    """
    path = Path(folder)
    cfg = _read_cfg(path)
    name = _architecture(cfg)
    _check_fields(path, cfg)
    return sae_from_parts(cfg, name, _read_weights(path, cfg, name), model)


def sae_from_parts(cfg: dict[str, Any], name: str, tensors: dict[str, torch.Tensor], model: Any = None) -> SAE:
    """Our SAE from a SAELens-style config (flat, checked) and its float64 tensors, folded as SAELens computes
    (module docstring); with `model`, checked against its hook and width. Readers of other layouts (Gemma Scope's
    params.npz, saes/sources.py) describe their SAE this way."""
    fields = dict(cfg)
    fields["architecture"] = name
    if "k" not in fields and isinstance(cfg.get("activation_fn_kwargs"), dict) and "k" in cfg["activation_fn_kwargs"]:
        fields["k"] = cfg["activation_fn_kwargs"]["k"]
    if "k" in fields and fields["k"] is not None:
        fields["k"] = int(round(float(fields["k"])))  # SAELens BatchTopK keeps k as a float
    if name == "matryoshka_batchtopk" and "prefixes" not in fields and isinstance(cfg.get("matryoshka_widths"), list):
        widths = list(cfg["matryoshka_widths"])  # checked as prefixes by MatryoshkaConfig
        if widths and isinstance(widths[-1], int | float) and widths[-1] < int(cfg["d_sae"]):
            widths.append(int(cfg["d_sae"]))  # as SAELens appends d_sae when the last width is below it
        fields["prefixes"] = widths
    if cfg.get("glasshouse_architecture"):
        fields["norm_scale"] = float(cfg.get("glasshouse_folded_norm_scale") or 1.0)
        fields["out_norm_scale"] = float(cfg.get("glasshouse_folded_out_norm_scale") or 1.0)
        fields["decoder_norm"] = cfg.get("glasshouse_trained_decoder_norm", cfg.get("decoder_norm", "unit"))
    else:  # an imported SAE: raw activations, rows taken as they are
        fields.update(norm_scale=1.0, out_norm_scale=1.0, decoder_norm="free", normalization="none")
    if name in _TRANSCODERS:
        if not cfg.get("hook_name_out"):
            raise CheckpointError("A transcoder's cfg.json names its output hook in 'hook_name_out'; this one does "
                                  "not, so what it predicts is unknown.")
        if cfg.get("hook_head_index_out") is not None:
            raise InputError(f"'hook_head_index_out' = {cfg['hook_head_index_out']!r} is not supported: per-head "
                             "transcoders are not read.")
        fields["skip"] = "W_skip" in tensors
        fields["d_out"] = int(cfg.get("d_out") or cfg["d_in"])
    sae_cfg = registry.make_config(name, **fields)
    sae = registry.build(sae_cfg)
    sae.load_weights(_convert(cfg, name, tensors))
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
    out_hook = getattr(sae.cfg, "hook_name_out", None)
    if out_hook and check_hook(model, out_hook) != sae.cfg.d_out:  # type: ignore[attr-defined]
        raise InputError(f"The transcoder has d_out={sae.cfg.d_out} but {getattr(model, 'spec', 'the model')}'s "  # type: ignore[attr-defined]
                         f"activation at {out_hook} has width {check_hook(model, out_hook)}.")
