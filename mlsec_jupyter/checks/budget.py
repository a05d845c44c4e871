"""The budget a check runs under: time, row sample size, a private RNG and cooperative cancellation."""

from __future__ import annotations

import math

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ._parallel import LOCAL, Backend

#: Float64 cells (64 MB) of one sampled table. A data check holds at most about three table-sized
#: arrays at once, so a card stays within 256 MB of extra memory however big the data is (issue 9).
MAX_CELLS = 8_000_000


class CheckCancelled(Exception):
    """Raised inside a check at a checkpoint after the user interrupted or turned checks off."""


class CheckTimeout(Exception):
    """Raised inside a check at a checkpoint once its time budget is spent."""


@dataclass
class Budget:
    """Limits for one check run.

    Checks call :meth:`checkpoint` between expensive steps and :meth:`sample_rows` before touching
    big data. Randomness comes only from :meth:`rng`, a private generator, so the user's global
    numpy / ``random`` / torch RNG state is never read or advanced (reliability R9, Q5).
    """

    seconds: float = 30.0
    max_rows: int = 200_000
    #: Cells (rows x features) one sampled table may hold; wide data gets fewer rows.
    max_cells: int = MAX_CELLS
    seed: int = 0
    cancel_event: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    notes: list[str] = field(default_factory=list)
    #: Where heavy sweeps (shadow models, ε values) run: see :mod:`._parallel`.
    backend: Backend = LOCAL
    #: Set by the runner: called with (fraction done, what is being done) by :meth:`progress`.
    on_progress: Callable[[float, str], None] | None = None

    def rng(self) -> np.random.Generator:
        """A fresh private generator; the same seed gives the same sample every run."""
        return np.random.default_rng(self.seed)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def remaining(self) -> float:
        return self.seconds - self.elapsed

    def checkpoint(self) -> None:
        """Stop here if the run was cancelled or the time budget is spent."""
        if self.cancel_event.is_set():
            raise CheckCancelled("cancelled")
        if self.remaining <= 0:
            raise CheckTimeout(f"time budget of {self.seconds:g} s spent")

    def sample_rows(self, n_rows: int, *, what: str = "rows") -> np.ndarray | None:
        """Sorted row indices to look at when ``n_rows`` exceeds ``max_rows``, else ``None`` (use all).

        Sorted indices keep memory-mapped reads sequential (reliability B17). The sampling is
        recorded in :attr:`notes`, so the card can say what was sampled.
        """
        if n_rows <= self.max_rows:
            return None
        idx = np.sort(self.rng().choice(n_rows, size=self.max_rows, replace=False))
        self.note(f"sampled {self.max_rows:,} of {n_rows:,} {what}")
        return idx

    def progress(self, fraction: float, text: str = "") -> None:
        """Report how far a long check is (0–1) and what it is doing; a no-op outside the runner.
        Also a :meth:`checkpoint`."""
        self.checkpoint()
        report = self.on_progress  # the runner clears it when the check has ended
        if report is not None:
            try:
                share = float(fraction)
                report(min(max(share, 0.0), 1.0) if math.isfinite(share) else 0.0, text)
            except Exception:  # a display hiccup must not fail the check
                pass

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)
