"""How many source files mention each analysis: the number of files a newcomer opens to find or change it.

    python -m scripts.analysis_footprint                    # this checkout
    python -m scripts.analysis_footprint --repo DIR --json  # another checkout, as JSON
    python -m scripts.analysis_footprint --why              # with the evidence found in each file

Issue 27 asks for this count before and after it changes how analyses are declared. Files read: every
*.py under probes/, circuits/, saes/ and app/ (not tests/, docs/, benchmarks/, scripts/ or notebooks/).

What counts as a mention is read from the code, never from comments or docstrings (a file that only
talks about an analysis is not one a change to it has to touch). Python's ast gives three kinds of
evidence, and each analysis in ANALYSES lists a pattern for each kind (matched in full, `re.fullmatch`):
- name (N): an identifier the file defines, uses or imports: a name, an attribute, a def or class
  name, a parameter or keyword, an imported name or its alias. Each analysis lists the names that
  are its own: the function that computes it, its result class, its command, batch, atlas, remote and
  figure functions. Helpers that several analyses share (probes.sinks.inputs_for_regime,
  probes.quantities, the capture layer) are nobody's;
- string (S): a string literal (not a docstring) equal to a name the analysis is registered under:
  its command, batch probe, atlas entry, figure kind, result "kind" or app page file (for sinks:
  "sinks", "sink_result", "sinks_bos", ..., "sinks.py"). Messages that contain the word do not count:
  the whole literal must match;
- module (M), only for the analyses that are a package (circuits/, saes/, probes/bb/: the package is
  the analysis): an import of any of its modules (`from circuits.tasks import TASKS`), or a module's
  dotted path as a string (`importlib.import_module("saes.trainer")`); their home folders count
  whole (H). The other analyses' modules also hold helpers that several analyses share
  (probes.sinks.inputs_for_regime, probes.extreme.sink_attention, probes.successor.dataset), so there
  an import counts only through the names it brings in (N); `import_module("probes.sinks")` to warm
  the import cache is no mention.

The sets were chosen on the tree before issue 27 (d6ee650) from the definitions in probes/, circuits/
and saes/ and the registrations in app/ (commands, batch and atlas registries, figure registry, pages),
and are kept fixed for the after count. A refactor that renames an analysis's functions or registered
names must extend these sets, or it counts fewer files for nothing: `--why` shows the evidence of each
file, and tests/test_analysis_footprint.py checks that every analysis is still found in this tree.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: the repository root leads sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import ast
import json
import re
from dataclasses import dataclass, field

FOLDERS = ("probes", "circuits", "saes", "app")
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+(?<!\.py)")  # a module path, not a file name


@dataclass(frozen=True)
class Analysis:
    """One analysis: fullmatch patterns of its names, registered strings and modules; its home folders."""

    name: str
    names: str
    strings: str
    modules: str = r"(?!)"  # matches nothing
    homes: tuple[str, ...] = ()


ANALYSES: tuple[Analysis, ...] = (
    Analysis("sinks",
             names=r"compute_sinks|sinks_by_regime|SinkResult|sink_rate(_by_regime)?|run_sinks(_regime)?|remote_sinks"
                   r"|sink_rows|sinks_(headline|entry)|sink_plan|first_token_heatmap",
             strings=r"sinks|sink_result|sinks_(bos|random|repeat|regime)|sinks\.py"),
    Analysis("hidden_sinks",
             names=r"detect_hidden_sinks|hidden_sinks_from_alpha|HiddenSinkResult|SinkToken|remote_hidden_sinks"
                   r"|run_hidden_sinks|hidden_headline|search_calibration_heads|evaluate_intervention"
                   r"|InterventionResult",
             strings=r"hidden_sinks"),
    Analysis("extreme_tokens",  # with peak_ablation
             names=r"extreme_tokens|ExtremeResult|peak_ablation|PeakAblation|remote_(extreme_tokens|peak_ablation)"
                   r"|run_(extreme|peak_ablation)|(extreme|peak_ablation)_headline|peak_ablation_(data|figure)"
                   r"|trace_extreme|extreme_plan|value_norm_figure",
             strings=r"extreme|extreme_result|extreme_tokens|peak_ablation|extreme\.py"),
    Analysis("dormant_heads",
             names=r"dormant_heads|DormantResult|head_statistics|dormancy|pick_heads|remote_dormancy(_by_domain)?"
                   r"|remote_head_statistics|run_dorman(t|cy)|dormancy_(rows|gap|scatter)|dormant_headline"
                   r"|trace_head_statistics|head_stats_plan",
             strings=r"dormant|dormancy|dormant_heads|dormant\.py"),
    Analysis("first_token_attention",
             names=r"(run_|remote_)?first_token_attention|first_token_(headline|attention_figure)|attention_rows",
             strings=r"first_token_attention"),
    Analysis("residual_norms",
             names=r"(run_|remote_)?residual_norms|residual_(headline|data)|norm_rows|residual_norms_figure",
             strings=r"residual_norms|resid_post_norm"),
    Analysis("successor_first_order",
             names=r"score_heads|SuccessorScores|OVSettings|ov_logits(_of_vectors)?|task_hits|run_successor"
                   r"|successor_headline",
             strings=r"successor|successor_scores?|successor_heads|successor\.py"),
    Analysis("successor_in_context",
             names=r"in_context_scores|InContextScores|head_dla|build_prompts|PromptSet|remote_(in_context_scores|head_dla)"
                   r"|trace_dla|run_in_context|in_context_(headline|data)",
             strings=r"successor_in_context|in_context"),
    Analysis("circuits",
             names=r"discover|Discovery|run_circuit|circuit_(headline|data|entry)",
             strings=r"circuit|circuit_(ioi|greater_than|succession)|circuits\.py",
             modules=r"circuits(\.\w+)*|app\.(commands|pages|figures)\.circuits?",
             homes=("circuits/",)),
    Analysis("sae",
             names=r"train_small_sae|run_sae|sae_(headline|data)|TrainConfig|load_sae|reconstruction_metrics"
                   r"|ce_loss_recovered|feature_dashboards|cache_activations|(Cached)?Activation(s|Store)",
             strings=r"sae|sae_(train|eval|dashboard|prompt)|saes\.py",
             modules=r"saes(\.\w+)*|app\.(commands|pages|figures)\.saes?",
             homes=("saes/",)),
    Analysis("bb_lab",
             names=r"BB(Model|Config|Task|Evaluation|Measures)|TrainSettings|bb_(run|evaluation)_label",
             strings=r"bb|bb_train|bb_evaluation|bb-lab|bblab\.py",
             modules=r"probes\.bb(\.\w+)*|app\.(commands|pages|figures)\.(bb|bblab)",
             homes=("probes/bb/",)),
)


@dataclass
class Tokens:
    """What one file's code holds: identifiers, string literals (docstrings left out), imported modules."""

    names: set[str] = field(default_factory=set)
    strings: set[str] = field(default_factory=set)
    modules: set[str] = field(default_factory=set)


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the Constant nodes that are docstrings (first statement of a module, class or function)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def _package(rel: str) -> list[str]:
    """The package a file is in, as parts: app/commands/sinks.py -> [app, commands]."""
    return rel.removesuffix(".py").split("/")[:-1]


