"""Many SAEs from one pass over the model: several hook points, several widths or architectures at once
(docs/saes.md, "Many SAEs from one pass"; docs/methods/saes.md).

`train_many(model, specs, ids)` runs the model once per batch of windows with a hook on every distinct hook
point the specs name (`activations_at`), keeps each hook's activations (position 0 left out, as every SAE
here skips it), and then trains each spec on its own hook's rows through saes.pipeline.train_sae, the one
training pipeline: SAEs at the same hook (two widths, TopK beside BatchTopK) share one copy of the activations.
Each SAE is the one `train_sae` would train on activations collected for it alone (tested: equal weights).
A transcoder spec (hook_name_out set) gets both of its hooks from the same pass, as rows [input | target].

Unlike SAELens's multi-SAE runner, which steps every SAE on each streamed batch, the activations are
gathered first and held in memory ([tokens, d_in] float32 per hook: 65,536 tokens of SmolLM2's residual
stream are 151 MB), then the SAEs train one after another; for more tokens than memory holds, cache each
hook with saes.activation_store.cache_activations and train from the caches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from probes.errors import InputError
from probes.progress import NullReporter, Reporter

if TYPE_CHECKING:
    from jaxtyping import Float, Int
    from torch import Tensor

    from saes.pipeline import SAESpec, TrainedSAE


class _AllCaught(Exception):
    """Raised by the last hook to fire: the rest of the forward pass is not needed."""


def activations_at(model: Any, hook_names: Sequence[str], ids: Int[Tensor, "batch pos"]
                   ) -> dict[str, Float[Tensor, "batch pos d_in"]]:
    """The activations at every hook in `hook_names` from ONE forward pass over `ids` (stopped once the last of
    them has fired)."""
    wanted = list(dict.fromkeys(hook_names))
    got: dict[str, Tensor] = {}

    def grabber(name: str) -> Any:  # by the name asked for: the bridge's hook may carry its canonical name
        def grab(act: Tensor, hook: Any) -> None:
            got[name] = act.detach().float().cpu()
            if len(got) == len(wanted):
                raise _AllCaught

        return grab

    try:
        model.run_with_hooks(ids, fwd_hooks=[(name, grabber(name)) for name in wanted])
    except _AllCaught:
        pass
    missing = [name for name in wanted if name not in got]
    if missing:
        raise InputError(f"The hooks {missing} did not fire; check the hook names (e.g. blocks.6.hook_resid_post).")
    return got


def window_rows(model: Any, hook_names: Sequence[str], ids: Int[Tensor, "n pos"], start: int = 1, batch: int = 8,
                reporter: Reporter | None = None) -> dict[str, Float[Tensor, "tokens d_in"]]:
    """Rows [n * (pos - start), d_in] per hook, `batch` windows per forward pass, one pass for all hooks
    (saes.activation_store.window_activations for several hooks at once)."""
    import torch

    rep = reporter or NullReporter()
    parts: dict[str, list[Tensor]] = {name: [] for name in dict.fromkeys(hook_names)}
    unknown = [name for name in parts if name not in set(model.hook_names())]
    if unknown:
        raise InputError(f"The model has no hook {unknown}; hook names look like blocks.6.hook_resid_post.")
    n = int(ids.shape[0])
    for i in range(0, n, batch):
        rep.check()
        for name, act in activations_at(model, list(parts), ids[i : i + batch]).items():
            parts[name].append(act[:, start:].reshape(-1, act.shape[-1]))
        done = min(n, i + batch)
        rep.update(f"activations at {len(parts)} hook(s): window {done} of {n}", done, n)
    return {name: torch.cat(rows) for name, rows in parts.items()}


def train_many(model: Any, specs: Sequence[SAESpec], ids: Int[Tensor, "n pos"], *, batch_size: int,
               total_tokens: int | None = None, reporter: Reporter | None = None, forward_batch: int = 8,
               **train_fields: Any) -> list[TrainedSAE]:
    """One SAE per spec (in order), all from one pass over `ids` (module docstring). The arguments after the
    specs are saes.pipeline.train_sae's, the same for every SAE; reporter: the pass, then one share per SAE."""
    from saes.activation_store import check_hook
    from saes.pipeline import sparsity_fields, train_sae

    if not specs:
        raise InputError("Give at least one SAE spec to train.")
    for spec in specs:  # every refusal before the model runs
        spec.check()
        check_hook(model, spec.hook_name)
        if spec.hook_name_out:
            check_hook(model, spec.hook_name_out)
        sparsity_fields(spec)
    rep = reporter or NullReporter()
    share = 0.2
    rows = window_rows(model, [h for s in specs for h in s.hooks], ids, batch=forward_batch,
                       reporter=rep.part(0.0, share))
    step = (1.0 - share) / len(specs)
    return [train_sae(side_by_side(rows, spec.hooks), with_width(rows, spec), batch_size=batch_size,
                      total_tokens=total_tokens, reporter=rep.part(share + i * step, share + (i + 1) * step),
                      **train_fields)
            for i, spec in enumerate(specs)]


def side_by_side(acts: dict[str, Tensor], hooks: Sequence[str]) -> Tensor:
    """The activations of `hooks` side by side: an SAE's rows (one hook), a transcoder's [input | target]
    (SAEConfig.hooks, SAESpec.hooks)."""
    import torch

    return torch.cat([acts[name] for name in hooks], dim=-1)


def with_width(rows: dict[str, Tensor], spec: SAESpec) -> SAESpec:
    """The spec with a transcoder's d_out read off its output hook's activations."""
    from dataclasses import replace

    return replace(spec, d_out=int(rows[spec.hook_name_out].shape[-1])) if spec.hook_name_out else spec
