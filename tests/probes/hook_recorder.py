"""Shared test helper: forward hooks that keep a copy of what a TransformerLens hook point sees."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def recorder(seen: dict[str, torch.Tensor]) -> Callable[[str], Callable[[torch.Tensor, Any], None]]:
    """keep = recorder(seen); keep("z") is a hook storing a detached copy of its input in seen["z"]."""

    def keep(name: str) -> Callable[[torch.Tensor, Any], None]:
        def fn(x: torch.Tensor, hook: Any) -> None:
            seen[name] = x.detach().clone()

        return fn

    return keep
