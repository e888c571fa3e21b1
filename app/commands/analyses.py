"""The command of every declared analysis (probes.analysis), generated from its declaration.

Spec: docs/cli.md ("Declared analyses"). `glasshouse <name>` (underscores as hyphens, e.g.
`glasshouse residual-norms`) takes the options every analysis command takes (--model, --device, --dtype,
--out, --seed), the corpus (--domain, --n, --seq-len), one option per setting of the analysis's settings
dataclass (type, range, choices and help from the declaration), and --backend when its collect step runs
remotely. It runs the analysis through probes.analysis.run_analysis (progress bar, Ctrl-C safe: a checkpoint
of the running sums in the output folder lets the same command resume), and writes <name>.json (kind, model,
settings, corpus, metadata, the result and its rows; kind "analysis") and the analysis's figure from
app/figures/batch.py.
Nothing here names an analysis: a new declaration is a new command.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from app.commands._common import (
    LazyChoices,
    add_bos_args,
    add_option,
    add_window_args,
    analysis_parser,
    float_range,
    int_range,
    load_from_args,
    prepared,
    write_outputs,
)
from app.declared import analyses
from probes.analysis import Analysis, SettingInfo


def _domains() -> tuple[str, ...]:
    from probes.corpus import DOMAINS

    return DOMAINS


DOMAIN_CHOICES = LazyChoices(_domains)
# Settings whose plan key predates the command line's names (docs/cli.md, "Names"): one name per idea.
CLI_NAMES = {"max_prompts": "--n"}


def command_name(analysis: Analysis) -> str:
    return analysis.command or analysis.name.replace("_", "-")


def register(subparsers: Any) -> None:
    """Add a sub-command for every declared analysis whose name no hand-written or earlier command has taken."""
    taken = set(subparsers.choices)
    for analysis in analyses():  # the first declared takes a name (the sinks report before the windows' sinks)
        if command_name(analysis) not in taken:
            add_command(subparsers, analysis)
            taken.add(command_name(analysis))


def add_command(subparsers: Any, analysis: Analysis) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = analysis_parser(subparsers, command_name(analysis),
                                                 f"{analysis.description} ({analysis.method})",
                                                 backend=analysis.remote)
    if analysis.uses_corpus:
        p.add_argument("--domain", choices=DOMAIN_CHOICES, default="prose", metavar="DOMAIN",
                       help="corpus the windows come from: %(choices)s")
        add_window_args(p, n=8, n_help="corpus windows")
    dests = {info.name: add_setting(p, info, analysis) for info in analysis.info().values()}
    flags = {name: _flag_of(p, dest) for name, dest in dests.items()}
    p.set_defaults(setting_dests=dests, setting_flags=flags)
    p.set_defaults(func=lambda args: run(args, analysis))
    return p


def _flag_of(parser: argparse.ArgumentParser, dest: str) -> str:
    """The option a setting is given with (its first spelling)."""
    return next(a.option_strings[0] for a in parser._actions if a.dest == dest and a.option_strings)


def add_setting(parser: argparse.ArgumentParser, info: SettingInfo, analysis: Analysis) -> str:
    """One option for one setting (returns its dest): --name-with-hyphens, typed and range-checked as declared (prepend_bos is
    --bos / --no-bos, as in every command; a name the shared options already use gets the command's name
    first, e.g. --peak-ablation-n)."""
    flag, dest = CLI_NAMES.get(info.name, "--" + info.name.replace("_", "-")), info.name
    if flag in parser._option_string_actions:  # a shared option has the name (peak_ablation's n vs the corpus's --n)
        flag, dest = f"--{command_name(analysis)}-{info.name.replace('_', '-')}", f"{analysis.name}_{info.name}"
    if info.name == "prepend_bos":  # the commands' own spelling: --bos / --no-bos
        add_bos_args(parser)  # default None: the model's own convention, read once it is loaded
        return "prepend_bos"
    aliases = tuple("--" + a.replace("_", "-") for a in info.aliases)
    if info.type is bool:
        parser.add_argument(flag, *aliases, dest=dest, action=argparse.BooleanOptionalAction, default=info.default,
                            help=info.help)
        return dest
    kwargs: dict[str, Any] = {"dest": dest, "default": info.default, "help": info.help}
    if info.choices is not None:
        kwargs.update(choices=info.choices, type=info.type)
    elif info.type is int:
        kwargs["type"] = int_range(None if info.minimum is None else int(info.minimum),
                                   None if info.maximum is None else int(info.maximum))
    elif info.type is float:
        kwargs["type"] = float_range(info.minimum, info.maximum, info.open_low, info.open_high)
    if info.check is not None:
        kwargs["type"] = checked(kwargs.get("type", info.type), info)
    add_option(parser, flag, aliases=aliases, **kwargs)
    return dest


def checked(parse: Any, info: SettingInfo) -> Any:
    """An argparse type: `parse`, then the setting's own check (its problem becomes the usage error)."""

    def convert(text: str) -> Any:
        value = parse(text)
        problem = info.check(value) if info.check is not None else None
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    return convert


