"""The model layer: load a model, run it with hooks, capture what it computes.

`load_model(spec)` (loading.py; specs in model_specs.py, the conversion cache in model_cache.py,
checks before loading in preflight.py) returns a `HookedModel` (hooked_model.py) whose per-family
module paths live in architecture.py; nnsight_view.py is its nnsight view, capture.py its capture
layer, backends.py names where an analysis runs, kernels/ holds the attention kernels. Analyses
(the rest of probes/, circuits/, saes/) use HookedModel's methods and never reach past them
(docs/architecture.md).
"""
