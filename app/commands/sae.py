"""`glasshouse sae train|eval|dashboard`: sparse autoencoders on a model's activations (issue 6)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from app.commands._common import add_model_args, load_from_args, output_dir, write_outputs


def register(subparsers: Any) -> None:
    sae = subparsers.add_parser("sae", help="train, evaluate and browse sparse autoencoders")
    sub = sae.add_subparsers(dest="sae_command", metavar="SAE_COMMAND")

    tr = sub.add_parser("train", help="train an SAE at a hook (resumes from a checkpoint in --out)")
    add_model_args(tr)
    tr.add_argument("--arch", default="topk", help="architecture (standard, topk, batchtopk, jumprelu, feature_choice, mutual_choice)")
    tr.add_argument("--hook", default="blocks.6.hook_resid_post", help="TransformerLens hook name")
    tr.add_argument("--d-sae", type=int, default=2304)
    tr.add_argument("--k", type=int, default=32, help="active features per token (TopK family)")
    tr.add_argument("--tokens", type=int, default=65536, help="training tokens")
    tr.add_argument("--batch", type=int, default=1024)
    tr.add_argument("--lr", type=float, default=2e-3)
    tr.add_argument("--cache", default=None, help="activation cache folder (built there if missing)")
    tr.add_argument("--domains", nargs="*", default=["prose", "code"])
    tr.add_argument("--context-length", type=int, default=128, help="tokens per corpus window when caching")
    tr.add_argument("--checkpoint-every", type=int, default=20, help="steps between checkpoints (a killed run resumes from the last)")
    tr.add_argument("--sparsity", type=float, default=None,
                    help="fixed sparsity coefficient: L1 for standard, L0 for jumprelu (default: steered to L0 = --k)")
    tr.set_defaults(func=run_train)

    ev = sub.add_parser("eval", help="L0, FVU, CE loss recovered, dead/dense features of a saved SAE")
    add_model_args(ev)
    ev.add_argument("sae", help="SAE folder (cfg.json + sae_weights.safetensors)")
    ev.add_argument("--prompts", type=int, default=16)
    ev.add_argument("--length", type=int, default=64)
    ev.add_argument("--ablation", default="zero", choices=["zero", "mean"])
    ev.set_defaults(func=run_eval)

    da = sub.add_parser("dashboard", help="dashboard JSON for features, HTML for each")
    add_model_args(da)
    da.add_argument("sae", help="SAE folder")
    da.add_argument("--features", type=int, nargs="+", default=[0, 1, 2])
    da.add_argument("--prompts", type=int, default=32)
    da.add_argument("--length", type=int, default=64)
    da.set_defaults(func=run_dashboard)


def _ids(model: Any, n: int, length: int, seed: int) -> Any:
    import torch

    from probes.corpus import sample

    return torch.cat([sample(d, max(1, n // 2), length, model, seed=seed).ids for d in ("prose", "code")])


def run_train(args: argparse.Namespace) -> int:
    from probes.errors import InputError
    from probes.results import result_metadata
    from saes.activation_store import ActivationStore, CachedActivations, TensorSource, cache_activations
    from saes.trainer import TrainConfig, train

    if args.tokens < args.batch:
        raise InputError(f"--tokens ({args.tokens}) must be at least --batch ({args.batch}); raise --tokens or lower --batch.")
    model = load_from_args(args)
    out = output_dir(args, "sae")
    cache_dir = Path(args.cache) if args.cache else out / "activations"
    if (cache_dir / "meta.json").exists():
        cache = CachedActivations(cache_dir)
        if cache.hook_name != args.hook or cache.meta.get("model") != args.model:
            raise InputError(f"The cache {cache_dir} holds {cache.meta.get('model')} at {cache.hook_name}, not {args.model} at "
                             f"{args.hook}; pass another --cache folder or the matching --hook/--model.")
    else:
        store = ActivationStore(model, args.hook, domains=args.domains, context_length=args.context_length, seed=args.seed)
        cache = cache_activations(store, cache_dir, args.tokens)
    tokens = min(args.tokens, len(cache))
    sae_fields = {"architecture": args.arch, "d_in": cache.d_in, "d_sae": args.d_sae, "k": args.k,
                  "hook_name": cache.hook_name, "model_name": args.model, "seed": args.seed}
    sparsity = getattr(args, "sparsity", None)
    if sparsity is not None:
        if args.arch not in ("standard", "jumprelu"):
            raise InputError(f"--sparsity applies to standard and jumprelu; {args.arch} sets its sparsity with --k.")
        sae_fields["l1_coefficient" if args.arch == "standard" else "l0_coefficient"] = sparsity
    elif args.arch in ("standard", "jumprelu"):
        sae_fields["target_l0"] = float(args.k)  # the coefficient is steered to L0 = k (saes/config.py adapt_scale)
    cfg = TrainConfig(sae=sae_fields, total_tokens=tokens, batch_size=args.batch, lr=args.lr, seed=args.seed,
                      out_dir=str(out / args.arch), checkpoint_every=getattr(args, "checkpoint_every", 20))
    res = train(cfg, TensorSource(cache.rows(0, tokens)))
    last = _last_metrics(out / args.arch / "metrics.jsonl")
    result = {**result_metadata(model, cfg.to_dict(), args.seed), "sae_dir": str(out / args.arch / "sae"),
              "cache": str(cache_dir), "steps": res.steps, "tokens": res.tokens, "seconds": res.seconds,
              "resumed_from_step": res.resumed_from, "steps_this_run": res.steps_this_run,
              "tokens_this_run": res.tokens_this_run, "final_batch_metrics": last}
    write_outputs(out / args.arch, "sae_train", result, {})
    resumed = f" (resumed at step {res.resumed_from}; {res.tokens} tokens in all)" if res.resumed_from else ""
    print(f"trained {args.arch} on {res.tokens_this_run} tokens in this run{resumed} in {res.seconds:.0f} s; "
          f"SAE in {out / args.arch / 'sae'}")
    return 0


def _last_metrics(path: Path) -> dict[str, Any]:
    import json

    lines = path.read_text().splitlines() if path.exists() else []
    return dict(json.loads(lines[-1])) if lines else {}


def run_eval(args: argparse.Namespace) -> int:
    import torch

    from app.figures.saes import density_histogram
    from saes.activation_store import hook_activations
    from saes.evaluate import ce_loss_recovered, reconstruction_metrics
    from saes.saelens_io import load_sae

    model = load_from_args(args)
    sae = load_sae(args.sae, model)
    ids = _ids(model, args.prompts, args.length, args.seed + 1000)
    start = 1 if sae.cfg.skip_first_position else 0
    acts = torch.cat([hook_activations(model, sae.cfg.hook_name, ids[i : i + 8])[:, start:].reshape(-1, sae.cfg.d_in)
                      for i in range(0, ids.shape[0], 8)])
    rec = reconstruction_metrics(sae, acts)
    ce = ce_loss_recovered(model, sae, sae.cfg.hook_name, ids, ablation=args.ablation)
    from probes.results import result_metadata

    settings = {"sae": args.sae, "prompts": args.prompts, "length": args.length, "ablation": args.ablation}
    result = {**result_metadata(model, settings, args.seed), "sae": args.sae, "sae_config": sae.cfg.to_dict(),
              "reconstruction": rec.to_dict(), "ce": ce.to_dict()}
    out = output_dir(args, "sae_eval")
    write_outputs(out, "sae_eval", result, {"density": density_histogram(rec.to_dict())})
    print(f"L0 {rec.l0:.1f}  FVU {rec.fvu:.3f}  CE recovered {ce.ce_loss_recovered:.3f} ({args.ablation})  dead {rec.dead}/{rec.d_sae}")
    return 0


def _text_writer(text: str) -> Any:
    return lambda tmp: tmp.write_text(text)


def run_dashboard(args: argparse.Namespace) -> int:
    from app.figures.saes import feature_activation_histogram, feature_top_tokens
    from probes.io import atomic_write
    from saes.dashboard import feature_dashboards, feature_html
    from saes.saelens_io import load_sae

    model = load_from_args(args)
    sae = load_sae(args.sae, model)
    dash = feature_dashboards(model, sae, _ids(model, args.prompts, args.length, args.seed + 2000), args.features)
    out = output_dir(args, "sae_dashboard")
    figures = {}
    for key, entry in dash["features"].items():
        figures[f"feature_{key}_hist"] = feature_activation_histogram(entry)
        figures[f"feature_{key}_top"] = feature_top_tokens(entry)
        page = feature_html(entry, title=f"({sae.cfg.hook_name})")
        atomic_write(out / f"feature_{key}.html", _text_writer(page))
    from probes.results import result_metadata

    settings = {"sae": args.sae, "features": args.features, "prompts": args.prompts, "length": args.length}
    write_outputs(out, "sae_dashboard", {**result_metadata(model, settings, args.seed), **dash}, figures)
    print(f"dashboards for {len(dash['features'])} features in {out}")
    return 0
