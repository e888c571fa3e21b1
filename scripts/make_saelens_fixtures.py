"""Fixture folders written by the real SAELens 6, and a check that SAELens loads our folders (docs/saes.md).

Run in a separate virtualenv that has sae-lens 6.x (never in the project's own environment):
    python3 -m venv /work/venvs/saelens && /work/venvs/saelens/bin/pip install torch==2.13.0
    /work/venvs/saelens/bin/pip install sae-lens torch==2.13.0
    /work/venvs/saelens/bin/python -m scripts.make_saelens_fixtures make tests/saes/fixtures/saelens6
    /work/venvs/saelens/bin/python -m scripts.make_saelens_fixtures check FOLDER [FOLDER ...]

`make` writes one folder per config variant (small widths, random weights, fixed seeds) with
SAELens's own `save_model` / `save_inference_model`, and `expected.safetensors` beside them:
the fixed input `x` [32, d_in] and, per folder NAME, SAELens's `NAME.feature_acts` and
`NAME.x_hat` (SAE.load_from_disk(folder).encode / .decode) on it. tests/saes/test_saelens6.py
compares our reader against these in CI, without SAELens.

`check` loads each folder (written by our save_sae) with SAE.load_from_disk and compares its
encode/decode with `glasshouse_expected.safetensors` in that folder (x, feature_acts, x_hat from
our SAE), printing one JSON line per folder with the largest differences.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, this folder would lead sys.path and its module names could shadow installed packages
# (benchmarks/kernels.py once hid the `kernels` distribution): the repository root leads instead.
if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

D_IN, D_SAE = 8, 16


def _randomise(sae: torch.nn.Module, seed: int, threshold: bool = False) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if name == "threshold":
                p.copy_(torch.rand(p.shape, generator=g) * 0.6)
            elif name == "log_threshold":
                p.copy_((torch.rand(p.shape, generator=g) * 0.6 + 0.05).log())
            elif name in ("W_dec",):
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 + torch.rand(p.shape[0], 1, generator=g) * 2))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.3 if name.startswith("b_") else 1.0))


def _metadata() -> dict:
    from sae_lens.saes.sae import SAEMetadata

    return {"metadata": SAEMetadata(model_name="smollm2-135m", hook_name="blocks.3.hook_resid_post",
                                    hook_head_index=None, prepend_bos=True, context_size=128)}


def make(out: Path) -> None:
    import sae_lens
    from sae_lens import (
        BatchTopKTrainingSAE,
        BatchTopKTrainingSAEConfig,
        GatedSAE,
        GatedSAEConfig,
        GatedTrainingSAE,
        GatedTrainingSAEConfig,
        JumpReLUSAE,
        JumpReLUSAEConfig,
        JumpReLUTrainingSAE,
        JumpReLUTrainingSAEConfig,
        StandardSAE,
        StandardSAEConfig,
        TopKSAE,
        TopKSAEConfig,
        TopKTrainingSAE,
        TopKTrainingSAEConfig,
    )
    from sae_lens.saes.sae import SAE

    out.mkdir(parents=True, exist_ok=True)
    base = {"d_in": D_IN, "d_sae": D_SAE}
    variants = {
        # name: (sae, how to save)
        "standard": (StandardSAE(StandardSAEConfig(**base, **_metadata())), "model"),
        "standard_no_b_dec_in": (StandardSAE(StandardSAEConfig(**base, apply_b_dec_to_input=False, **_metadata())), "model"),
        "standard_constant_norm_rescale": (StandardSAE(StandardSAEConfig(
            **base, normalize_activations="constant_norm_rescale", **_metadata())), "model"),
        "topk": (TopKSAE(TopKSAEConfig(**base, k=4, **_metadata())), "model"),
        "topk_rescale": (TopKSAE(TopKSAEConfig(**base, k=4, rescale_acts_by_decoder_norm=True, **_metadata())), "model"),
        "topk_no_b_dec_in": (TopKSAE(TopKSAEConfig(**base, k=4, apply_b_dec_to_input=False, **_metadata())), "model"),
        "jumprelu": (JumpReLUSAE(JumpReLUSAEConfig(**base, **_metadata())), "model"),
        "topk_training": (TopKTrainingSAE(TopKTrainingSAEConfig(**base, k=4, **_metadata())), "model"),
        "topk_training_inference": (TopKTrainingSAE(TopKTrainingSAEConfig(**base, k=4, **_metadata())), "inference"),
        "jumprelu_training": (JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(**base, **_metadata())), "model"),
        "batchtopk_training_inference": (BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(**base, k=4, **_metadata())),
                                         "inference"),
        # added last, so the folders above keep their seeds (one per position)
        "gated": (GatedSAE(GatedSAEConfig(**base, **_metadata())), "model"),
        "gated_no_b_dec_in": (GatedSAE(GatedSAEConfig(**base, apply_b_dec_to_input=False, **_metadata())), "model"),
        "gated_training": (GatedTrainingSAE(GatedTrainingSAEConfig(**base, **_metadata())), "model"),
    }
    g = torch.Generator().manual_seed(123)
    x = torch.randn(32, D_IN, generator=g) * 2 + 0.5
    expected = {"x": x}
    for i, (name, (sae, how)) in enumerate(variants.items()):
        _randomise(sae, seed=i)
        if name.startswith("batchtopk"):
            sae.topk_threshold = torch.tensor(0.4, dtype=torch.double)
        folder = out / name
        (sae.save_inference_model if how == "inference" else sae.save_model)(folder)
        loaded = SAE.load_from_disk(folder)
        with torch.no_grad():
            f = loaded.encode(x)
            x_hat = loaded.decode(f)
        expected[f"{name}.feature_acts"] = f.contiguous()
        expected[f"{name}.x_hat"] = x_hat.contiguous()
        print(name, type(loaded).__name__, json.loads((folder / "cfg.json").read_text())["architecture"])
    save_file(expected, str(out / "expected.safetensors"))
    (out / "VERSION").write_text(f"sae-lens {sae_lens.__version__}, torch {torch.__version__}\n")


def check(folders: list[Path]) -> int:
    from sae_lens.saes.sae import SAE

    worst = 0.0
    for folder in folders:
        exp = load_file(str(folder / "glasshouse_expected.safetensors"))
        sae = SAE.load_from_disk(folder)
        with torch.no_grad():
            f = sae.encode(exp["x"])
            x_hat = sae.decode(f)
        df = float((f - exp["feature_acts"]).abs().max())
        dx = float((x_hat - exp["x_hat"]).abs().max())
        worst = max(worst, df, dx)
        print(json.dumps({"folder": str(folder), "saelens_class": type(sae).__name__,
                          "max_abs_diff_feature_acts": df, "max_abs_diff_x_hat": dx,
                          "l0": float((f > 0).sum(-1).float().mean())}))
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "make":
        make(Path(sys.argv[2]))
    elif len(sys.argv) >= 3 and sys.argv[1] == "check":
        sys.exit(check([Path(p) for p in sys.argv[2:]]))
    else:
        print(__doc__)
        sys.exit(2)
