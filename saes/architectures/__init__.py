"""One file per SAE architecture; importing this package registers them all (saes/registry.py)."""

from saes.architectures import (
    batchtopk,
    feature_choice,
    gated,
    jumprelu,
    matryoshka,
    mutual_choice,
    standard,
    topk,
    transcoder,
)

__all__ = ["batchtopk", "feature_choice", "gated", "jumprelu", "matryoshka", "mutual_choice", "standard", "topk", "transcoder"]