def read_tokens(source: str, rel: str) -> Tokens:
    """The identifiers, non-docstring string literals and imported modules of one file's source."""
    tree = ast.parse(source, filename=rel)
    skip = _docstrings(tree)
    tokens = Tokens()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            tokens.names.add(node.id)
        elif isinstance(node, ast.Attribute):
            tokens.names.add(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            tokens.names.add(node.name)
        elif isinstance(node, ast.arg):
            tokens.names.add(node.arg)
        elif isinstance(node, ast.keyword) and node.arg:
            tokens.names.add(node.arg)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                tokens.modules.add(alias.name)
                tokens.names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = _package(rel)[: len(_package(rel)) - (node.level - 1)]
                base = ".".join([*parts, *([base] if base else [])])
            tokens.modules.add(base)
            for alias in node.names:
                tokens.modules.add(f"{base}.{alias.name}")  # `from probes import sinks` imports probes.sinks
                tokens.names.update({alias.name, alias.asname or alias.name})
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            tokens.strings.add(node.value)
            if _DOTTED.fullmatch(node.value):
                tokens.modules.add(node.value)
    return tokens


def evidence(analysis: Analysis, rel: str, tokens: Tokens) -> list[str]:
    """Why this file mentions the analysis (empty: it does not): H home, N:name, S:'string', M:module."""
    found = ["H"] if any(rel.startswith(home) for home in analysis.homes) else []
    found += [f"N:{n}" for n in sorted(tokens.names) if re.fullmatch(analysis.names, n)]
    found += [f"S:{s!r}" for s in sorted(tokens.strings) if re.fullmatch(analysis.strings, s)]
    modules = [m for m in sorted(tokens.modules) if re.fullmatch(analysis.modules, m)]
    found += [f"M:{m}" for m in modules if not any(m.startswith(f"{parent}.") for parent in modules)]
    return found


def source_files(repo: Path) -> list[str]:
    """Relative paths of the *.py files under FOLDERS, sorted."""
    return sorted(p.relative_to(repo).as_posix() for folder in FOLDERS if (repo / folder).is_dir()
                  for p in (repo / folder).rglob("*.py") if p.is_file())


def footprint(repo: Path, analyses: tuple[Analysis, ...] = ANALYSES) -> dict[str, dict[str, list[str]]]:
    """analysis -> {file: evidence} for the files that mention it."""
    tokens = {rel: read_tokens((repo / rel).read_text(encoding="utf-8"), rel) for rel in source_files(repo)}
    result: dict[str, dict[str, list[str]]] = {}
    for analysis in analyses:
        result[analysis.name] = {rel: found for rel, t in tokens.items() if (found := evidence(analysis, rel, t))}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="analysis_footprint", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the checkout to read (default: this one)")
    parser.add_argument("--json", action="store_true", help="print JSON: per analysis, count and files with evidence")
    parser.add_argument("--why", action="store_true", help="print each file's evidence under the table")
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    if not any((repo / f).is_dir() for f in FOLDERS):
        raise SystemExit(f"{repo} has none of {', '.join(FOLDERS)}: not a Glasshouse checkout (--repo)")
    found = footprint(repo)
    if args.json:
        out = {"repo": str(repo), "files_read": len(source_files(repo)),
               "analyses": {name: {"count": len(files), "files": files} for name, files in found.items()}}
        print(json.dumps(out, indent=2))
        return 0
    width = max(len(name) for name in found)
    print(f"{'analysis':<{width}}  files  which ({len(source_files(repo))} files read under {', '.join(FOLDERS)})")
    for name, files in found.items():
        print(f"{name:<{width}}  {len(files):5d}  {' '.join(files)}")
    if args.why:
        for name, files in found.items():
            print(f"\n{name}:")
            for rel, why in files.items():
                print(f"  {rel}: {' '.join(why)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
