"""EAP with integrated gradients, input variant (Hanna et al. 2024; spec: circuits.md, "Scores").

The embeddings are interpolated, e_k = e_corr + (k/m)(e_clean - e_corr) for k = 0..m-1, the
gradients w.r.t. every edge's destination input are averaged over the m points and multiplied by
the activation difference (a_u(corrupted) - a_u(clean)). With m = 1 it is the gradient at the
corrupted input.
"""

from __future__ import annotations

from typing import Any

from circuits.eap import attribute
from circuits.scores import EdgeScores
from circuits.tasks.base import TaskData
from probes.errors import InputError
from probes.progress import Reporter


def eap_ig(model: Any, task: TaskData, steps: int = 5, batch_size: int = 8, progress: bool = False,
           reporter: Reporter | None = None) -> EdgeScores:
    """EAP-IG scores per span with `steps` interpolation points (m in the paper; 5 there)."""
    if steps < 1:
        raise InputError(f"EAP-IG needs at least one interpolation step (got {steps}).")

    def points(clean, corr):
        return [corr + (k / steps) * (clean - corr) for k in range(steps)]

    return attribute(model, task, points, f"eap_ig{steps}", batch_size, progress, reporter)
