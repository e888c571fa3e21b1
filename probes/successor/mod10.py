"""Mod-10 structure of MLP0 outputs (spec: successor-heads.md, "Mod-10 features").

Linear probe: softmax regression (torch, L2, LBFGS) for index mod 10 on MLP0(W_E[t]) of the
single-token numbers, trained on a random 75% and scored on the held-out 25% (chance 0.1).
Directions f_0..f_9: the class means of the (standardized-free) MLP0 outputs minus the grand mean
(the paper's are SAE features; these are the probe-free analogue), with the cosine between each f_i
and the probe's weight vector for class i reported as their agreement.
Vector arithmetic: for an item x of index k in a task and each j != k mod 10, the source vector
MLP0(E(x)) - f_{k mod 10} + f_j goes through the chosen head's effective OV circuit; two targets are
scored, both within x's decade (index k - (k mod 10) + j, skipped when that item is not in the task):
"index_j" (the item with index j, the spec's wording) and "successor_of_j" (the item after it,
what a successor head should output). Index convention: Monday = January = A = 1, " 1" = 1.
Tokenizers with fewer than `min_numbers` single-token numbers (SmolLM2, Gemma 3: only bare digits)
get a result with status "not_applicable" and the reason; nothing is fitted to ten points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from probes.model.hooked_model import HookedModel
from probes.results import result_metadata
from probes.successor.dataset import SuccessionDataset, build_dataset
from probes.successor.ov import DEFAULT_SETTINGS, OVSettings, mlp0_of_tokens, ov_logits_of_vectors


@dataclass
class Mod10Result:
    metadata: dict[str, Any]
    status: str  # "ok" | "not_applicable"
    reason: str = ""
    n_numbers: int = 0
    train_accuracy: float = float("nan")
    heldout_accuracy: float = float("nan")
    chance: float = 0.1
    probe_feature_cosine: list[float] = field(default_factory=list)
    arithmetic: dict[str, dict[str, float]] = field(default_factory=dict)
    head: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"metadata": self.metadata, "status": self.status, "reason": self.reason, "n_numbers": self.n_numbers,
                "train_accuracy": self.train_accuracy, "heldout_accuracy": self.heldout_accuracy,
                "chance": self.chance, "probe_feature_cosine": self.probe_feature_cosine,
                "arithmetic": self.arithmetic, "head": list(self.head) if self.head else None}


def fit_probe(x: Tensor, y: Tensor, n_classes: int = 10, l2: float = 1e-3, steps: int = 200) -> Tensor:
    """Softmax regression weights [d + 1, n_classes] (last row the bias), fitted with LBFGS."""
    xb = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    w = torch.zeros(xb.shape[1], n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xb @ w, y) + l2 * w[:-1].pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def _predict(w: Tensor, x: Tensor) -> Tensor:
    return (torch.cat([x, torch.ones(len(x), 1)], dim=1) @ w).argmax(dim=1)


def mod10_analysis(
    model: HookedModel, head: tuple[int, int] | None = None, dataset: SuccessionDataset | None = None,
    settings: OVSettings = DEFAULT_SETTINGS, seed: int = 0, min_numbers: int = 30,
) -> Mod10Result:
    """Probe for index mod 10, f_i directions, and vector arithmetic through `head`'s OV circuit."""
    s = settings.resolved(model)
    ds = dataset if dataset is not None else build_dataset(model.tokenizer)
    meta = result_metadata(model, {**s.to_dict(), "min_numbers": min_numbers, "head": head}, seed)
    numbers = next((t for t in ds.tasks if t.name == "numbers"), None)
    if numbers is None or numbers.form != "space" or len(numbers.items) < min_numbers:
        n = 0 if numbers is None or numbers.form != "space" else len(numbers.items)
        return Mod10Result(meta, "not_applicable", (
            f"{model.spec}'s tokenizer has {n} single-token numbers with a leading space (it splits numbers into "
            f"digits); a mod-10 probe needs at least {min_numbers}, so there is no mod-10 structure to find."),
            n_numbers=n)
    x = mlp0_of_tokens(model, numbers.token_ids, s).float().cpu()  # the probe is fit on the CPU
    y = torch.tensor(numbers.indices) % 10
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=gen)
    n_train = int(0.75 * len(y))
    tr, te = perm[:n_train], perm[n_train:]
    mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
    w = fit_probe((x[tr] - mu) / sd, y[tr])
    train_acc = float((_predict(w, (x[tr] - mu) / sd) == y[tr]).float().mean())
    test_acc = float((_predict(w, (x[te] - mu) / sd) == y[te]).float().mean())
    f = torch.stack([x[y == c].mean(0) for c in range(10)]) - x.mean(0)
    probe_dirs = w[:-1].T / sd  # back in the raw coordinates
    cos = torch.nn.functional.cosine_similarity(probe_dirs, f, dim=1).tolist()
    result = Mod10Result(meta, "ok", n_numbers=len(y), train_accuracy=train_acc, heldout_accuracy=test_acc,
                         probe_feature_cosine=[float(c) for c in cos], head=head)
    if head is not None:
        result.arithmetic = {t.name: vector_arithmetic(model, t, f, head, s) for t in ds.tasks if t.form == "space"}
    return result


def vector_arithmetic(model: HookedModel, task: Any, f: Tensor, head: tuple[int, int],
                      settings: OVSettings) -> dict[str, float]:
    """Success rates of MLP0(E(x)) - f_i + f_j through one head's OV circuit (see the module docstring)."""
    x = mlp0_of_tokens(model, task.token_ids, settings).float().cpu()
    pos = {idx: p for p, idx in enumerate(task.indices)}
    sources, hit_j, hit_succ = [], [], []
    for p, k in enumerate(task.indices):
        for j in range(10):
            target = k - k % 10 + j
            if j == k % 10 or target not in pos:
                continue
            sources.append(x[p] - f[k % 10] + f[j])
            hit_j.append(pos[target])
            hit_succ.append(pos.get(target + 1, -1))
    if not sources:
        return {"n": 0, "index_j": float("nan"), "successor_of_j": float("nan")}
    logits = ov_logits_of_vectors(model, torch.stack(sources), head[0], head[1], task.token_ids, settings)
    pred = logits.argmax(dim=1)
    succ = torch.tensor(hit_succ)
    has_succ = succ >= 0
    return {"n": len(sources),
            "index_j": float((pred == torch.tensor(hit_j)).float().mean()),
            "successor_of_j": float((pred[has_succ] == succ[has_succ]).float().mean()) if has_succ.any() else float("nan"),
            "chance": 1.0 / len(task.items)}
