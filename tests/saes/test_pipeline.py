"""saes.pipeline.train_sae against saes.trainer.train called by hand, and its sparsity rule.

Each pipeline run is compared with a TrainConfig written out here field by field (the rule the CLI had
in app/commands/sae.py run_train) trained by saes.trainer.train on the same activations: the configs and
every weight must be equal. The CLI case runs `glasshouse sae train` on the embedded model (the shared
`smollm` fixture) and retrains from its activation cache by hand.
"""

from __future__ import annotations

import json

import pytest
import torch

from probes.errors import InputError
from probes.progress import Reporter
from saes.activation_store import CachedActivations, TensorSource
from saes.pipeline import SAESpec, sae_fields, sparsity_fields, train_sae
from saes.trainer import TrainConfig, load_checkpoint, train


def activations(n: int = 1280, d: int = 8, seed: int = 0) -> torch.Tensor:
    """Sparse codes over 24 random directions plus noise: a tiny stand-in for a model's activations."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(24, d, generator=g)
    codes = torch.rand(n, 24, generator=g) * (torch.rand(n, 24, generator=g) < 0.1)
    return codes @ basis + 0.01 * torch.randn(n, d, generator=g)


SCHEDULE = {"lr": 3e-3, "warmup_steps": 3, "dead_window_tokens": 256, "log_every": 2, "checkpoint_every": 5,
            "progress": False}


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name, value in sa.items():
        assert torch.equal(value, sb[name]), name


@pytest.mark.parametrize(("arch", "sparsity", "expected"), [
    ("topk", None, {}),
    ("standard", None, {"target_l0": 3.0}),
    ("jumprelu", None, {"target_l0": 3.0}),
    ("standard", 0.7, {"l1_coefficient": 0.7}),
    ("jumprelu", 0.7, {"l0_coefficient": 0.7}),
])
def test_pipeline_equals_trainer_with_hand_built_config(tmp_path, arch, sparsity, expected):
    x = activations()
    spec = SAESpec(arch, d_sae=32, k=3, hook_name="blocks.0.hook_resid_post", model_name="tiny", seed=5,
                   sparsity=sparsity)
    run = train_sae(x, spec, batch_size=64, out_dir=tmp_path / "pipeline", **SCHEDULE)
    by_hand = TrainConfig(sae={"architecture": arch, "d_in": 8, "d_sae": 32, "k": 3,
                               "hook_name": "blocks.0.hook_resid_post", "model_name": "tiny", "seed": 5, **expected},
                          total_tokens=1280, batch_size=64, seed=5, out_dir=str(tmp_path / "hand"), **SCHEDULE)
    ref = train(by_hand, TensorSource(x))
    assert {**run.config.to_dict(), "out_dir": by_hand.out_dir} == by_hand.to_dict()
    assert run.result.steps == ref.steps == 20 and (tmp_path / "pipeline" / "sae" / "cfg.json").exists()
    assert_same_weights(run.sae, ref.sae)
    if arch != "topk":  # the rule reached the SAE: steered to L0 = k, or the given coefficient
        coefficient = "l1_coefficient" if arch == "standard" else "l0_coefficient"
        assert run.sae.cfg.target_l0 == (3.0 if sparsity is None else None)
        assert getattr(run.sae.cfg, coefficient) == (sparsity if sparsity is not None else
                                                     getattr(ref.sae.cfg, coefficient))


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "mutual_choice", "feature_choice"])
def test_sparsity_is_refused_for_the_topk_family_before_gathering(arch):
    spec = SAESpec(arch, 32, 3, "blocks.0.hook_resid_post", "tiny", sparsity=0.5)
    with pytest.raises(InputError, match=f"--sparsity applies to gated, jumprelu, jumprelu_transcoder and standard; {arch} sets its sparsity"):
        sparsity_fields(spec)

    def gather(reporter):
        raise AssertionError("gathered before the sparsity was checked")

    with pytest.raises(InputError, match="--sparsity"):
        train_sae(gather, spec, batch_size=64, progress=False)


def test_steer_l0_false_keeps_the_fixed_coefficient():
    for arch in ("standard", "jumprelu", "topk"):
        assert sparsity_fields(SAESpec(arch, 32, 3, "h", "m", steer_l0=False)) == {}
    fields = sae_fields(SAESpec("standard", 32, 4, "blocks.1.hook_resid_post", "m", seed=2), d_in=8)
    assert fields == {"architecture": "standard", "d_in": 8, "d_sae": 32, "k": 4,
                      "hook_name": "blocks.1.hook_resid_post", "model_name": "m", "seed": 2, "target_l0": 4.0}


class Recorder(Reporter):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[float] = []

    def show(self) -> None:
        self.seen.append(self.fraction)


def test_gather_gets_the_first_part_of_the_bar_and_the_temporary_folder_goes(tmp_path):
    x = activations()
    rep = Recorder()
    calls = []

    def gather(reporter):
        calls.append(reporter)
        reporter.update("gathering", 1, 2)
        assert rep.fraction == pytest.approx(0.25 * 0.5)
        reporter.update("gathered", 2, 2)
        return x

    spec = SAESpec("topk", 32, 3, "blocks.0.hook_resid_post", "tiny", seed=1)
    run = train_sae(gather, spec, batch_size=64, total_tokens=640, reporter=rep, gather_share=0.25, **SCHEDULE)
    assert len(calls) == 1 and rep.seen[:2] == pytest.approx([0.125, 0.25])
    assert rep.seen == sorted(rep.seen) and rep.fraction == 1.0 and len(rep.seen) > 10  # training moved it on
    assert not run.result.out_dir.exists() and run.result.steps == 10  # total_tokens 640 / batch 64
    ref = train(TrainConfig(sae=sae_fields(spec, 8), total_tokens=640, batch_size=64, seed=1,
                            out_dir=str(tmp_path), **SCHEDULE), TensorSource(x))
    assert_same_weights(run.sae, ref.sae)


@pytest.mark.parametrize("extra", [["--arch", "standard"], ["--arch", "jumprelu", "--sparsity", "0.5"]])
def test_cli_train_equals_trainer_on_its_cache(smollm, tmp_path, monkeypatch, extra):
    import app.commands.sae as sae_cmd
    from app.cli import main

    monkeypatch.setattr(sae_cmd, "load_from_args", lambda args: smollm)
    arch, out, hook = extra[1], tmp_path / "run", "blocks.1.hook_resid_post"
    assert main(["sae", "train", *extra, "--hook", hook, "--d-sae", "48", "--k", "6", "--tokens", "700", "--batch",
                 "128", "--context-length", "16", "--checkpoint-every", "2", "--seed", "4", "--out", str(out)]) == 0
    cache = CachedActivations(out / "activations")
    assert len(cache) == 700 and cache.hook_name == hook
    rule = {"target_l0": 6.0} if len(extra) == 2 else {"l0_coefficient": 0.5}
    cfg = TrainConfig(sae={"architecture": arch, "d_in": cache.d_in, "d_sae": 48, "k": 6, "hook_name": hook,
                           "model_name": "smollm2-135m", "seed": 4, **rule},
                      total_tokens=700, batch_size=128, lr=2e-3, seed=4, out_dir=str(tmp_path / "hand"),
                      checkpoint_every=2, device="cpu", progress=False)
    ref = train(cfg, TensorSource(cache.rows(0, 700)))
    saved = json.loads((out / arch / "sae_train.json").read_text())
    assert saved["settings"] == json.loads(json.dumps({**cfg.to_dict(), "out_dir": str(out / arch), "progress": True}))
    assert saved["steps"] == ref.steps == 5 and saved["tokens"] == 640
    state = load_checkpoint(out / arch / "checkpoint.pt")["sae_state"]
    assert state.keys() == ref.sae.state_dict().keys()
    for name, value in ref.sae.state_dict().items():
        assert torch.equal(state[name], value), name
