"""Sparse autoencoders (docs/saes.md): architectures, training, evaluation, dashboards and the SAE kernels.

`saes.load_sae(source, model=None)` reads an SAE from a folder (ours, SAELens), Gemma Scope's params.npz or
hf://OWNER/REPO/PATH (saes/sources.py).
"""

from saes.sources import load_sae

__all__ = ["load_sae"]
