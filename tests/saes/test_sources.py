"""saes.sources.load_sae: one entry point for our folders, SAELens folders, Gemma Scope's params.npz and hf://
sources, checked against the model by shape and by reconstruction before use.

Fixtures are written here in those layouts (no network: hf:// goes through a stand-in for
huggingface_hub.snapshot_download). The Gemma Scope SAE is checked against Gemma Scope's own formula written
out in plain torch (z = x W_enc + b_enc; f = z 1[z > threshold]; x_hat = f W_dec + b_dec) to 1e-5.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from probes.errors import CheckpointError, InputError
from saes import sources
from saes.sources import hook_from_path, load_sae, parse_hf

LAYER = 3
HOOK = f"blocks.{LAYER}.hook_resid_post"


def gemma_scope_formula(p: dict[str, np.ndarray], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    t = {k: torch.from_numpy(v).double() for k, v in p.items()}
    z = x.double() @ t["W_enc"] + t["b_enc"]
    f = z * (z > t["threshold"])
    return f, f @ t["W_dec"] + t["b_dec"]


def identity_params(d_in: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A JumpReLU SAE that reconstructs any x exactly (features relu(x - c) and relu(c - x)), with a b_dec c
    the encoder must not subtract itself (Gemma Scope's layout: it is folded into b_enc)."""
    g = np.random.default_rng(seed)
    c = g.normal(size=d_in).astype(np.float32)
    eye = np.eye(d_in, dtype=np.float32)
    w_enc = np.concatenate([eye, -eye], axis=1)
    return {"W_enc": w_enc, "b_enc": -(c @ w_enc), "W_dec": w_enc.T.copy(), "b_dec": c,
            "threshold": np.zeros(2 * d_in, dtype=np.float32)}


def random_params(d_in: int, d_sae: int, seed: int = 1) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    return {"W_enc": g.normal(size=(d_in, d_sae)).astype(np.float32) / np.sqrt(d_in),
            "b_enc": g.normal(size=d_sae).astype(np.float32) * 0.1,
            "W_dec": g.normal(size=(d_sae, d_in)).astype(np.float32) / np.sqrt(d_sae),
            "b_dec": g.normal(size=d_in).astype(np.float32),
            "threshold": np.abs(g.normal(size=d_sae)).astype(np.float32) * 0.1}


def write_scope(root: Path, repo: str, inner: str, params: dict[str, np.ndarray]) -> Path:
    folder = root / repo / inner
    folder.mkdir(parents=True)
    np.savez(folder / "params.npz", **params)
    return folder


def test_a_gemma_scope_sae_computes_gemma_scopes_formula(tmp_path: Path) -> None:
    p = random_params(16, 40)
    folder = write_scope(tmp_path, "gemma-scope-2b-pt-res", "layer_7/width_16k/average_l0_71", p)
    for source in (folder, folder / "params.npz"):
        sae = load_sae(source)
        assert sae.cfg.hook_name == "blocks.7.hook_resid_post" and (sae.cfg.d_in, sae.cfg.d_sae) == (16, 40)
        x = torch.randn(32, 16)
        f_ref, x_hat_ref = gemma_scope_formula(p, x)
        with torch.no_grad():
            f = sae.encode(x)
            assert torch.allclose(f.double(), f_ref, atol=1e-5)
            assert torch.allclose(sae.decode(f).double(), x_hat_ref, atol=1e-5)
            assert (f > 0).sum() > 0 and (f == 0).sum() > 0  # the thresholds cut some features, not all


def test_hooks_come_from_the_path_or_from_hook() -> None:
    assert hook_from_path("gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_71") == "blocks.20.hook_resid_post"
    assert hook_from_path("hf://google/gemma-scope-2b-pt-mlp/layer_4/width_65k/average_l0_9") == "blocks.4.hook_mlp_out"
    with pytest.raises(InputError, match="attention-output SAEs"):
        hook_from_path("gemma-scope-2b-pt-att/layer_4/width_16k/average_l0_9")
    with pytest.raises(InputError, match="--hook blocks"):
        hook_from_path("my_saes/layer_4/params.npz")  # no site
    with pytest.raises(InputError, match="the layer"):
        hook_from_path("x-res/width_16k/params.npz")
    assert parse_hf("hf://google/gemma-scope-2b-pt-res/layer_1/width_16k@abc") == (
        "google/gemma-scope-2b-pt-res", "layer_1/width_16k", "abc")
    with pytest.raises(InputError, match="hf://OWNER/REPO/PATH"):
        parse_hf("hf://google")


