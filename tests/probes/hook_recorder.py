"""Shared test helpers: forward hooks that keep a copy of what a TransformerLens hook point sees, and a call
counter for a function a run should (or should not) reach."""

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


def count_calls(monkeypatch: Any, owner: Any, name: str) -> list[int]:
    """Replace owner.name by a wrapper that still calls it and appends 1 to the returned list on each call."""
    calls: list[int] = []
    real = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls
