"""One progress and cancel protocol for every long analysis (docs/architecture.md, "Pipelines").

A pipeline takes `reporter: Reporter | None` and, between its steps,
- calls `reporter.update(text, done, total)` (fraction done / total, never decreasing, 1 at the end), and
- calls `reporter.check()`, which raises `Cancelled` when the reporter's cancel flag is set.

Implementations: `NullReporter` (the default: records, shows nothing), `TqdmReporter` (terminal, the
CLI's) and app.ui.progress.StreamlitReporter (st.progress with text). `Reporter.part(lo, hi)` gives a
stage of a pipeline its own 0..1 inside the parent's [lo, hi], so a pipeline calling another pipeline
passes `reporter.part(...)` down and the parent's fraction stays monotone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from probes.errors import GlasshouseError

R = TypeVar("R")


class Cancelled(GlasshouseError):
    """A run stopped between two steps because its reporter's cancel flag was set."""


class Reporter:
    """Step text, fraction done and a cancel flag; subclasses show them (`show`).

    cancel: a callable read at every `check()` (e.g. a Stop button's session flag), beside the flag
    `cancel_now()` sets. `fraction` never decreases; `done` and `text` are the last reported ones.
    """

    def __init__(self, cancel: Callable[[], bool] | None = None) -> None:
        self.cancel_flag = cancel
        self.cancelled = False
        self.fraction = 0.0
        self.done = 0.0
        self.total = 1.0
        self.text = ""
        self.partial: Any = None

    def update(self, text: str, done: float, total: float, partial: Any = None) -> None:
        """Report `done` of `total` steps (fraction clamped to 0..1, kept monotone) with a line of text.

        partial: what the run has so far (e.g. metric rows), for a live view; may be None."""
        fraction = min(1.0, max(0.0, float(done) / float(total))) if total else 1.0
        self.fraction = max(self.fraction, fraction)
        self.done, self.total, self.text = float(done), float(total), text
        if partial is not None:
            self.partial = partial
        self.show()

    def check(self) -> None:
        """Raise Cancelled when the cancel flag is set (call it between steps)."""
        if self.cancelled or (self.cancel_flag is not None and self.cancel_flag()):
            self.cancelled = True
            raise Cancelled(f"Stopped by the user{f' ({self.text})' if self.text else ''}.")

    def cancel_now(self) -> None:
        self.cancelled = True

    def part(self, lo: float, hi: float) -> Reporter:
        """A child reporter whose 0..1 maps onto this one's lo..hi (same cancel flag)."""
        return _Part(self, lo, hi)

    def show(self) -> None:
        """Display the current state (nothing here)."""

    def close(self) -> None:
        """Release any display (a tqdm bar)."""


class NullReporter(Reporter):
    """Shows nothing; still records the fraction and honours cancel_now()."""


class _Part(Reporter):
    def __init__(self, parent: Reporter, lo: float, hi: float) -> None:
        super().__init__()
        self.parent, self.lo, self.hi = parent, float(lo), float(hi)

    def show(self) -> None:
        self.parent.update(self.text, self.lo + (self.hi - self.lo) * self.fraction, 1.0, self.partial)

    def check(self) -> None:
        self.parent.check()

    def cancel_now(self) -> None:
        self.parent.cancel_now()


class TqdmReporter(Reporter):
    """A terminal bar (tqdm over 0..1000 of the fraction), the step text as its description."""

    def __init__(self, desc: str = "", cancel: Callable[[], bool] | None = None, disable: bool = False,
                 leave: bool = True) -> None:
        super().__init__(cancel)
        from tqdm.auto import tqdm

        self.desc = desc
        self.bar = tqdm(total=1000, desc=desc, disable=disable, leave=leave,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]{postfix}")

    def show(self) -> None:
        target = int(round(self.fraction * 1000))
        if target > self.bar.n:
            self.bar.update(target - self.bar.n)
        if self.text:
            self.bar.set_postfix_str(self.text, refresh=False)
        if self.fraction >= 1.0:
            self.close()

    def close(self) -> None:
        self.bar.close()


def as_reporter(reporter: Reporter | None, progress: bool = False, desc: str = "") -> Reporter:
    """The reporter a pipeline uses: `reporter`; else a terminal bar when `progress` (a pipeline's
    show-a-bar switch), else a NullReporter."""
    if reporter is not None:
        return reporter
    return TqdmReporter(desc, leave=False) if progress else NullReporter()


def batches(rows: Sequence[Any] | Any, batch_size: int, run: Callable[[Any], R], reporter: Reporter | None = None,
            what: str = "") -> list[R]:
    """run(rows[s : s + batch_size]) for every batch in order: a cancel is checked before each batch and
    `reporter` updated after each ("<what>: batch i of n"). The results, one per batch."""
    rep = reporter or NullReporter()
    starts = range(0, len(rows), batch_size)
    out = []
    for done, start in enumerate(starts, start=1):
        rep.check()
        out.append(run(rows[start : start + batch_size]))
        rep.update(f"{what + ': ' if what else ''}batch {done} of {len(starts)}", done, len(starts))
    return out
