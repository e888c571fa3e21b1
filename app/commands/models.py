"""`glasshouse models` and `glasshouse info MODEL`: what can be loaded, and its canonical facts."""

from __future__ import annotations

import argparse
import json
from typing import Any

from probes.model.model_specs import DEFAULT_MODEL, EMBEDDED, is_embedded_installed


def register(subparsers: Any) -> None:
    models = subparsers.add_parser("models", help="list the model specs Glasshouse knows and which are installed")
    models.add_argument("--json", action="store_true", help="print JSON for scripts")
    models.add_argument("--verify", action="store_true",
                        help="checksum every file of the converted models against its manifest (slower)")
    models.set_defaults(func=run_models)

    info = subparsers.add_parser("info", help="print a model's canonical facts (layers, heads, ...)")
    info.add_argument("model", nargs="?", default=DEFAULT_MODEL, help=f"model spec (default {DEFAULT_MODEL})")
    info.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    info.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16")
    info.add_argument("--json", action="store_true", help="print JSON for scripts")
    info.set_defaults(func=run_info)


def models_listing(verify: bool = False) -> list[dict[str, Any]]:
    """The embedded specs with install state and their converted copies in the conversion cache
    (probes.model.model_cache: folder, bytes, status), plus what this process has loaded."""
    import sys

    from probes.model import model_cache

    loaded = set(sys.modules["probes.model.loading"].loaded_models()) if "probes.model.loading" in sys.modules else set()
    root = model_cache.cache_root()
    cached = model_cache.entries(root, full=verify)
    rows = [
        {"spec": name, "kind": "embedded", "installed": is_embedded_installed(name), "loaded": name in loaded,
         "default": name == DEFAULT_MODEL, "description": entry.description,
         "cache_dir": None if root is None else str(root), "cached": [c for c in cached if c["model"] == name]}
        for name, entry in EMBEDDED.items()
    ]
    hub_cached = _hub_cached()
    rows += [{"spec": name, "kind": "hub cache", "installed": True, "loaded": name in loaded, "default": False,
              "description": "in the local HuggingFace cache"} for name in hub_cached]
    return rows


def _hub_cached() -> list[str]:
    try:
        from huggingface_hub import scan_cache_dir

        return sorted(r.repo_id for r in scan_cache_dir().repos if r.repo_type == "model")
    except Exception:
        return []


def run_models(args: argparse.Namespace) -> int:
    rows = models_listing(verify=args.verify)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'spec':<16} {'kind':<10} {'installed':<10} description")
    for r in rows:
        mark = "*" if r["default"] else " "
        print(f"{r['spec'] + mark:<16} {r['kind']:<10} {'yes' if r['installed'] else 'no':<10} {r['description']}")
    print("\n* default. Any hub name (gpt2, EleutherAI/pythia-70m) or a local model folder also works with network or cache.")
    _print_cache(rows)
    return 0


def _print_cache(rows: list[dict[str, Any]]) -> None:
    from probes.model import model_cache

    root = model_cache.cache_root()
    if root is None:
        print(f"\nConversion cache: off ({model_cache.CACHE_ENV}); embedded models load from their GGUF files.")
        return
    entries = [c for r in rows for c in r.get("cached", [])]
    entries += [c for c in model_cache.entries(root) if c["model"] not in EMBEDDED]
    total = sum(c["bytes"] for c in entries)
    print(f"\nConversion cache: {root} ({model_cache.human_size(total)}; move it with {model_cache.CACHE_ENV}=DIR, "
          f"turn it off with {model_cache.CACHE_ENV}=off)")
    if not entries:
        print("  nothing converted yet: the first load of an embedded model converts its GGUF once.")
    for c in entries:
        print(f"  {c['model']:<14} {model_cache.human_size(c['bytes']):>9}  {c['status']}  {c['folder']}")


def run_info(args: argparse.Namespace) -> int:
    from probes.model.loading import load_model

    model = load_model(args.model, device=args.device, dtype=args.dtype)
    facts = model.facts.to_dict()
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    width = max(len(k) for k in facts)
    for key, value in facts.items():
        print(f"{key:<{width}}  {value}")
    return 0
