"""The request budget of remote runs: payload and response sizes estimated before anything is sent.

Spec: docs/remote.md. Every measurement of a RemoteModel (probes/remote_analyses.py) is one request.
Before it is sent, `RequestPlan` states what it carries (the token ids plus the traced code) and what
comes back (the saved statistics, by shape); `check_budget` refuses a plan over the budget, with the
numbers and how to shrink it. Batching, progress and resuming are the analysis runner's
(probes.analysis.run_analysis), the same as for a local model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from probes.errors import InputError

# The traced block's source plus the by-value source of the statistic functions it calls, measured on
# the intercepted requests of tests/probes/test_remote_analyses.py (largest: 36 kB); rounded up.
CODE_BYTES = 64_000
ID_BYTES = 8  # int64 token ids
VALUE_BYTES = 4  # every statistic comes back as float32
MAX_PAYLOAD_BYTES = 8_000_000
MAX_RESPONSE_BYTES = 64_000_000


class RequestTooLarge(InputError):
    """A remote request would be over the budget; the message gives the sizes and how to shrink it."""


@dataclass(frozen=True)
class RequestBudget:
    """Limits on one request: the bytes sent and the bytes the saved statistics take coming back."""

    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    max_response_bytes: int = MAX_RESPONSE_BYTES


@dataclass
class RequestPlan:
    """What one analysis will send and get back, per request (chunk of `batch` sequences of T tokens).

    `saved` maps each saved statistic to its shape for one full request; `per_sequence` names those whose
    first axis is the request's sequences (they shrink with a smaller batch).
    """

    analysis: str
    n_requests: int
    batch: int
    T: int
    n_layers: int
    saved: dict[str, tuple[int, ...]]
    per_sequence: set[str] = field(default_factory=set)
    extra_payload_bytes: int = 0

    @property
    def payload_bytes(self) -> int:
        """Token ids (and the attention mask, when sent) plus the code."""
        return CODE_BYTES + self.batch * self.T * ID_BYTES + self.extra_payload_bytes

    @property
    def response_bytes(self) -> int:
        return sum(math.prod(shape) * VALUE_BYTES for shape in self.saved.values())

    @property
    def total_response_bytes(self) -> int:
        return self.response_bytes * self.n_requests

    def summary(self) -> dict[str, object]:
        return {"analysis": self.analysis, "requests": self.n_requests, "batch": self.batch, "T": self.T,
                "layers": self.n_layers, "payload_bytes": self.payload_bytes,
                "response_bytes": self.response_bytes, "total_response_bytes": self.total_response_bytes,
                "saved": {k: list(v) for k, v in self.saved.items()}}


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def check_budget(plan: RequestPlan, budget: RequestBudget | None = None) -> RequestPlan:
    """Refuse (RequestTooLarge) a plan whose request is over the budget; return it otherwise."""
    budget = budget or RequestBudget()
    problems = []
    if plan.payload_bytes > budget.max_payload_bytes:
        problems.append(f"its payload is {human(plan.payload_bytes)} (limit {human(budget.max_payload_bytes)})")
    if plan.response_bytes > budget.max_response_bytes:
        parts = ", ".join(f"{k} {list(v)} = {human(math.prod(v) * VALUE_BYTES)}" for k, v in plan.saved.items())
        problems.append(f"its response is {human(plan.response_bytes)} ({parts}; limit "
                        f"{human(budget.max_response_bytes)})")
    if not problems:
        return plan
    raise RequestTooLarge(
        f"The remote {plan.analysis} request ({plan.batch} sequences x {plan.T} tokens, {plan.n_layers} layers) "
        f"is over the budget: {'; '.join(problems)}. Shrink it: {shrink_advice(plan, budget)}"
    )


def shrink_advice(plan: RequestPlan, budget: RequestBudget) -> str:
    """How to bring a request under the budget: a batch size that fits, fewer layers, shorter sequences."""
    fixed = sum(math.prod(s) for k, s in plan.saved.items() if k not in plan.per_sequence) * VALUE_BYTES
    per_seq = sum(math.prod(s) for k, s in plan.saved.items() if k in plan.per_sequence) * VALUE_BYTES
    per_seq //= max(plan.batch, 1)
    tips = []
    if per_seq and budget.max_response_bytes > fixed:
        fits = (budget.max_response_bytes - fixed) // per_seq
        tips.append(f"batch_size={fits} (each sequence adds {human(per_seq)})" if fits >= 1
                    else "a single sequence is already too large")
    if plan.n_layers > 1:
        share = budget.max_response_bytes / max(plan.response_bytes, 1)
        tips.append(f"fewer layers (about {max(1, int(plan.n_layers * share))} of {plan.n_layers} fit)")
    if plan.payload_bytes > budget.max_payload_bytes:
        tips.append(f"fewer sequences per request (the ids take {human(plan.batch * plan.T * ID_BYTES)})")
    tips.append(f"shorter sequences than T={plan.T} (the per-key statistics grow with T)")
    return "; ".join(tips) + ". Or raise the limits: RequestBudget(max_payload_bytes=..., max_response_bytes=...)."