def test_checked_against_the_model_by_width_and_reconstruction(smollm: Any, tmp_path: Path) -> None:
    d = smollm.facts.d_model
    good = write_scope(tmp_path, "scope-res", f"layer_{LAYER}/width_1k/average_l0_10", identity_params(d))
    sae = load_sae(good, smollm)
    assert sae.cfg.hook_name == HOOK
    assert sources.check_reconstruction(sae, smollm, "x") < 1e-6  # the identity SAE reconstructs exactly
    noisy = write_scope(tmp_path, "noise-res", f"layer_{LAYER}/width_1k/average_l0_10", random_params(d, 64))
    with pytest.raises(InputError, match="FVU"):
        load_sae(noisy, smollm)
    assert load_sae(noisy, smollm, check=False).cfg.d_sae == 64
    narrow = write_scope(tmp_path, "narrow-res", f"layer_{LAYER}/width_1k/average_l0_10", random_params(d // 2, 8))
    with pytest.raises(InputError, match="d_in"):
        load_sae(narrow, smollm)
    unsaid = write_scope(tmp_path, "mine", "params_here", identity_params(d))
    with pytest.raises(InputError, match="--hook"):
        load_sae(unsaid, smollm)
    assert load_sae(unsaid, smollm, hook=HOOK).cfg.hook_name == HOOK


def test_hf_sources_fetch_only_their_path(smollm: Any, tmp_path: Path, monkeypatch: Any) -> None:
    import huggingface_hub

    d = smollm.facts.d_model
    cache = tmp_path / "cache"
    write_scope(cache, "snapshot", f"layer_{LAYER}/width_1k/average_l0_10", identity_params(d))
    calls: list[dict[str, Any]] = []

    def fake_download(**kwargs: Any) -> str:
        calls.append(kwargs)
        if kwargs["repo_id"] != "google/gemma-scope-test-res":
            raise huggingface_hub.errors.RepositoryNotFoundError("404 Not Found")
        return str(cache / "snapshot")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    sae = load_sae(f"hf://google/gemma-scope-test-res/layer_{LAYER}/width_1k/average_l0_10", smollm)
    assert sae.cfg.hook_name == HOOK
    assert calls[0]["allow_patterns"] == [f"layer_{LAYER}/width_1k/average_l0_10",
                                          f"layer_{LAYER}/width_1k/average_l0_10/*"]
    with pytest.raises(InputError, match="Cannot fetch hf://google/nope"):
        load_sae("hf://google/nope/layer_1")
    with pytest.raises(InputError, match="has no 'layer_9'"):
        load_sae("hf://google/gemma-scope-test-res/layer_9")


def test_saelens_and_our_folders_go_through_the_same_entry(smollm: Any, tmp_path: Path) -> None:
    from saes import registry
    from saes.saelens_io import save_sae

    sae = registry.build(registry.make_config("topk", d_in=smollm.facts.d_model, d_sae=32, k=4, hook_name=HOOK,
                                              model_name="smollm2-135m"))
    save_sae(sae, tmp_path / "ours")
    loaded = load_sae(tmp_path / "ours", smollm)  # ours: no reconstruction check (an untrained SAE would fail it)
    x = torch.randn(4, smollm.facts.d_model)
    with torch.no_grad():
        assert torch.allclose(loaded(x), sae.eval()(x), atol=1e-5)
    cfg = json.loads((tmp_path / "ours" / "cfg.json").read_text())
    for key in [k for k in cfg if k.startswith("glasshouse_")]:
        cfg.pop(key)
    (tmp_path / "ours" / "cfg.json").write_text(json.dumps(cfg))  # now a plain SAELens folder: checked
    with pytest.raises(InputError, match="FVU"):
        load_sae(tmp_path / "ours", smollm)
    with pytest.raises(InputError, match="cfg.json says so"):
        load_sae(tmp_path / "ours", hook="blocks.0.hook_resid_post")


def test_damaged_and_missing_sources_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such SAE"):
        load_sae(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no SAE found"):
        load_sae(tmp_path / "empty")
    p = random_params(8, 16)
    folder = write_scope(tmp_path, "x-res", "layer_1", {k: v for k, v in p.items() if k != "threshold"})
    with pytest.raises(CheckpointError, match="lacks \\['threshold'\\]"):
        load_sae(folder)
    bad = write_scope(tmp_path, "y-res", "layer_1", {**p, "W_dec": p["W_dec"][:, :4]})
    with pytest.raises(CheckpointError, match="W_dec has shape"):
        load_sae(bad)
    nan = write_scope(tmp_path, "z-res", "layer_1", {**p, "b_enc": np.full(16, np.nan, dtype=np.float32)})
    with pytest.raises(CheckpointError, match="NaN"):
        load_sae(nan)
    cut = write_scope(tmp_path, "w-res", "layer_1", p)
    data = (cut / "params.npz").read_bytes()
    (cut / "params.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_sae(cut)


def test_sae_eval_reads_a_gemma_scope_sae(smollm: Any, tmp_path: Path, capsys: Any) -> None:
    """`glasshouse sae eval` on a params.npz: --model is required (the files do not record it); the identity SAE
    reconstructs the model's activations exactly (FVU 0, explained variance 1)."""
    from app.cli import main

    folder = write_scope(tmp_path, "scope-res", f"layer_{LAYER}/width_1k/average_l0_10",
                         identity_params(smollm.facts.d_model))
    assert main(["sae", "eval", str(folder), "--n", "2", "--seq-len", "8", "--out", str(tmp_path / "e")]) == 2
    assert "pass --model" in capsys.readouterr().err
    assert main(["sae", "eval", str(folder), "--model", "smollm2-135m", "--n", "2", "--seq-len", "8",
                 "--out", str(tmp_path / "e")]) == 0
    saved = json.loads((tmp_path / "e" / "sae_eval.json").read_text())
    assert saved["sae_config"]["hook_name"] == HOOK
    assert saved["reconstruction"]["fvu"] == pytest.approx(0.0, abs=1e-6)
