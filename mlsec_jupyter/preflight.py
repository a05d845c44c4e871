"""Checks that must run *before* a cell does (orchestration; no IPython here).

A cell's source is known before it runs; some risks are cheaper to stop than to report:

* **DP budget** (issue 4): a cell that trains with DP-SGD on data that has a privacy budget. The
  planned spend is the accountant's history so far plus ``epochs × round(1/q)`` more steps (one
  epoch of Poisson sampling at rate ``q`` is ``1/q`` expected steps) at the optimizer's noise
  multiplier, where ``epochs`` is the bound of the cell's ``for _ in range(N)`` loop around the
  batch loop (1 when there is none). If that would exceed the budget, the card says so before the
  cell runs, and with ``budget_policy=block`` the cell does not run.

:func:`preflight` returns the findings and, when the cell must not run, the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .artifacts import Kind, classify, features_of
from .findings import Finding, Severity
from .watch.cell import CellIntent


@dataclass
class Preflight:
    """What :func:`preflight` found: findings for a card, and the reason to block the cell (if any)."""

    findings: list[Finding] = field(default_factory=list)
    block: str | None = None
    subject: str = "before this cell runs"


def preflight(intent: CellIntent, ns: Mapping[str, Any], session: Any) -> Preflight:
    """Every pre-run check that applies to this cell (see the module docstring)."""
    result = Preflight()
    if intent.torch_training:
        _dp_budget(intent, ns, session, result)
    return result


def _epochs(intent: CellIntent, ns: Mapping[str, Any]) -> int:
    for bound in intent.epoch_loops:
        value = ns.get(bound) if isinstance(bound, str) else bound
        if type(value) is int and value >= 0:
            return value
    return 1


def _loader_features(intent: CellIntent, ns: Mapping[str, Any]) -> Any:
    for name in sorted(intent.names):
        obj = ns.get(name)
        if classify(obj) is Kind.TORCH_LOADER:
            return features_of(obj)
    return None


def _dp_budget(intent: CellIntent, ns: Mapping[str, Any], session: Any, result: Preflight) -> None:
    ledger = session.ledger
    if not ledger.keys():
        return  # no data has a ledger: nothing to protect (and nothing to fingerprint)
    X = _loader_features(intent, ns)
    if X is None:
        return
    from .privacy.opacus import find_dp_states
    from .provenance import fingerprint

    key = fingerprint(X)
    limit = ledger.budget(key)
    states = find_dp_states(ns)
    if limit is None or not states:
        return
    state = states[0]
    if state.noise_multiplier is None or not state.sample_rate:
        return  # σ or q not known before the first step: the card after the cell still counts it
    sigma, q = float(state.noise_multiplier), float(state.sample_rate)
    epochs = _epochs(intent, ns)
    planned = state.planned_history(epochs * state.steps_per_epoch)
    over = ledger.would_exceed(key, planned, run_id=f"{session.session_id}:{state.run_id}")
    if over is None:
        return
    eps_after, eps_budget = over
    policy = session.config.budget_policy
    title = f"This training would exceed the privacy budget: ε ≈ {eps_after:.3g} of {eps_budget:g}"
    summary = (f"The cell trains {epochs} epoch(s) of DP-SGD (noise multiplier {sigma:g}, sampling rate {q:.4g}, "
               f"about {round(1.0 / q):,} steps an epoch) on data whose privacy budget is ε = {eps_budget:g} at "
               f"δ = {limit[1]:.0e}; with what is already spent on it, ε would reach about {eps_after:.3g}.")
    if policy == "block":
        summary += " The cell was not run (budget_policy=block)."
    advice = ("Raise the noise multiplier, train fewer epochs or use a smaller sampling rate; or raise the budget "
              "deliberately with %mlsec budget VAR eps=… delta=…. To run it anyway: %mlsec config budget_policy=warn.")
    result.findings.append(Finding("privacy.dp_budget", Severity.HIGH, title, summary,
                                   metrics={"epsilon": round(eps_after, 6), "delta": limit[1],
                                            "budget_epsilon": eps_budget, "planned_epochs": epochs,
                                            "gauge": {"value": round(eps_after, 4), "limit": eps_budget,
                                                      "label": "ε after this cell, of budget"}},
                                   recommendation=advice))
    if policy == "block":
        result.block = (f"mlsec-jupyter blocked this cell: the DP training would spend ε ≈ {eps_after:.3g}, over the "
                        f"budget of {eps_budget:g} for this data. {advice}")
