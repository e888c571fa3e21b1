"""BB checkpoints: an OPT folder that `probes.load_model(folder)` loads like any model, plus training state.

Spec: docs/methods/extreme-tokens.md (BB task, model) and docs/methods/embedded-model.md (a
Glasshouse checkpoint is an HF folder with `glasshouse.json`).

The lab's BBModel maps exactly onto HF's OPTForCausalLM with enable_bias=False, do_layer_norm_before=True,
activation_function="relu", tie_word_embeddings=False, word_embed_proj_dim = hidden_size, no dropout:
- OPT's learned positions have an offset of 2: position p reads row p + 2; rows 0 and 1 are saved as zeros;
- OPT scales q by 1/sqrt(d_head) before q.k (same function as scaling the scores);
- OPT's LayerNorms have a scale and a bias, and so do the lab's (torch's standard LayerNorm): the spec says
  only "LayerNorm", and the biases are kept rather than disabled.
The tokenizer is character-level (a WordLevel vocabulary, one token per character, `<s>` = id 0 as BOS,
EOS and padding); it puts `<s>` before every text, as every BB sequence starts with it.

Folder layout of one checkpoint (each file written with probes.io.atomic_write, glasshouse.json last,
holding the SHA-256 of every other file so that a damaged or half-replaced folder is detected):
config.json, generation_config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
training_state.pt (optimizer state, step), glasshouse.json (kind, step, settings, task, hashes).
A training run keeps step folders `step_NNNNNN/` and a `latest` file naming the newest one.

ReLU-attention checkpoints: HF's OPT attention and the TransformerLens bridge compute softmax
attention, so such a folder would load as a different function. Their glasshouse.json carries
`refuse_load_model` with the reason, and probes.load_model raises ModelLoadError on it; evaluate them
with the lab's own module (`load_checkpoint`, `glasshouse bb eval`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from probes.bb.data import BOS, BBTask
from probes.bb.model import BBConfig, BBModel
from probes.errors import CheckpointError, cause, common_advice, fault
from probes.io import atomic_write

MARKER = "glasshouse.json"
STATE_FILE = "training_state.pt"
LATEST = "latest"
KIND = "bb-lab"
OPT_POS_OFFSET = 2
RELU_REFUSAL = (
    "This is a BB-lab checkpoint trained with ReLU attention; HF's OPT and the TransformerLens bridge compute "
    "softmax attention, so load_model would run a different function. Evaluate it with the lab's own module: "
    "probes.bb.checkpoint.load_checkpoint(folder) or `glasshouse bb eval FOLDER`."
)


def opt_config(cfg: BBConfig) -> Any:
    """The OPTConfig that computes the same function as a softmax BBModel."""
    from transformers import OPTConfig

    return OPTConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        num_hidden_layers=cfg.n_layers,
        ffn_dim=cfg.d_mlp,
        num_attention_heads=cfg.n_heads,
        max_position_embeddings=cfg.n_ctx,
        do_layer_norm_before=True,
        word_embed_proj_dim=cfg.d_model,
        enable_bias=False,
        layer_norm_elementwise_affine=True,
        activation_function="relu",
        tie_word_embeddings=False,
        dropout=0.0,
        attention_dropout=0.0,
        layerdrop=0.0,
        pad_token_id=0,
        bos_token_id=0,
        eos_token_id=0,
        architectures=["OPTForCausalLM"],
    )


def to_opt_state(model: BBModel) -> dict[str, torch.Tensor]:
    """The BBModel's weights under OPTForCausalLM's parameter names."""
    sd = {
        "model.decoder.embed_tokens.weight": model.embed.weight,
        "model.decoder.embed_positions.weight": torch.cat([torch.zeros(OPT_POS_OFFSET, model.cfg.d_model), model.pos.weight]),
        "model.decoder.final_layer_norm.weight": model.ln_f.weight,
        "model.decoder.final_layer_norm.bias": model.ln_f.bias,
        "lm_head.weight": model.unembed.weight,
    }
    for i in range(model.cfg.n_layers):
        blk: Any = model.blocks[i]
        p = f"model.decoder.layers.{i}."
        sd.update({
            p + "self_attn.q_proj.weight": blk.q.weight,
            p + "self_attn.k_proj.weight": blk.k.weight,
            p + "self_attn.v_proj.weight": blk.v.weight,
            p + "self_attn.out_proj.weight": blk.o.weight,
            p + "self_attn_layer_norm.weight": blk.ln1.weight,
            p + "self_attn_layer_norm.bias": blk.ln1.bias,
            p + "final_layer_norm.weight": blk.ln2.weight,
            p + "final_layer_norm.bias": blk.ln2.bias,
            p + "fc1.weight": blk.fc1.weight,
            p + "fc2.weight": blk.fc2.weight,
        })
    return {k: v.detach().clone().contiguous() for k, v in sd.items()}


def from_opt_state(sd: dict[str, torch.Tensor], cfg: BBConfig) -> BBModel:
    """A BBModel holding the weights of an OPT state dict written by to_opt_state."""
    model = BBModel(cfg)
    ours = {
        "embed.weight": sd["model.decoder.embed_tokens.weight"],
        "pos.weight": sd["model.decoder.embed_positions.weight"][OPT_POS_OFFSET:],
        "ln_f.weight": sd["model.decoder.final_layer_norm.weight"],
        "ln_f.bias": sd["model.decoder.final_layer_norm.bias"],
        "unembed.weight": sd["lm_head.weight"],
    }
    names = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.out_proj",
             "ln1": "self_attn_layer_norm", "ln2": "final_layer_norm", "fc1": "fc1", "fc2": "fc2"}
    for i in range(cfg.n_layers):
        for short, long in names.items():
            for part in ("weight", "bias") if short.startswith("ln") else ("weight",):
                ours[f"blocks.{i}.{short}.{part}"] = sd[f"model.decoder.layers.{i}.{long}.{part}"]
    model.load_state_dict(ours, strict=True)
    return model


def char_tokenizer(task: BBTask) -> Any:
    """A character-level PreTrainedTokenizerFast over the task's vocabulary (`<s>` = 0, put first)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(task.vocab)}
    tok = Tokenizer(models.WordLevel(vocab=vocab))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, 0)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=BOS, pad_token=BOS, model_max_length=10**6
    )


