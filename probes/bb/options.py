"""The BB lab's choices and sizes, importable without torch (the command line's parser needs them).

Spec: docs/methods/extreme-tokens.md, "The Bigram-Backcopy (BB) task". The same values as
probes.bb.data.SEQ_LEN, probes.bb.model.ATTENTIONS and probes.bb.train.OPTIMIZERS / PRESETS /
DEFAULT_PRESET, which import torch; tests/app/test_startup.py checks that they agree.
"""

from __future__ import annotations

SEQ_LEN = 257
ATTENTIONS = ("softmax", "relu")
OPTIMIZERS = ("adamw", "sgd")
PRESETS: dict[str, dict[str, int]] = {
    "cpu": {"d_model": 64, "seq_len": 65, "batch": 512, "steps": 2000, "eval_every": 100, "checkpoint_every": 500},
    "spec": {"d_model": 256, "seq_len": SEQ_LEN, "batch": 512, "steps": 10_000, "eval_every": 250,
             "checkpoint_every": 1000},
}
DEFAULT_PRESET = "cpu"
