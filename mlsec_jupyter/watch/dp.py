"""Noticing DP-SGD progress that the cell's source does not show.

The AST finds a training cell by its ``backward()`` and ``step()`` calls. Opacus' own tutorials train
through a function defined in one cell and called in another (``for epoch in range(E):
train(model, loader, optimizer)``), which the AST cannot see. The privacy ledger must count those
steps too, so the accountants themselves are watched:

* a cell whose source mentions Opacus' entry points (``make_private``, ``PrivacyEngine``,
  ``DPOptimizer``) gets one scan of the namespace afterwards, and the names holding an engine or an
  optimizer are remembered (with the steps their accountant has taken);
* after every later cell, only those names are read (a few attribute reads, no user code) and an
  accountant with more steps than last reported becomes a :class:`~mlsec_jupyter.artifacts.DPTraining`
  on that cell's card, with the data the engine trained on (its ``data_names``).

Cells that do not mention Opacus and come before any engine exists cost one substring test.
"""

from __future__ import annotations

import sys
from typing import Any, Mapping

from ..artifacts import Dataset, DPTraining, Role, features_of

_ENTRY_POINTS = ("make_private", "PrivacyEngine", "DPOptimizer")


def mentions_opacus(source: str) -> bool:
    return any(word in source for word in _ENTRY_POINTS)


class AccountantWatch:
    """Opacus accountants the session has seen, and the steps already on a card."""

    def __init__(self) -> None:
        self.holders: set[str] = set()
        self.reported: dict[str, int] = {}

    def note(self, states: list[Any]) -> None:
        """Remember these accountants as reported up to their current step count."""
        for s in states:
            self.holders.update(getattr(s, "engines", ()) or ())
            self.holders.update(getattr(s, "optimizers", ()) or ())
            self.reported[s.run_id] = max(self.reported.get(s.run_id, 0), int(s.steps))

    def learn(self, ns: Mapping[str, Any]) -> None:
        """After a cell that mentions Opacus: find its engines and optimizers (steps so far count as seen)."""
        from ..privacy.opacus import find_dp_states

        for s in find_dp_states(ns):
            self.holders.update(getattr(s, "engines", ()) or ())
            self.holders.update(getattr(s, "optimizers", ()) or ())
            self.reported.setdefault(s.run_id, int(s.steps))

    def progressed(self, ns: Mapping[str, Any], known_runs: set[str]) -> list[DPTraining]:
        """DP trainings whose accountant took steps since last reported, other than ``known_runs``."""
        if not self.holders or "opacus" not in sys.modules:
            return []
        from ..privacy.opacus import find_dp_states

        held = {n: ns[n] for n in self.holders if n in ns}
        grown = [s for s in find_dp_states(held)
                 if s.run_id not in known_runs and s.steps > self.reported.get(s.run_id, 0)]
        if not grown:
            return []
        full = {s.run_id: s for s in find_dp_states(ns)}  # once, to name the data and the model
        out = []
        for s in grown:
            state = full.get(s.run_id, s)
            self.note([state])
            out.append(DPTraining(state=state, model_name=(state.models or ("",))[0],
                                  train=_training_data(state, ns), run_id=state.run_id))
        return out


def _training_data(state: Any, ns: Mapping[str, Any]) -> Dataset | None:
    for name in getattr(state, "data_names", ()) or ():
        X = features_of(ns.get(name))
        if X is not None:
            return Dataset(X=X, name=name, role=Role.TRAIN, source="Opacus engine's data set")
    return None