def _bytes_writer(data: bytes) -> Callable[[Path], int]:
    return lambda tmp: tmp.write_bytes(data)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hf_files(model: BBModel, task: BBTask) -> dict[str, bytes]:
    """The bytes of the HF model and tokenizer files (saved through save_pretrained into a temp dir)."""
    from safetensors.torch import save_file
    from transformers import GenerationConfig

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        opt_config(model.cfg).save_pretrained(folder)
        GenerationConfig(bos_token_id=0, eos_token_id=0, pad_token_id=0).save_pretrained(folder)
        save_file(to_opt_state(model), str(folder / "model.safetensors"), metadata={"format": "pt"})
        char_tokenizer(task).save_pretrained(folder)
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def save_checkpoint(
    folder: str | Path,
    model: BBModel,
    task: BBTask,
    step: int,
    settings: dict[str, Any],
    optimizer_state: dict[str, Any] | None = None,
) -> Path:
    """Write one checkpoint folder (every file atomically, glasshouse.json last with the files' hashes)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = _hf_files(model, task)
    for name, data in files.items():
        atomic_write(folder / name, _bytes_writer(data))
    state = {"step": step, "optimizer": optimizer_state}
    atomic_write(folder / STATE_FILE, lambda tmp: torch.save(state, tmp))
    names = [*files, STATE_FILE]
    meta = {
        "kind": KIND,
        "step": step,
        "config": model.cfg.to_dict(),
        "settings": settings,
        "task": task.to_dict(),
        "refuse_load_model": RELU_REFUSAL if model.cfg.attention != "softmax" else None,
        "files": {name: _sha256(folder / name) for name in names},
    }
    atomic_write(folder / MARKER, lambda tmp: tmp.write_text(json.dumps(meta)))
    return folder


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder (its `latest` checkpoint)."""
    path = Path(path)
    if (path / LATEST).is_file():
        return path / (path / LATEST).read_text().strip()
    return path


def read_meta(folder: str | Path) -> dict[str, Any]:
    """glasshouse.json of a BB checkpoint, with every listed file's hash checked (CheckpointError if not)."""
    folder = resolve_checkpoint(folder)
    marker = folder / MARKER
    if not marker.is_file():
        raise CheckpointError(f"{folder} is not a BB checkpoint (no {MARKER}). Give a step folder or a run folder.")
    try:
        meta = json.loads(marker.read_text())
        files = meta["files"]
        meta["config"], meta["task"], meta["step"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{marker} is damaged ({cause(exc)}); use an earlier checkpoint or train again.") from exc
    if meta.get("kind") != KIND:
        raise CheckpointError(f"{folder} is a Glasshouse checkpoint but not a BB-lab one (kind {meta.get('kind')!r}).")
    for name, digest in files.items():
        path = folder / name
        if not path.is_file() or _sha256(path) != digest:
            raise CheckpointError(
                f"Checkpoint file {path} is missing or altered (its SHA-256 differs from {MARKER}); "
                "use an earlier step folder or train again."
            )
    meta["folder"] = str(folder)
    return meta


def load_checkpoint(folder: str | Path) -> tuple[BBModel, BBTask, dict[str, Any]]:
    """The lab's module, the task and the metadata of a checkpoint (hashes verified)."""
    from safetensors.torch import load_file

    meta = read_meta(folder)
    path = Path(meta["folder"])
    cfg = BBConfig(**meta["config"])
    try:
        model = from_opt_state(load_file(str(path / "model.safetensors")), cfg)
    except (KeyError, RuntimeError, SafetensorError) as exc:
        raise CheckpointError(_weights_failure(path, exc)) from exc
    return model.eval(), BBTask.from_dict(meta["task"]), meta


def _weights_failure(path: Path, exc: BaseException) -> str:
    """The message for weights that did not load: out of memory, a damaged file, or weights that do not fit."""
    common = common_advice(exc)
    if common is not None:
        return f"Could not load the weights in {path} ({cause(exc)}). {common}"
    if fault(exc) == "damaged":
        return (f"{path / 'model.safetensors'} is damaged ({cause(exc)}); use an earlier checkpoint or "
                "train again.")
    return f"The weights in {path} do not fit its config ({cause(exc)}); the checkpoint is damaged."


def load_training_state(folder: str | Path) -> dict[str, Any]:
    """The optimizer state and step saved beside the weights (hashes verified first)."""
    meta = read_meta(folder)
    return dict(torch.load(Path(meta["folder"]) / STATE_FILE, weights_only=False))


def write_latest(run_dir: str | Path, step_folder: str | Path, keep: int = 2) -> None:
    """Point `latest` at a step folder (atomically) and delete all but the newest `keep` step folders."""
    run_dir = Path(run_dir)
    name = Path(step_folder).name
    atomic_write(run_dir / LATEST, lambda tmp: tmp.write_text(name))
    steps = sorted(p for p in run_dir.glob("step_*") if p.is_dir())
    for old in steps[:-keep]:
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