def settings_of(args: argparse.Namespace, analysis: Analysis, model: Any = None) -> Any:
    """The analysis's settings from the options (checked before anything loads, then again with the model,
    whose tokenizer decides prepend_bos when neither --bos nor --no-bos is given)."""
    from probes.errors import UsageError

    if getattr(args, "layers", None) and not analysis.document:
        raise UsageError("--layers: this analysis measures every layer (its statistics are small); "
                         "leave --layers out.")
    if getattr(args, "layers", None) and getattr(args, "backend", "local") == "local":
        raise UsageError("--layers chooses the layers a remote backend measures; with --backend local every layer "
                         "is measured: leave --layers out.")
    dests = getattr(args, "setting_dests", {})
    values = {name: getattr(args, dests.get(name, name)) for name in analysis.info()}
    if values.get("prepend_bos", False) is None:
        values["prepend_bos"] = bool(model.facts.prepends_bos) if model is not None else False
    settings = analysis.make_settings(values)
    if model is not None and analysis.model_check is not None:
        flags = getattr(args, "setting_flags", {})
        problems = [f"{flags.get(name, name)} {problem}" for name, problem in analysis.model_check(model, settings)]
        if problems:
            raise UsageError("; ".join(problems) + ".")
    return settings


def open_model(args: argparse.Namespace) -> Any:
    """The local HookedModel, or a RemoteModel whose measurements run where --backend says."""
    if getattr(args, "backend", "local") == "local":
        return load_from_args(args)
    from probes.analyses.values import integers
    from probes.model.backends import open_model as open_backend
    from probes.model.backends import remote_arg
    from probes.remote_analyses import RemoteModel

    lm = open_backend(args.model, args.backend, device=args.device, dtype=args.dtype)
    layers = integers(args.layers) if getattr(args, "layers", None) else None
    return RemoteModel(lm, spec=args.model, remote=remote_arg(args.backend), layers=layers)


def run(args: argparse.Namespace, analysis: Analysis) -> int:
    from probes.analysis import run_declared

    settings = settings_of(args, analysis)  # checked before anything loads
    name = analysis.name
    with prepared(args, command_name(analysis)) as out:
        from app.figures.registry import draw, kinds
        from probes.corpus import sample
        from probes.progress import TqdmReporter

        model = open_model(args)
        settings = settings_of(args, analysis, model)
        corpus = sample(args.domain, args.n, args.seq_len, model.tokenizer, seed=args.seed) if analysis.uses_corpus \
            else None
        result = run_declared(analysis, model, settings, corpus, args.seed, reporter=TqdmReporter(command_name(analysis)),
                              checkpoint=out / f".{name}.checkpoint.pt")
        if analysis.document:  # a report whose saved JSON layout is its own (probes.analysis, "document")
            figures = draw(result) if analysis.document in kinds() else {}  # a kind may have no figure set yet
            write_outputs(out, analysis.document, result, figures)
        else:
            bundle = _bundle(args, analysis, model, settings, corpus, result)
            write_outputs(out, name, bundle, draw(bundle))
    for line in analysis.summary(result) if analysis.summary else []:
        print(line)
    print(f"wrote {out}" + ("" if getattr(args, "backend", "local") == "local" else f" (backend {args.backend})"))
    return 0


def _bundle(args: argparse.Namespace, analysis: Analysis, model: Any, settings: Any, corpus: Any,
            result: dict[str, Any]) -> dict[str, Any]:
    """The saved document of kind "analysis": model, settings, corpus, metadata, the result and its rows."""
    from probes.io import to_jsonable
    from probes.results import result_metadata

    values = dataclasses.asdict(settings)
    return {
        "kind": "analysis", "analysis": analysis.name, "model": args.model, "backend": getattr(args, "backend", "local"),
        "settings": values, "corpus": corpus.to_dict() if corpus is not None else None,
        "metadata": result_metadata(model, values, args.seed),
        "result": to_jsonable(result), "rows": analysis.rows(result),
    }
