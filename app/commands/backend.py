"""`--backend local|ndif|ndif-local` for the analysis commands (not a command itself: no `register`).

Spec: docs/remote.md. A command adds the option with `add_backend_arg(parser)` and, first
thing in its `run`, hands a remote backend over with `if is_remote(args): return run_remote(args, NAME)`.
The remote runs compute what the local command computes where a remote version exists (probes/
remote_analyses.py) and write the same JSON and figures; what stays local-only is said on the console.
"""

from __future__ import annotations

import argparse
from typing import Any

from probes.model.backends import BACKENDS, open_model, remote_arg


def add_backend_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=BACKENDS, default="local",
                        help="local (default); ndif: run on NDIF with a hub model id, only statistics come back "
                             "(key from nnsight's config); ndif-local: nnsight's serverless simulation of that path")
    parser.add_argument("--layers", default=None,
                        help="remote backends: comma-separated layers to measure (default all; fewer layers, "
                             "smaller responses)")


def is_remote(args: argparse.Namespace) -> bool:
    return getattr(args, "backend", "local") != "local"


def open_remote(args: argparse.Namespace) -> Any:
    """A RemoteModel for the command's --model: checked (hub id, key) before anything is loaded or sent."""
    from probes.remote_analyses import RemoteModel

    return RemoteModel(open_model(args.model, args.backend, device=args.device, dtype=args.dtype), spec=args.model)


def _seq_len(args: argparse.Namespace) -> int:
    return int(getattr(args, "seq_len", None) or args.T)


def _names(value: Any) -> tuple[str, ...]:
    """A comma-separated string or an already parsed list of names."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(r).strip() for r in items if str(r).strip())


def _layers(args: argparse.Namespace) -> list[int] | None:
    text = getattr(args, "layers", None)
    return [int(x) for x in text.split(",") if x.strip()] if text else None


def run_remote(args: argparse.Namespace, command: str) -> int:
    """Run `command` (sinks | dormant | extreme | successor) on the remote backend named by args.backend."""
    runners = {"sinks": _sinks, "dormant": _dormant, "extreme": _extreme, "successor": _successor}
    model = open_remote(args)
    return runners[command](args, model, remote_arg(args.backend))


def _write(args: argparse.Namespace, command: str, result: Any, figures: dict[str, Any]) -> None:
    from app.commands._common import output_dir, write_outputs

    out = output_dir(args, command)
    write_outputs(out, command, result, figures)
    print(f"wrote {out} (backend {args.backend})")


def _sinks(args: argparse.Namespace, model: Any, remote: bool | str) -> int:
    from app.figures.registry import draw
    from probes.hidden_sinks import hidden_sinks_from_alpha
    from probes.remote_analyses import remote_sinks
    from probes.sinks import inputs_for_regime

    want_bos = model.facts.prepends_bos if args.prepend_bos is None else bool(args.prepend_bos)
    regimes = _names(args.regimes)
    results = {}
    for r in regimes:
        ids = inputs_for_regime(model, r, args.n, _seq_len(args), seed=args.seed, prepend_bos=want_bos)
        results[r] = remote_sinks(model, ids, eps=args.eps, prepend_bos=want_bos, regime=r,
                                  batch_size=args.batch_size, layers=_layers(args), remote=remote)
    bundle: dict[str, Any] = {"kind": "sinks", "regimes": {r: res.to_dict() for r, res in results.items()},
                              "sink1": {r: res.sink1 for r, res in results.items()}}
    if args.interventions and "natural" in results:
        nat = results["natural"]
        bundle["interventions"] = {"hidden_sinks": hidden_sinks_from_alpha(nat.alpha, nat.str_tokens, min_queries=8).to_dict()}
        print("remote backend: hidden sinks detected on the natural regime; calibration and first-token scaling "
              "run with --backend local only")
    _write(args, "sinks", bundle, draw(bundle))
    for r, res in results.items():
        print(f"Sink_1^{args.eps} {r:<8} {res.sink1:6.2f}%  (n={res.alpha.shape[0]}, T={res.T})")
    return 0


def _dormant(args: argparse.Namespace, model: Any, remote: bool | str) -> int:
    from probes.dormant import rank_by_gap
    from probes.remote_analyses import remote_dormancy_by_domain

    stats = remote_dormancy_by_domain(model, n=args.n, T=_seq_len(args), seed=args.seed, prepend_bos=args.prepend_bos,
                                      layers=_layers(args), remote=remote)
    a, b = list(stats)
    diff = stats[a]["dormancy"] - stats[b]["dormancy"]
    order = rank_by_gap(diff)[: args.top]
    n_heads = diff.shape[1]
    chosen = model.check_layers(_layers(args))
    top = [{"layer": chosen[i // n_heads], "head": i % n_heads, a: float(stats[a]["dormancy"].flatten()[i]),
            b: float(stats[b]["dormancy"].flatten()[i]), "difference": float(diff.flatten()[i])} for i in order]
    _write(args, "dormant", {"domains": [a, b], "statistics": stats, "top": top, "layers": _layers(args)}, {})
    print("remote backend: dormancy and entropies per domain; head ablations run with --backend local only")
    for row in top:
        print(f"L{row['layer']}H{row['head']}: {a} {row[a]:.3f}  {b} {row[b]:.3f}")
    return 0


def _extreme(args: argparse.Namespace, model: Any, remote: bool | str) -> int:
    from app.figures.registry import draw
    from probes.remote_analyses import remote_extreme_tokens, remote_peak_ablation
    from probes.sinks import inputs_for_regime

    if args.prompt:
        ids = model.tokens_from_ids([model.tokenizer(args.prompt, add_special_tokens=False).input_ids]).ids
    else:
        ids = inputs_for_regime(model, "natural", args.n, _seq_len(args), seed=args.seed, prepend_bos=args.prepend_bos)
    res = remote_extreme_tokens(model, ids, layers=_layers(args), remote=remote)
    layers = args.ablate_layers
    if isinstance(layers, str):
        layers = [int(x) for x in layers.split(",") if x.strip()]
    ablation = remote_peak_ablation(model, ids[:4], layers=layers, remote=remote)
    bundle = {"kind": "extreme", "measurements": res.to_dict(), "ablation": ablation.to_dict()}
    _write(args, "extreme", bundle, draw(bundle))
    for row in ablation.rows:
        print(f"  zero {row['component']:<4} L{row['layer']}: first-token norm at layer {ablation.measure_layer} = "
              f"{row['sink']:.1f} (clean {float(ablation.clean_sink[ablation.measure_layer]):.1f})")
    return 0


def _successor(args: argparse.Namespace, model: Any, remote: bool | str) -> int:
    from app.figures.registry import draw
    from probes.remote_analyses import remote_in_context_scores

    n_prompts = getattr(args, "max_prompts", None) or args.n
    ic = remote_in_context_scores(model, max_prompts=n_prompts, layers=_layers(args), remote=remote)
    icd = ic.to_dict()
    bundle = {"kind": "successor", "in_context": icd}
    _write(args, "successor", bundle, draw(bundle))
    top = ic.ranking(1)[0]
    top["layer"] = model.check_layers(_layers(args))[top["layer"]]
    print(f"in-context top head L{top['layer']}H{top['head']} mean DLA {top['mean_dla']:.3f} logits "
          "(remote backend: the first-order OV score reads weights and runs with --backend local)")
    return 0
