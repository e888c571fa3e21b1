"""Options and output handling shared by the analysis commands (not a command itself)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from probes.model_specs import DEFAULT_MODEL


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """--model, --device, --dtype, --out: the options every analysis command takes."""
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model spec (default {DEFAULT_MODEL})")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--dtype", default="float32", help="float32 (default), float16 or bfloat16")
    parser.add_argument("--out", default=None, help="output folder (default runs/<command>/<model>)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def output_dir(args: argparse.Namespace, command: str) -> Path:
    """The folder a command writes into, created if needed."""
    if args.out:
        out = Path(args.out)
    else:
        safe_model = str(args.model).replace("/", "_").strip("._") or "model"
        out = Path("runs") / command / safe_model
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_outputs(out: Path, name: str, result: Any, figures: dict[str, Any], formats: tuple[str, ...] = ("html",)) -> list[Path]:
    """Write `<name>.json` and each figure as `<figure name>.<fmt>`; return the paths written."""
    from app.figures import save_figure
    from probes.results import save_result

    paths = [save_result(out / f"{name}.json", result)]
    for fig_name, fig in figures.items():
        paths += save_figure(fig, out / fig_name, formats)
    return paths


def load_from_args(args: argparse.Namespace) -> Any:
    from probes.loading import load_model

    return load_model(args.model, device=args.device, dtype=args.dtype)
