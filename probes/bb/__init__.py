"""The Bigram-Backcopy (BB) toy lab: a task, a model, a trainer and measurements where attention sinks form.

Spec: docs/methods/extreme-tokens.md, "The Bigram-Backcopy (BB) task"; usage in docs/bb_lab.md.
Modules: data (task and generator), model (BBModel), train (trainer), measure (per-step measures),
checkpoint (OPT checkpoints that probes.load_model loads), evaluate (a checkpoint's measures).
"""
