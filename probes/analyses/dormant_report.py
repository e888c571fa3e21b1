"""The active-dormant head report (`glasshouse dormant`): dormancy per head on prose and code, and the effect of
ablating the heads whose dormancy differs most.

Spec: docs/methods/extreme-tokens.md ("Active-dormant heads in pretrained models"). One whole run:
probes.dormant.dormant_heads on n windows of seq_len tokens per domain (seed), its head statistics measured
where the model runs (ModelLike.head_statistics); the next-token losses and the two head ablations
(zero_out_attn, move_attn_to_bos) of the `top` heads, `controls` control heads and any `heads` asked for run
on a local model only (a remote run leaves them out and says so). The result is the saved document of kind
"dormant". Rows: per (layer, head) "dormancy_<domain>" for both domains, and per ablated head and domain
"loss_delta_<domain>_<ablation>" (nats).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probes.analyses.values import heads, heads_check
from probes.analysis import Analysis, RunContext, setting
from probes.rows import Row, as_list

if TYPE_CHECKING:
    from probes.model.model_like import ModelLike

ABLATIONS = ("zero_out_attn", "move_attn_to_bos")  # probes.dormant.ABLATIONS, without importing torch


@dataclass(frozen=True)
class DormantReportSettings:
    n: int = setting(16, "sequences per domain", minimum=1)
    seq_len: int = setting(64, "tokens per sequence", minimum=2, aliases=("T",))
    top: int = setting(5, "heads with the largest dormancy difference to ablate", minimum=0)
    controls: int = setting(2, "control heads (small difference) to ablate", minimum=0)
    heads: str = setting("", "more heads to ablate, e.g. L26H7,L23H4 (default none)", check=heads_check)
    ablate: bool = setting(True, "measure the heads' ablation effects on next-token loss (--no-ablate: dormancy "
                           "only)")
    prepend_bos: bool = setting(False, "put the tokenizer's BOS token first (the command's default: the "
                                "tokenizer's own convention)")


def model_check(model: ModelLike, settings: DormantReportSettings) -> list[tuple[str, str]]:
    """Heads beyond the model."""
    n_layers, n_heads = model.facts.n_layers, model.facts.n_heads
    bad = [f"L{layer}H{head}" for layer, head in heads(settings.heads) if not (0 <= layer < n_layers
                                                                               and 0 <= head < n_heads)]
    return [("heads", f"{','.join(bad)}: the model has layers 0..{n_layers - 1} and heads 0..{n_heads - 1} per "
                      "layer")] if bad else []


def compute(model: ModelLike, settings: DormantReportSettings, run: RunContext) -> dict[str, Any]:
    from probes.dormant import dormant_heads

    res = dormant_heads(model, n=settings.n, T=settings.seq_len, seed=run.seed, top=settings.top,
                        controls=settings.controls, prepend_bos=settings.prepend_bos, ablate=settings.ablate,
                        heads=heads(settings.heads), reporter=run.reporter)
    out = res.to_dict()
    if model.backend != "local":
        out["left_out"] = "next-token losses and head ablations run with --backend local only"
    return out


def rows(result: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for domain in result["domains"]:
        grid = as_list(result["dormancy"][domain])
        out += [{"metric": f"dormancy_{domain}", "value": float(v), "layer": layer, "head": head, "position": None}
                for layer, per_head in enumerate(grid) for head, v in enumerate(per_head)]
    for row in result["rows"]:
        r = _row(row)
        out += [{"metric": f"loss_delta_{d}_{m}", "value": float(v), "layer": r["layer"], "head": r["head"],
                 "position": None} for d, by_mode in r["loss_delta"].items() for m, v in by_mode.items()]
    return out


def _row(row: Any) -> dict[str, Any]:
    """A table row as a dict (a HeadRow before it is saved, a dict after)."""
    return row if isinstance(row, dict) else dict(row.__dict__)


def summary(result: dict[str, Any]) -> list[str]:
    a, b = result["domains"]
    lines = []
    if result["base_loss"]:
        lines.append(f"base loss: {a} {result['base_loss'][a]:.3f}, {b} {result['base_loss'][b]:.3f} nats")
    lines.append(f"{'head':<8}{'role':<9}{a:>7}{b:>7}  " + "  ".join(f"{d}:{m}" for d in (a, b) for m in ABLATIONS))
    for row in map(_row, result["rows"]):
        deltas = "  ".join(f"{row['loss_delta'].get(d, {}).get(m, float('nan')):+.4f}" for d in (a, b)
                           for m in ABLATIONS)
        lines.append(f"L{row['layer']}H{row['head']:<5}{row['role']:<9}{row['dormancy'][a]:7.3f}"
                     f"{row['dormancy'][b]:7.3f}  {deltas}")
    for d, sinks in result["entropy_sink_heads"].items():
        dormant = result["dormancy"][d] > 0.5
        agree = 100 * float((dormant == sinks).float().mean())
        lines.append(f"entropy detector on {d}: {int(sinks.sum())} of {sinks.numel()} heads are sink heads "
                     f"(agrees with dormancy > 0.5 on {agree:.0f}% of heads)")
    if result.get("left_out"):
        lines.append(f"remote backend: dormancy and entropies per domain; {result['left_out']}")
    return lines


DORMANT_REPORT = Analysis(
    name="dormant", document="dormant",
    description="active-dormant heads: dormancy per head on prose vs code, ablations",
    method="docs/methods/extreme-tokens.md", settings=DormantReportSettings, compute=compute, rows=rows,
    uses_corpus=False, remote=True, summary=summary, model_check=model_check,
)

DECLARED = (DORMANT_REPORT,)
