"""A toy task on random token ids for the tiny models."""

from __future__ import annotations

import torch

from circuits.schema import Schema
from circuits.tasks.base import TaskData


def toy_task(n: int = 6, length: int = 9, seed: int = 1) -> TaskData:
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(1, 60, (n, length), generator=g).tolist()
    corr = [list(r) for r in clean]
    for r in corr:
        r[2] = (r[2] + 7) % 59 + 1
        r[5] = (r[5] + 3) % 59 + 1
    return TaskData("toy", Schema(("a", "b", "c", "end")), "logit_diff", clean, corr, [[0, 2, 4, length - 1]] * n,
                    [[3, 5]] * n, [[1.0, -1.0]] * n)
