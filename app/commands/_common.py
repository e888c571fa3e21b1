"""Options, argument types and output handling shared by the commands (not a command itself).

Conventions (docs/cli.md):
- one name per idea: --n (sequences / examples), --seq-len (tokens per sequence), --batch-size
  (sequences or rows per step); older spellings stay as hidden aliases (`add_option(..., aliases=)`);
- every numeric option has a type with a range (`int_range`, `float_range`), enumerations take their
  choices from the registries (`LazyChoices`, loaded only when the value is checked or help is shown);
- `prepared(args, command)` checks the device, the model spec and the output folder, and holds the
  folder (probes.runfolder), all before any model loads.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from probes.model.model_specs import DEFAULT_MODEL

DEVICE_PATTERN = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


class LazyChoices(Sequence[str]):
    """Choices read from a registry on first use, so that building the parser imports nothing heavy."""

    def __init__(self, load: Callable[[], Iterable[str]]) -> None:
        self._load = load
        self._names: list[str] | None = None

    @property
    def names(self) -> list[str]:
        if self._names is None:
            self._names = [str(n) for n in self._load()]
        return self._names

    def __contains__(self, value: object) -> bool:
        return value in self.names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: Any) -> Any:
        return self.names[index]


class LazyHelp:
    """Help text computed when help is shown (it may read a registry); argparse sees a string-like object."""

    def __init__(self, make: Callable[[], str]) -> None:
        self._make = make

    def __str__(self) -> str:
        return self._make()

    def strip(self) -> str:
        return str(self).strip()

    def __bool__(self) -> bool:
        return True


def int_range(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi] (either end open when None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer{_bounds(lo, hi)}, got {text!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be an integer{_bounds(lo, hi)}, got {text!r}")
        return value

    parse.__name__ = "integer"
    return parse


def float_range(lo: float | None = None, hi: float | None = None, lo_open: bool = False,
                hi_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in the interval (open at an end when asked)."""
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    where = f" in {left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number{where}, got {text!r}") from None
        ok = math.isfinite(value)
        if lo is not None:
            ok = ok and (value > lo if lo_open else value >= lo)
        if hi is not None:
            ok = ok and (value < hi if hi_open else value <= hi)
        if not ok:
            raise argparse.ArgumentTypeError(f"must be a finite number{where}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def _bounds(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f" in {lo}..{hi}"
    if lo is not None:
        return f" >= {lo}"
    return f" <= {hi}" if hi is not None else ""


def int_list(lo: int = 0, what: str = "integers") -> Callable[[str], list[int]]:
    """An argparse type: comma-separated integers >= lo, at least one."""

    def parse(text: str) -> list[int]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        try:
            values = [int(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be comma-separated {what}, like 1,2,3; got {text!r}") from None
        if not values or min(values) < lo:
            raise argparse.ArgumentTypeError(f"needs at least one of the {what}, each >= {lo}; got {text!r}")
        return values

    parse.__name__ = "list"
    return parse


def name_list(choices: LazyChoices, what: str) -> Callable[[str], tuple[str, ...]]:
    """An argparse type: comma-separated names from `choices`, at least one, duplicates dropped."""

    def parse(text: str) -> tuple[str, ...]:
        items = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
        if not items:
            raise argparse.ArgumentTypeError(f"needs at least one {what} ({', '.join(choices)}); got {text!r}")
        unknown = [t for t in items if t not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(map(repr, unknown))}; "
                                             f"choose from {', '.join(choices)}")
        return tuple(items)

    parse.__name__ = "list"
    return parse


def device_type(text: str) -> str:
    """An argparse type: cpu, cuda, cuda:N or mps (availability is checked before the model loads)."""
    if not DEVICE_PATTERN.match(text.strip()):
        raise argparse.ArgumentTypeError(f"must be cpu, cuda, cuda:N or mps, got {text!r}")
    return text.strip()


def _dtypes() -> list[str]:
    from probes.model.loading import DTYPES

    return list(DTYPES)


DTYPE_CHOICES = LazyChoices(_dtypes)
SEED = int_range(0, 2**32 - 1)


def add_option(parser: Any, name: str, *, aliases: Sequence[str] = (), **kwargs: Any) -> argparse.Action:
    """Add `name` with its help and default; each old spelling in `aliases` works but stays out of --help."""
    if "dest" in kwargs and "metavar" not in kwargs and kwargs.get("action") is None:
        kwargs["metavar"] = name.lstrip("-").upper().replace("-", "_")
    action: argparse.Action = parser.add_argument(name, **kwargs)
    for old in aliases:
        extra = {k: kwargs[k] for k in ("type", "nargs", "choices", "metavar", "action", "const") if k in kwargs}
        parser.add_argument(old, dest=action.dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **extra)
    return action


def add_device_args(parser: Any, device_help: str = "cpu, cuda, cuda:N or mps (default: cuda if available)") -> None:
    """--device and --dtype, checked at parse time (names) and before loading (availability)."""
    parser.add_argument("--device", type=device_type, default=None, metavar="DEVICE", help=device_help)
    parser.add_argument("--dtype", default="float32", choices=DTYPE_CHOICES, metavar="DTYPE",
                        help="weights and activations: %(choices)s")


def add_model_args(parser: argparse.ArgumentParser, model_default: str | None = DEFAULT_MODEL,
                   model_help: str = "model spec: an embedded name, a hub name or a model folder") -> None:
    """--model, --device, --dtype, --out, --seed: the options every analysis command takes."""
    parser.add_argument("--model", default=model_default, help=model_help)
    add_device_args(parser)
    parser.add_argument("--out", default=None, help="output folder (default runs/<command>/<model>)")
    parser.add_argument("--seed", type=SEED, default=0, help="random seed")


def analysis_parser(subparsers: Any, name: str, help: str, *, backend: bool = False,
                    **model_args: Any) -> Any:
    """The parser of an analysis command, opened with the options they all share, in one order:
    --model, --device, --dtype, --out, --seed (`add_model_args`, whose keywords `model_args` takes) and,
    with `backend`, --backend and --layers (docs/remote.md)."""
    parser = subparsers.add_parser(name, help=help)
    add_model_args(parser, **model_args)
    if backend:
        add_backend_arg(parser)
    return parser


def add_backend_arg(parser: argparse.ArgumentParser) -> None:
    """--backend local|ndif|ndif-local, and --layers for the remote ones (probes.model.backends.BACKENDS)."""
    from probes.model.backends import BACKENDS  # torch-free

    parser.add_argument("--backend", choices=BACKENDS, default="local",
                        help="local (default); ndif: run on NDIF with a hub model id, only statistics come back "
                             "(key from nnsight's config); ndif-local: nnsight's serverless simulation of that path")
    parser.add_argument("--layers", default=None,
                        help="remote backends: comma-separated layers to measure (default all; fewer layers, "
                             "smaller responses)")


def add_window_args(parser: argparse.ArgumentParser, n: int, n_help: str, seq_len: int = 64,
                    seq_len_help: str = "tokens per sequence") -> None:
    """--n (corpus windows or sequences, >= 1) and --seq-len (tokens in each, >= 2; old spelling --T)."""
    add_option(parser, "--n", type=int_range(1), default=n, help=n_help)
    add_option(parser, "--seq-len", aliases=("--T",), type=int_range(2), default=seq_len, help=seq_len_help)


def add_bos_args(parser: argparse.ArgumentParser, no_bos_help: str = "no BOS") -> None:
    """--bos / --no-bos into `prepend_bos`: True, False, or None for the model's own convention."""
    bos = parser.add_mutually_exclusive_group()
    bos.add_argument("--bos", dest="prepend_bos", action="store_true", default=None, help="put the BOS first")
    bos.add_argument("--no-bos", dest="prepend_bos", action="store_false", help=no_bos_help)


def default_out(args: argparse.Namespace, command: str) -> Path:
    """`--out`, else runs/<command>/<model>."""
    if getattr(args, "out", None):
        return Path(args.out)
    safe_model = str(args.model).replace("/", "_").strip("._") or "model"
    return Path("runs") / command / safe_model


def output_dir(args: argparse.Namespace, command: str) -> Path:
    """The folder a command writes into, created and checked writable (RunFolderError otherwise)."""
    from probes.runfolder import check_writable

    return check_writable(default_out(args, command))


def check_device(device: str | None) -> None:
    """Refuse, before anything loads, a device this machine does not have."""
    if device is None or device == "cpu":
        return
    import torch

    from probes.errors import InputError

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: this machine has no CUDA GPU that torch can use. "
                             "Use --device cpu (or leave --device out).")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise InputError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"cuda:0..cuda:{torch.cuda.device_count() - 1}.")
    elif device == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps: Apple's MPS backend is not available here. Use --device cpu.")


@contextmanager
def prepared(args: argparse.Namespace, command: str, model: bool = True) -> Iterator[Path]:
    """Check device, model spec and output folder, then hold the folder while the command runs."""
    from probes.model.preflight import check_model_spec
    from probes.runfolder import hold

    check_device(getattr(args, "device", None))
    if model:
        check_model_spec(args.model)
    with hold(default_out(args, command), "--out" if getattr(args, "out", None) else "output folder") as out:
        yield out


def write_outputs(out: Path, name: str, result: Any, figures: dict[str, Any], formats: tuple[str, ...] = ("html",)) -> list[Path]:
    """Write `<name>.json` and each figure as `<figure name>.<fmt>`; return the paths written."""
    from app.figures import save_figure
    from probes.results import save_result

    paths = [save_result(out / f"{name}.json", result)]
    for fig_name, fig in figures.items():
        paths += save_figure(fig, out / fig_name, formats)
    return paths


def load_from_args(args: argparse.Namespace) -> Any:
    from probes.model.loading import load_model

    return load_model(args.model, device=args.device, dtype=args.dtype)
