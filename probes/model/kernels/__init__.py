"""GPU kernels for the probes (attention statistics) and the backend dispatch shared with saes.kernels.

Spec: docs/methods/kernels.md. Every kernel has a torch reference with the same signature;
`resolve_backend` picks one (see probes/model/kernels/dispatch.py).
"""

from probes.model.kernels.dispatch import interpreting, resolve_backend, triton_importable

__all__ = ["interpreting", "resolve_backend", "triton_importable"]
