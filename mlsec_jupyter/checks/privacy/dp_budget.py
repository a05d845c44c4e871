"""``privacy.dp_budget``: how much privacy a DP-SGD training spent, on this data, against its budget.

Input is a DP training the watcher found (an Opacus accountant's history of ``(σ, q, steps)``
segments, see :mod:`mlsec_jupyter.privacy.opacus`) and, when the session keeps one, the privacy
ledger of the data it trained on (:mod:`mlsec_jupyter.privacy.ledger`, keyed by the content
fingerprint of X). The check only *reads* the ledger; the session records this training in it
once the card is done (DESIGN.md: findings → ledger), using the ``dataset_key``, ``run_id`` and
``history`` metrics of the finding.

ε is computed with the tight PLD accountant of :mod:`mlsec_jupyter.privacy.accounting`, for this
training alone and composed with every earlier DP training or release recorded on the same data
(sequential composition over the ledger). δ is the budget's δ when one is set, else the largest
power of ten not above ``min(1e-5, 1/N)`` (δ must be well below 1/N: a δ near 1/N allows
releasing one row outright — Dwork & Roth, "The Algorithmic Foundations of Differential Privacy",
2014, §2.3). Opacus' own figure from its accountant is shown next to ours when it can be read.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...findings import Finding, Severity
from .._tabular import plural
from ..budget import Budget
from ..registry import register_check

CHECK = "privacy.dp_budget"
#: Without a budget, ε above this is a weak guarantee (medium).
WEAK_EPSILON = 10.0
#: With a budget, spending this share of it is medium; more than all of it is high.
NEAR_BUDGET = 0.8
#: Points on the ε-over-steps curve.
CURVE_POINTS = 12


def default_delta(n_rows: int | None) -> float:
    """The largest power of ten not above ``min(1e-5, 1/n_rows)``."""
    bound = 1e-5 if not n_rows else min(1e-5, 1.0 / n_rows)
    return 10.0 ** math.floor(math.log10(bound))


def _rows(X: Any) -> int | None:
    try:
        return int(X.shape[0])
    except (AttributeError, TypeError, ValueError, IndexError):
        return None


def _history(state: Any) -> list[tuple[float, float, int]]:
    return [(float(s), float(q), int(t)) for s, q, t in list(getattr(state, "history", []) or [])]


def epsilon_curve(history: list[tuple[float, float, int]], delta: float, points: int = CURVE_POINTS,
                  prior: list[tuple[float, float, int]] | None = None) -> tuple[list[int], list[float]]:
    """ε after evenly spaced step counts of ``history`` (composed after ``prior``), for a small plot."""
    from ...privacy.accounting import epsilon_of_history

    total = sum(t for _, _, t in history)
    if total == 0:
        return [], []
    marks = sorted({int(round(v)) for v in np.linspace(0, total, points + 1)[1:]})
    steps, eps = [], []
    for mark in marks:
        prefix, left = [], mark
        for sigma, q, t in history:
            if left <= 0:
                break
            prefix.append((sigma, q, min(t, left)))
            left -= t
        steps.append(mark)
        eps.append(round(float(epsilon_of_history(list(prior or []) + prefix, delta=delta)), 6))
    return steps, eps


@register_check(CHECK, applies_to="dp_training", title="DP budget", requires=("dp_state",), cost="fast")
def dp_budget(*, dp_state: Any, X: Any = None, ledger: Any = None, run_id: str = "",
              delta: float | None = None, budget: Budget) -> list[Finding]:
    """ε spent by a DP-SGD training, composed with earlier ones on the same data, against its budget."""
    from ...privacy.accounting import epsilon_of_history
    from ...provenance import fingerprint

    history = _history(dp_state)
    if not history:
        return [Finding(CHECK, Severity.INFO, "DP training has not taken a step yet",
                        "The optimizer's privacy accountant has no steps recorded, so no privacy is spent yet.",
                        metrics={"epsilon": 0.0, "delta": delta, "budget_epsilon": None})]
    key = _dataset_key(X, fingerprint, budget)
    limit = _budget_of(ledger, key)
    delta = float(delta if delta is not None else limit[1] if limit else default_delta(_rows(X)))
    prior = _prior(ledger, key, run_id)
    budget.checkpoint()
    run_eps = float(epsilon_of_history(history, delta=delta))
    total_eps = float(epsilon_of_history(prior + history, delta=delta)) if prior else run_eps
    budget.checkpoint()
    steps, curve = epsilon_curve(history, delta, prior=prior)
    metrics = _metrics(dp_state, history, delta, run_eps, total_eps, limit, prior, key, run_id, steps, curve)
    return [_finding(metrics, limit, bool(prior), _rows(X))]


def _dataset_key(X: Any, fingerprint: Any, budget: Budget) -> str | None:
    if X is None:
        return None
    try:
        return str(fingerprint(X))
    except Exception:  # data we cannot read exactly: no ledger for it, said in the finding
        budget.note("the training data could not be fingerprinted, so no ledger is kept for it")
        return None


def _budget_of(ledger: Any, key: str | None) -> tuple[float, float] | None:
    if ledger is None or key is None:
        return None
    spec = ledger.budget(key)
    return None if spec is None else (float(spec[0]), float(spec[1]))


def _prior(ledger: Any, key: str | None, run_id: str) -> list[tuple[float, float, int]]:
    if ledger is None or key is None:
        return []
    return [(float(s), float(q), int(t)) for s, q, t in ledger.history(key, exclude_run=run_id or None)]


def _opacus_figure(state: Any, delta: float) -> float | None:
    reader = getattr(state, "opacus_epsilon", None)
    if not callable(reader):
        return None
    try:
        value = float(reader(delta))
    except Exception:  # noqa: BLE001 - Opacus' own figure is a nicety, never a failure
        return None
    return value if math.isfinite(value) else None


def _metrics(state: Any, history: list, delta: float, run_eps: float, total_eps: float,
             limit: tuple[float, float] | None, prior: list, key: str | None, run_id: str,
             steps: list[int], curve: list[float]) -> dict[str, Any]:
    last_sigma, last_q, _ = history[-1]
    metrics: dict[str, Any] = {
        "epsilon": round(total_eps, 6), "delta": delta, "budget_epsilon": None if limit is None else limit[0],
        "run_epsilon": round(run_eps, 6), "steps": sum(t for _, _, t in history),
        "noise_multiplier": last_sigma, "sample_rate": last_q,
        "max_grad_norm": getattr(state, "max_grad_norm", None),
        "earlier_trainings_steps": sum(t for _, _, t in prior),
        "accountant": "pld (tight)",
        "opacus_accountant": getattr(state, "accountant", None),
        "opacus_epsilon": _opacus_figure(state, delta),
        "curve_steps": steps, "curve_epsilon": curve,
        "plot": {"kind": "line", "x": "curve_steps", "y": "curve_epsilon", "x_label": "steps",
                 "y_label": "ε (this training)" if not prior else "ε (all trainings on this data)"},
        "dataset_key": key, "run_id": run_id, "history": [list(h) for h in history],
    }
    if limit is not None:
        metrics["remaining_epsilon"] = round(max(limit[0] - total_eps, 0.0), 6)
        metrics["gauge"] = {"value": round(total_eps, 4), "limit": limit[0], "label": "ε spent of budget"}
    return metrics


def _finding(metrics: dict[str, Any], limit: tuple[float, float] | None, composed: bool,
             n_rows: int | None) -> Finding:
    eps, run_eps, delta = metrics["epsilon"], metrics["run_epsilon"], metrics["delta"]
    what = (f"{plural(metrics['steps'], 'step')} of DP-SGD (noise multiplier {metrics['noise_multiplier']:g}, "
            f"sampling rate {metrics['sample_rate']:.4g})")
    summary = f"{what} spent ε = {run_eps:.3g} at δ = {delta:.0e} (tight PLD accounting)"
    if metrics.get("opacus_epsilon") is not None:
        summary += f"; Opacus' {metrics['opacus_accountant'] or ''} accountant reports {metrics['opacus_epsilon']:.3g}"
    summary += "."
    if composed:
        summary += (f" With the earlier DP trainings recorded on the same data "
                    f"({plural(metrics['earlier_trainings_steps'], 'step')}), the data has spent ε = {eps:.3g} in total.")
    if metrics.get("dataset_key") is None:
        summary += (" The training data could not be identified (no TensorDataset behind the loader, or data "
                    "that cannot be fingerprinted), so this training is not counted in any privacy ledger.")
    if limit is None:
        severity = Severity.MEDIUM if eps > WEAK_EPSILON else Severity.INFO
        title = f"DP training: ε = {eps:.3g} spent (δ = {delta:.0e})"
        if eps > WEAK_EPSILON:
            summary += f" ε above {WEAK_EPSILON:g} is a weak guarantee: an attacker's odds of telling a row in or out can grow by e^ε."
        advice = ("Set a budget for this data with %mlsec budget VAR eps=… delta=… so every later training is "
                  "counted against it." + (" Raise the noise multiplier, train fewer steps or sample smaller "
                                           "batches to lower ε." if eps > WEAK_EPSILON else ""))
    else:
        share = eps / limit[0]
        severity = Severity.HIGH if share > 1 else Severity.MEDIUM if share >= NEAR_BUDGET else Severity.INFO
        title = (f"Privacy budget exceeded: ε = {eps:.3g} of {limit[0]:g}" if share > 1
                 else f"Privacy budget: ε = {eps:.3g} of {limit[0]:g} spent ({100 * share:.0f}%)")
        summary += f" The budget for this data is ε = {limit[0]:g} at δ = {limit[1]:.0e}."
        advice = ("Stop training on this data or raise the noise multiplier; releases beyond the budget void the "
                  "guarantee you set." if share > 1 else
                  "Plan the remaining steps: the gauge shows what is left." if share >= NEAR_BUDGET else "")
    if n_rows is not None and delta >= 1.0 / n_rows:
        summary += f" δ = {delta:.0e} is not below 1/N = {1 / n_rows:.1e}: choose a smaller δ."
    return Finding(CHECK, severity, title, summary, metrics=metrics, recommendation=advice)
