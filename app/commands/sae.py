"""`glasshouse sae train|eval|dashboard`: sparse autoencoders on a model's activations (docs/saes.md)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.commands._common import (
    LazyChoices,
    add_option,
    analysis_parser,
    float_range,
    int_range,
    load_from_args,
    output_dir,
    prepared,
    write_outputs,
)

if TYPE_CHECKING:
    from torch import Tensor

    from probes.progress import Reporter


def _architectures() -> list[str]:
    from saes.registry import names

    return names()


def _domains() -> tuple[str, ...]:
    from probes.corpus import DOMAINS

    return DOMAINS


def register(subparsers: Any) -> None:
    sae = subparsers.add_parser("sae", help="train, evaluate and browse sparse autoencoders")
    sub = sae.add_subparsers(dest="sae_command", metavar="SAE_COMMAND")

    tr = analysis_parser(sub, "train", "train an SAE at a hook (resumes from a checkpoint in --out)")
    tr.add_argument("--arch", default="topk", choices=LazyChoices(_architectures), metavar="ARCH",
                    help="architecture: %(choices)s")
    tr.add_argument("--hook", default="blocks.6.hook_resid_post", type=_hook,
                    help="TransformerLens hook name (a transcoder's input, e.g. blocks.6.mlp.hook_in)")
    tr.add_argument("--hook-out", default=None, type=_hook,
                    help="a transcoder's output hook, e.g. blocks.6.hook_mlp_out (default: none, an SAE)")
    tr.add_argument("--skip", action="store_true", help="a transcoder's skip connection (default: none)")
    tr.add_argument("--d-sae", type=int_range(1), default=2304, help="dictionary size (features)")
    tr.add_argument("--k", type=int_range(1), default=32, help="active features per token (TopK family)")
    tr.add_argument("--tokens", type=int_range(1), default=65536, help="training tokens")
    add_option(tr, "--batch-size", aliases=("--batch",), dest="batch", type=int_range(1), default=1024,
               help="activations (tokens) per training step")
    tr.add_argument("--lr", type=float_range(0, lo_open=True), default=2e-3, help="peak learning rate")
    tr.add_argument("--cache", default=None, help="activation cache folder (default <out>/activations; built if missing)")
    tr.add_argument("--domains", nargs="+", default=["prose", "code"], choices=LazyChoices(_domains),
                    metavar="DOMAIN", help="corpus domains the activations come from: %(choices)s")
    add_option(tr, "--seq-len", aliases=("--context-length",), dest="context_length", type=int_range(2), default=128,
               help="tokens per corpus window when caching")
    tr.add_argument("--checkpoint-every", type=int_range(1), default=20,
                    help="steps between checkpoints (a killed run resumes from the last)")
    tr.add_argument("--sparsity", type=float_range(0, lo_open=True), default=None,
                    help="fixed sparsity coefficient: L1 for standard and gated, L0 for jumprelu "
                         "(default: steered to L0 = --k)")
    tr.set_defaults(func=_train)

    cfg_model = "model spec (default: the model_name in the SAE's cfg.json)"
    ev = analysis_parser(sub, "eval", "L0, FVU, CE loss recovered, dead/dense features of a saved SAE",
                         model_default=None, model_help=cfg_model)
    ev.add_argument("sae", help=SAE_HELP)
    _source_args(ev)
    _window_args(ev, n=16)
    ev.add_argument("--ablation", default="zero", choices=["zero", "mean"], help="the baseline CE loss recovered compares with")
    ev.set_defaults(func=_eval)

    da = analysis_parser(sub, "dashboard", "dashboard JSON for features, HTML for each",
                         model_default=None, model_help=cfg_model)
    da.add_argument("sae", help=SAE_HELP)
    _source_args(da)
    da.add_argument("--features", type=int_range(0), nargs="+", default=[0, 1, 2], help="feature indices")
    _window_args(da, n=32)
    da.set_defaults(func=_dashboard)
    sae.set_defaults(func=lambda args: sae.print_help() or 2)


SAE_HELP = ("the SAE: a folder (cfg.json + sae_weights.safetensors: ours or SAELens), Gemma Scope's params.npz (or "
            "its folder), or hf://OWNER/REPO/PATH on the hub (saes.sources)")


def _source_args(parser: argparse.ArgumentParser) -> None:
    """--hook (a Gemma Scope SAE whose path does not say its hook) and --no-check."""
    parser.add_argument("--hook", type=_hook, default=None,
                        help="the hook a Gemma Scope SAE reads (default: from its path, layer_<L> and -res / -mlp)")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip the check that the SAE reconstructs the model's activations (FVU < 1)")


def _window_args(parser: argparse.ArgumentParser, n: int) -> None:
    """eval and dashboard: --n corpus windows (into args.prompts) of --seq-len tokens (into args.length)."""
    add_option(parser, "--n", aliases=("--prompts",), dest="prompts", type=int_range(1), default=n,
               help="corpus windows (half prose, half code)")
    add_option(parser, "--seq-len", aliases=("--length",), dest="length", type=int_range(2), default=64,
               help="tokens per window")


def _hook(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][\w]*(\.[\w]+)*", text):
        raise argparse.ArgumentTypeError(f"is not a TransformerLens hook name like blocks.6.hook_resid_post: {text!r}")
    return text


def _train(args: argparse.Namespace) -> int:
    """Checks that need no model (sizes, the cache folder), then run_train holding the output folder."""
    from probes.errors import UsageError
    from saes.pipeline import COEFFICIENT, no_coefficient

    if args.sparsity is not None and args.arch not in COEFFICIENT:
        raise UsageError(no_coefficient(args.arch))
    from probes.errors import InputError
    from saes.pipeline import SAESpec

    try:  # a transcoder without --hook-out, or --hook-out / --skip on an SAE
        SAESpec(args.arch, args.d_sae, args.k, args.hook, args.model, hook_name_out=args.hook_out,
                skip=args.skip).check()
    except InputError as exc:
        raise UsageError(str(exc)) from exc
    if args.k > args.d_sae:
        raise UsageError(f"--k {args.k} exceeds --d-sae {args.d_sae}: a token cannot use more features than exist.")
    if args.tokens < args.batch:
        raise UsageError(f"--tokens ({args.tokens}) must be at least --batch-size ({args.batch}); raise --tokens "
                         "or lower --batch-size.")
    with prepared(args, "sae") as out:
        cache_dir = Path(args.cache) if args.cache else out / "activations"
        if (cache_dir / "meta.json").exists():
            from saes.activation_store import CachedActivations

            CachedActivations(cache_dir)  # a damaged cache is refused here, before the model loads
        return run_train(args)


def _eval(args: argparse.Namespace) -> int:
    _sae_folder(args)
    with prepared(args, "sae_eval"):
        return run_eval(args)


def _dashboard(args: argparse.Namespace) -> int:
    _sae_folder(args)
    with prepared(args, "sae_dashboard"):
        return run_dashboard(args)


def _sae_folder(args: argparse.Namespace) -> dict[str, Any]:
    """Check the SAE source before any model loads (an hf:// source is fetched into the hub cache first); fill
    --model from its cfg.json unless given. A Gemma Scope params file records no model: --model is required."""
    import json

    from probes.errors import CheckpointError, UsageError, advice, cause
    from saes.sources import native_file, resolve

    folder = resolve(args.sae)
    if native_file(folder) is not None:
        if args.model is None:
            raise UsageError(f"{args.sae} is a Gemma Scope SAE, whose files do not record the model; pass --model.")
        return {}
    cfg_path = folder / "cfg.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{args.sae} is not an SAE folder (no cfg.json). Give a folder written by `glasshouse sae "
                              "train` (its <out>/<arch>/sae), a SAELens SAE folder, a Gemma Scope params.npz, or "
                              "hf://OWNER/REPO/PATH.")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{cfg_path} cannot be read as JSON ({cause(exc)}). "
                              + advice(exc, damaged="The file is truncated or altered.")) from exc
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{cfg_path} holds no SAE config (a JSON object with d_in, d_sae, hook_name).")
    if args.model is None:
        if not cfg.get("model_name"):
            raise UsageError(f"{cfg_path} does not record its model; pass --model.")
        args.model = str(cfg["model_name"])
    d_sae = cfg.get("d_sae")
    bad = [f for f in getattr(args, "features", []) if f >= d_sae] if isinstance(d_sae, int) else []
    if bad and isinstance(d_sae, int):
        raise UsageError(f"--features {bad}: this SAE has features 0..{d_sae - 1}.")
    return cfg


def _ids(model: Any, n: int, length: int, seed: int) -> Any:
    import torch

    from probes.corpus import sample

    return torch.cat([sample(d, max(1, n // 2), length, model, seed=seed).ids for d in ("prose", "code")])


def run_train(args: argparse.Namespace) -> int:
    """saes.pipeline.train_sae on the first --tokens rows of the activation cache (built when missing), into
    <out>/<arch> (resumed from its checkpoint); writes sae_train.json and prints what this run did."""
    from probes.errors import InputError
    from probes.results import result_metadata
    from saes.pipeline import SAESpec, train_sae

    if args.tokens < args.batch:
        raise InputError(f"--tokens ({args.tokens}) must be at least --batch ({args.batch}); raise --tokens or lower --batch.")
    model = load_from_args(args)
    out = output_dir(args, "sae")
    cache_dir = Path(args.cache) if args.cache else out / "activations"
    hook_out = getattr(args, "hook_out", None)
    d_out = None
    if hook_out:
        from saes.activation_store import check_hook

        d_out = check_hook(model, hook_out)
    spec = SAESpec(args.arch, args.d_sae, args.k, args.hook, args.model, args.seed,
                   sparsity=getattr(args, "sparsity", None), hook_name_out=hook_out, d_out=d_out,
                   skip=getattr(args, "skip", False))
    # The SAE trains where the model runs (--device; default cuda when available).
    run = train_sae(lambda reporter: _cached_rows(args, model, cache_dir, reporter), spec, batch_size=args.batch,
                    out_dir=out / args.arch, lr=args.lr, checkpoint_every=getattr(args, "checkpoint_every", 20),
                    device=str(model.device))
    res = run.result
    last = _last_metrics(out / args.arch / "metrics.jsonl")
    result = {**result_metadata(model, run.config.to_dict(), args.seed), "sae_dir": str(out / args.arch / "sae"),
              "cache": str(cache_dir), "steps": res.steps, "tokens": res.tokens, "seconds": res.seconds,
              "resumed_from_step": res.resumed_from, "steps_this_run": res.steps_this_run,
              "tokens_this_run": res.tokens_this_run, "final_batch_metrics": last}
    write_outputs(out / args.arch, "sae_train", result, {})
    resumed = f" (resumed at step {res.resumed_from}; {res.tokens} tokens in all)" if res.resumed_from else ""
    print(f"trained {args.arch} on {res.tokens_this_run} tokens in this run{resumed} in {res.seconds:.0f} s; "
          f"SAE in {out / args.arch / 'sae'}")
    return 0


def _cached_rows(args: argparse.Namespace, model: Any, cache_dir: Path, reporter: Reporter | None = None) -> Tensor:
    """The first --tokens activations of the cache in `cache_dir`: refused when it holds another model or hook,
    built there (--domains, --seq-len, --seed; a terminal bar without `reporter`) when missing."""
    from probes.errors import InputError
    from saes.activation_store import ActivationStore, CachedActivations, cache_activations

    hook_out = getattr(args, "hook_out", None)
    if (cache_dir / "meta.json").exists():
        cache = CachedActivations(cache_dir)
        if cache.hook_name != args.hook or cache.meta.get("model") != args.model or cache.hook_name_out != hook_out:
            held = cache.hook_name + (f" -> {cache.hook_name_out}" if cache.hook_name_out else "")
            wanted = args.hook + (f" -> {hook_out}" if hook_out else "")
            raise InputError(f"The cache {cache_dir} holds {cache.meta.get('model')} at {held}, not {args.model} at "
                             f"{wanted}; pass another --cache folder or the matching --hook/--hook-out/--model.")
    else:
        store = ActivationStore(model, args.hook, domains=args.domains, context_length=args.context_length, seed=args.seed,
                                hook_name_out=hook_out)
        cache = cache_activations(store, cache_dir, args.tokens, reporter=reporter)
    return cache.rows(0, min(args.tokens, len(cache)))


def _last_metrics(path: Path) -> dict[str, Any]:
    import json

    lines = path.read_text().splitlines() if path.exists() else []
    return dict(json.loads(lines[-1])) if lines else {}


def run_eval(args: argparse.Namespace) -> int:

    from app.figures.registry import draw
    from saes.evaluate import ce_loss_recovered, reconstruction_metrics, transcoder_loss_change
    from saes.multi import side_by_side, window_rows
    from saes.sources import load_sae

    model = load_from_args(args)
    sae = load_sae(args.sae, model, hook=args.hook, check=args.check)
    ids = _ids(model, args.prompts, args.length, args.seed + 1000)
    start = 1 if sae.cfg.skip_first_position else 0
    hooks = sae.cfg.hooks  # a transcoder's input and target come from one pass
    rec = reconstruction_metrics(sae, side_by_side(window_rows(model, hooks, ids, start=start), hooks))
    if len(hooks) > 1:  # a transcoder: the MLP's output replaced
        ce = transcoder_loss_change(model, sae, ids, ablation=args.ablation)
    else:
        ce = ce_loss_recovered(model, sae, sae.cfg.hook_name, ids, ablation=args.ablation)
    from probes.results import result_metadata

    settings = {"sae": args.sae, "prompts": args.prompts, "length": args.length, "ablation": args.ablation}
    result = {"kind": "sae_eval", **result_metadata(model, settings, args.seed), "sae": args.sae, "sae_config": sae.cfg.to_dict(),
              "reconstruction": rec.to_dict(), "ce": ce.to_dict()}
    out = output_dir(args, "sae_eval")
    write_outputs(out, "sae_eval", result, draw(result))
    print(f"L0 {rec.l0:.1f}  FVU {rec.fvu:.3f}  CE recovered {ce.ce_loss_recovered:.3f} ({args.ablation})  dead {rec.dead}/{rec.d_sae}")
    return 0


def run_dashboard(args: argparse.Namespace) -> int:
    from app.figures.registry import draw
    from saes.dashboard import feature_dashboards
    from saes.sources import load_sae

    model = load_from_args(args)
    sae = load_sae(args.sae, model, hook=args.hook, check=args.check)
    dash = feature_dashboards(model, sae, _ids(model, args.prompts, args.length, args.seed + 2000), args.features)
    out = output_dir(args, "sae_dashboard")
    from probes.results import result_metadata

    settings = {"sae": args.sae, "features": args.features, "prompts": args.prompts, "length": args.length}
    data = {**result_metadata(model, settings, args.seed), **dash}
    write_outputs(out, "sae_dashboard", data, draw(data))
    print(f"dashboards for {len(dash['features'])} features in {out}")
    return 0
