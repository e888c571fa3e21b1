"""One loaded model, many callers: hooked analyses run at once from threads give their serial results.

Contract: probes/model/hooked_model.py's docstring and docs/concurrency.md. Every analysis below attaches
hooks to (or runs modules of) the one shared model; run concurrently, each must return exactly
(torch.equal) what it returned alone. The session's models are built with GLASSHOUSE_CHECK_ISOLATION=1
(tests/conftest.py), so a module run outside the lock during another thread's run raises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import Tensor

from circuits.forward import GraphForward
from probes.dormant import ablation_hooks, head_statistics
from probes.errors import IsolationError
from probes.extreme import measure_batch, zero_hooks
from probes.hidden_sinks import scaling_hooks
from probes.model.capture import capture
from probes.remote import residual_norms
from probes.sinks import alpha_for_batch
from probes.successor.in_context import run_last_position
from probes.successor.ov import DEFAULT_SETTINGS, head_outputs, mlp0_of_tokens
from saes.activation_store import hook_activations

PROMPTS = [
    "The days of the week are Monday, Tuesday, Wednesday, Thursday,",
    "def add(a, b):\n    return a + b\n\nprint(add(1, 2))",
    "One, two, three, four, five, six, seven,",
    "The capital of France is Paris, and the capital of Italy is",
]


def _ids(model, i: int, T: int = 12) -> Tensor:
    rows = [model.to_tokens(PROMPTS[(i + j) % len(PROMPTS)]).ids[0, :T] for j in range(2)]
    return torch.stack(rows)


def _analyses(model) -> dict[str, Callable[[], object]]:
    """Different hooked analyses, each returning tensors (or dicts of them) to compare exactly."""
    gf = GraphForward(model)
    return {
        "sinks": lambda: alpha_for_batch(model, _ids(model, 0)),
        "dormant+ablation": lambda: (
            head_statistics(model, _ids(model, 1))["dormancy"],
            model.loss_per_token(_ids(model, 1), fwd_hooks=ablation_hooks(model, 5, 2, "zero_out_attn")),
        ),
        "extreme+mlp-zero": lambda: measure_batch(model, _ids(model, 2), zero_hooks(model, "mlp", [3])),
        "sae-activations": lambda: hook_activations(model, "blocks.6.hook_resid_post", _ids(model, 3)),
        "capture": lambda: capture(model, PROMPTS[:2], what=["pattern", "resid_post", "logits"], layers=[2]).tensors,
        "nnsight-trace": lambda: residual_norms(model.nnsight, _ids(model, 0)),
        "circuit-graph": lambda: gf.run(gf.embed(_ids(model, 1))).logits,
        "successor-in-context": lambda: run_last_position(model, _ids(model, 2).tolist()),
        "successor-ov": lambda: head_outputs(model, mlp0_of_tokens(model, [10, 20, 30])[None], DEFAULT_SETTINGS,
                                             layers=[0]),
        "hidden-sink-scaling": lambda: model.loss_per_token(_ids(model, 3),
                                                            fwd_hooks=scaling_hooks(model, [(4, 1)], 0.5)),
        "tl-hooks-block": lambda: _tl_hooks_block(model),
    }


def _tl_hooks_block(model) -> Tensor:
    def halve(x: Tensor, hook: object) -> Tensor:
        return x * 0.5

    with model.tl.hooks(fwd_hooks=[("blocks.2.hook_resid_post", halve)]):
        return model.tl(_ids(model, 0))


def _equal(a: object, b: object) -> bool:
    if isinstance(a, Tensor):  # bitwise equal, NaN where NaN
        return isinstance(b, Tensor) and a.shape == b.shape and torch.equal(a.isnan(), b.isnan()) \
            and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, tuple | list):
        return isinstance(b, tuple | list) and len(a) == len(b) and all(map(_equal, a, b))
    return a == b


def _no_hooks_left(model) -> bool:
    return all(not hp._forward_hooks for hp in model.bridge.hook_dict.values())


def test_concurrent_hooked_analyses_equal_serial(smollm):
    analyses = _analyses(smollm)
    serial = {name: run() for name, run in analyses.items()}
    jobs = [name for _ in range(2) for name in analyses]  # every analysis twice, all at once
    for _round in range(1):
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda name: (name, analyses[name]()), jobs))
        for name, got in results:
            assert _equal(got, serial[name]), f"{name} differs when run concurrently with other analyses"
    assert _no_hooks_left(smollm)


def test_hooks_come_off_when_a_run_raises(smollm):
    ids = _ids(smollm, 0)
    clean = smollm.forward(ids)

    def boom(x: Tensor, hook: object) -> Tensor:
        raise RuntimeError("hook failed")

    with pytest.raises(RuntimeError, match="hook failed"):
        smollm.run_with_hooks(ids, fwd_hooks=[("blocks.1.hook_resid_post", boom)])
    with pytest.raises(KeyboardInterrupt):
        smollm.run_with_hooks(ids, fwd_hooks=[("blocks.1.hook_resid_post", _interrupt)])
    assert _no_hooks_left(smollm)
    assert torch.equal(smollm.forward(ids), clean)


def _interrupt(x: Tensor, hook: object) -> Tensor:
    raise KeyboardInterrupt


def test_a_run_waits_for_another_threads_hooks_block(smollm):
    """A forward started while another thread is inside `model.tl.hooks(...)` waits, and is clean."""
    ids = _ids(smollm, 1)
    clean = smollm.forward(ids)
    inside, release = threading.Event(), threading.Event()

    def holder() -> None:
        with smollm.tl.hooks(fwd_hooks=[("blocks.0.hook_resid_post", lambda x, hook: x * 0)]):
            inside.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    assert inside.wait(30)
    got: dict[str, Tensor] = {}
    runner = threading.Thread(target=lambda: got.setdefault("logits", smollm.forward(ids)))
    runner.start()
    runner.join(0.5)
    assert runner.is_alive(), "the forward ran while another thread's hooks were attached"
    release.set()
    t.join(30)
    runner.join(60)
    assert torch.equal(got["logits"], clean)


def test_unlocked_module_run_during_another_run_is_refused(smollm):
    """The isolation check: a module called directly while another thread holds the model raises."""
    inside, release = threading.Event(), threading.Event()

    def holder() -> None:
        with smollm.exclusive():
            inside.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert inside.wait(30)
        norm = smollm.adapter.final_norm()
        with pytest.raises(IsolationError, match="exclusive"):
            norm(torch.ones(1, 2, smollm.facts.d_model))
    finally:
        release.set()
        t.join(30)
    # Alone, the same direct call is allowed.
    assert norm(torch.ones(1, 2, smollm.facts.d_model)).shape == (1, 2, smollm.facts.d_model)
