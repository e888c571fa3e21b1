"""What the hand-registered batch probes share: the BOS and batch-size settings and the corpus ids.

Spec: docs/batch.md. The declared analyses (probes.analysis: residual_norms, first_token_attention, ...)
join batch plans on their own (app/batch/registry.py builds their entries); the probes registered by hand
(app/batch/analyses.py, app/atlas/probes.py) use these.
"""

from __future__ import annotations

from app.batch.registry import Setting
from probes.analysis import corpus_ids

__all__ = ["BATCH", "BOS", "corpus_ids"]

BOS = Setting(bool, False, "put the tokenizer's BOS token before every corpus window")
BATCH = Setting(int, 8, "sequences per forward pass", minimum=1)
