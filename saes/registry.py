"""Architectures by name (docs/methods/saes.md; SAELens style).

A registry maps an architecture name to its SAE class and its config dataclass. A new variant is
one new file under saes/architectures/ that calls `register(...)` at import time and is listed
in saes/architectures/__init__.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probes.errors import InputError

if TYPE_CHECKING:
    from saes.base import SAE
    from saes.config import SAEConfig


@dataclass(frozen=True)
class Registered:
    name: str
    sae_class: type[SAE]
    config_class: type[SAEConfig]
    description: str


_REGISTRY: dict[str, Registered] = {}


def register(name: str, sae_class: type[SAE], config_class: type[SAEConfig], description: str = "") -> None:
    """Add an architecture under `name` (called by each architecture module)."""
    _REGISTRY[name] = Registered(name, sae_class, config_class, description)


def _load_all() -> None:
    import saes.architectures  # noqa: F401  (each module registers itself)


def names() -> list[str]:
    """Registered architecture names."""
    _load_all()
    return sorted(_REGISTRY)


def sae_names() -> list[str]:
    """The architectures that reconstruct their own hook (every one but the transcoders, which predict
    another hook and need their output hook named: saes/architectures/transcoder.py)."""
    return [name for name in names() if not name.endswith("_transcoder")]


def lookup(name: str) -> Registered:
    """The entry for `name`, or InputError naming the known architectures."""
    _load_all()
    if name not in _REGISTRY:
        raise InputError(f"Unknown SAE architecture '{name}'. Known architectures: {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[name]


def make_config(name: str, **fields: Any) -> SAEConfig:
    """The config dataclass of architecture `name`, filled with `fields` (unknown keys ignored)."""
    entry = lookup(name)
    return entry.config_class.from_dict({**fields, "architecture": name})


def build(cfg: SAEConfig) -> SAE:
    """A freshly initialised SAE for a config."""
    entry = lookup(cfg.architecture)
    if not isinstance(cfg, entry.config_class):
        cfg = entry.config_class.from_dict(cfg.to_dict())
    return entry.sae_class(cfg)
