"""saes.multi: several SAEs (two hooks, two widths at one hook) from one pass over the model.

Checked against the one-hook path: the rows per hook equal saes.activation_store.window_activations's
exactly, the pass runs the model once per batch of windows for all hooks together (counted), and every SAE
equals the one saes.pipeline.train_sae trains on activations collected for it alone (equal weights).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from probes.corpus import sample
from probes.errors import InputError
from saes.activation_store import window_activations
from saes.multi import train_many, window_rows
from saes.pipeline import SAESpec, train_sae

HOOKS = ("blocks.1.hook_resid_post", "blocks.3.hook_resid_post")
TRAIN = {"batch_size": 16, "total_tokens": 64, "progress": False}


@pytest.fixture(scope="module")
def ids(smollm: Any) -> torch.Tensor:
    return sample("prose", 4, 16, smollm.tokenizer, seed=0).ids


def count_forwards(model: Any, monkeypatch: Any) -> list[int]:
    calls: list[int] = []
    original = model.run_with_hooks

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "run_with_hooks", counted)
    return calls


def test_one_pass_gives_every_hooks_rows(smollm: Any, ids: torch.Tensor, monkeypatch: Any) -> None:
    expected = {hook: window_activations(smollm, hook, ids, batch=2) for hook in HOOKS}
    calls = count_forwards(smollm, monkeypatch)
    rows = window_rows(smollm, [*HOOKS, HOOKS[0]], ids, batch=2)
    assert len(calls) == 2  # 4 windows, 2 per pass, both hooks in each pass
    assert list(rows) == list(HOOKS)
    for hook in HOOKS:
        assert torch.equal(rows[hook], expected[hook]), hook
    with pytest.raises(InputError, match="no hook"):
        window_rows(smollm, ["blocks.1.hook_nothing"], ids)


def test_each_sae_equals_the_one_trained_alone(smollm: Any, ids: torch.Tensor) -> None:
    specs = [SAESpec("topk", 32, 4, HOOKS[0], "smollm2-135m", seed=1),
             SAESpec("topk", 64, 4, HOOKS[0], "smollm2-135m", seed=2),
             SAESpec("batchtopk", 32, 4, HOOKS[1], "smollm2-135m", seed=3)]
    together = train_many(smollm, specs, ids, **TRAIN)
    assert [t.sae.cfg.d_sae for t in together] == [32, 64, 32]
    for spec, trained in zip(specs, together, strict=True):
        alone = train_sae(window_activations(smollm, spec.hook_name, ids), spec, **TRAIN)
        assert trained.config.sae == alone.config.sae
        for name, tensor in alone.sae.state_dict().items():
            assert torch.equal(trained.sae.state_dict()[name], tensor), (spec, name)


def test_bad_specs_are_refused_before_the_pass(smollm: Any, ids: torch.Tensor, monkeypatch: Any) -> None:
    with pytest.raises(InputError, match="at least one"):
        train_many(smollm, [], ids, **TRAIN)
    with pytest.raises(InputError, match="no hook"):
        train_many(smollm, [SAESpec("topk", 8, 2, "blocks.99.hook_resid_post", "m")], ids, **TRAIN)
    calls = count_forwards(smollm, monkeypatch)
    with pytest.raises(InputError, match="--sparsity applies to"):
        train_many(smollm, [SAESpec("topk", 8, 2, HOOKS[0], "m"), SAESpec("topk", 8, 2, HOOKS[1], "m", sparsity=1.0)],
                   ids, **TRAIN)
    assert len(calls) == 2  # the two hook checks' tiny passes; the collection never started
