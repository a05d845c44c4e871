"""``robustness.evasion``: how small a change to an input fools the model.

The attack depends on what the model offers:

* **torch modules** — white-box PGD (Madry et al., ICLR 2018: random start, :data:`._attacks.PGD_STEPS`
  steps of 2.5·ε/steps) and FGSM (Goodfellow et al., ICLR 2015) at every ε, L∞ or L2, on a private
  eval-mode copy (:mod:`._attacks`);
* **scikit-learn linear classifiers** (also behind affine scalers in a Pipeline) — the exact minimal
  perturbation of every row in closed form (:func:`._attacks.linear_minimal_perturbation`), so the
  robust accuracy at any ε is exact, not an attack's estimate;
* **anything else with ``predict``** — the decision-based HopSkipJump attack (Chen et al., IEEE S&P
  2020) with a bounded number of queries per row: an upper bound on the robust accuracy.

ε is measured in the data's own units or, when features have different scales, in each feature's
standard deviations, and the ε values come from the data: fractions of half the median distance
between rows of different classes (:mod:`._common`). Adversarial rows stay inside ε and inside the data's
range. The severity is read at a *small* ε, a fifth of that half-gap (a tenth of the typical distance to
another class): a model whose accuracy falls by half there is fooled by changes far smaller than what
separates its classes.

Gradient masking (Athalye, Carlini & Wagner, ICML 2018; Carlini et al., "On Evaluating Adversarial
Robustness", 2019, §5–6) makes white-box numbers look better than they are. Whenever FGSM or PGD runs, these
signs are looked for and reported: PGD weaker than FGSM; a black-box attack succeeding where PGD failed;
zero or vanishing input gradients on correctly classified rows; robust accuracy not falling as ε grows;
an attack allowed the whole data range still failing; different outputs for the same input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...findings import Finding, Severity
from .._intervals import rate_ci
from .._parallel import sweep
from ..budget import Budget, CheckTimeout
from ..registry import register_check
from . import _attacks as A
from ._common import (GAP_FRACTIONS, NotProbed, Target, check_eps, check_norm, class_gap, codes_of, data_scale,
                      eps_grid, is_classifier_probe, linear_form, norm_words, prepare_target, read_rows, round_sig,
                      skipped)

CHECK = "robustness.evasion"
ATTACKS = ("auto", "fgsm", "pgd", "exact", "blackbox")
#: Rows attacked by default, per attack, and in the full sweep (``full=True``, ``%mlsec probe``);
#: ``n_rows`` overrides both.
DEFAULT_ROWS = {"pgd": 500, "fgsm": 500, "exact": 5000, "blackbox": 100}
FULL_ROWS = {"pgd": 2000, "fgsm": 2000, "exact": 20000, "blackbox": 400}
#: ε of the full sweep, as fractions of the class half-gap.
FULL_FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.55, 0.7, 1.0)
#: Training rows read to measure the data's scale, range and class gap.
REFERENCE_ROWS = 2000
#: The ε at which the severity is read, as a fraction of the class half-gap.
SMALL_EPS_FRACTION = GAP_FRACTIONS[1]
#: Relative accuracy drop at the small ε for each severity.
DROP_HIGH, DROP_MEDIUM, DROP_LOW = 0.5, 0.2, 0.05
#: Share of the time budget the ε sweep may use before it stops (the rest: masking checks, findings).
SWEEP_SHARE = 0.6
#: Rows of the black-box cross-check of a white-box attack, and how many of them (at least, and as a
#: share) the black box must fool beyond PGD — and more than twice as many as PGD fools beyond it —
#: to be called a sign of masking (on a plain MLP an L2 PGD and HopSkipJump each win a few rows).
CROSS_CHECK_ROWS = 40
CROSS_CHECK_MIN_ROWS, CROSS_CHECK_SHARE = 5, 0.2
#: Robust accuracy an attack allowed the whole data range may keep before it is called suspicious.
UNBOUNDED_MAX_ACCURACY = 0.2
#: An input gradient (unit space) at most this large counts as vanished: float32 softmax saturates and
#: rounding steps give exactly 0; a trained model's gradients on correct rows are around 1e-3 to 1e1.
VANISHING_GRADIENT = 1e-12
#: Points by which PGD may trail FGSM (or a larger ε a smaller one) before it is called masking.
MASKING_TOLERANCE = 0.02
_ADVICE = ("Train with adversarial examples (PGD adversarial training, Madry et al. 2018, or TRADES) to raise "
           "robust accuracy; for a guarantee, use randomized smoothing (Cohen et al. 2019), which certifies an "
           "L2 radius. Input transformations (JPEG, denoising, rounding) usually only hide the gradient. On "
           "tabular data, limit which features a caller can set and validate their ranges where the model is "
           "served.")
_MASKING_ADVICE = ("Do not trust the white-box numbers alone: re-run with a gradient-free attack "
                   "(%mlsec probe MODEL --attack blackbox), average gradients over the model's randomness "
                   "(EOT) and replace non-differentiable steps by a differentiable approximation (BPDA) "
                   "(Athalye, Carlini & Wagner, ICML 2018).")


def _which_attack(attack: str, model: Any, target: Target) -> str:
    if attack in ("fgsm", "pgd"):
        if not target.probe.is_torch:
            raise ValueError(f"attack={attack!r} needs the model's gradients, which only torch modules give here; "
                             f"use attack='exact' for a linear model or attack='blackbox' for "
                             f"{type(model).__name__}.")
        return attack
    if attack == "exact":
        if target.probe.is_torch or linear_form(model, target.values[:50]) is None:
            raise ValueError(f"attack='exact' needs a scikit-learn linear classifier (coef_, intercept_, "
                             f"decision_function), got {type(model).__name__}; use attack='blackbox' or 'pgd'.")
        return "exact"
    if attack == "blackbox":
        return "blackbox"
    if target.probe.is_torch:
        return "pgd"
    return "exact" if linear_form(model, target.values[:50]) is not None else "blackbox"


def _reference(X: Any, y: Any, target: Target, budget: Budget) -> tuple[np.ndarray, np.ndarray]:
    """Training rows (numeric, finite, labels as 0..C-1 codes) for the scale and the class gap, with the
    attacked rows added; the attacked rows alone when X cannot be read."""
    values, codes = target.values, target.codes
    if X is None or y is None:
        return values, codes
    try:
        ref = read_rows(X, y, Budget(seconds=max(budget.remaining, 0.1), max_rows=REFERENCE_ROWS,
                                     seed=budget.seed + 1, cancel_event=budget.cancel_event),
                        max_rows=REFERENCE_ROWS)
    except NotProbed:
        return values, codes
    if ref.values.shape[1] != target.n_features or not ref.numeric:
        return values, codes
    both = np.concatenate([ref.labels.astype(target.labels.dtype, copy=False)
                           if ref.labels.dtype.kind in "iuf" and target.labels.dtype.kind in "iu" else ref.labels,
                           target.labels])
    try:
        _, joint = codes_of(both)
    except TypeError:
        return values, codes
    return np.vstack([ref.values, values]), joint


def _label_columns(model: Any, labels: np.ndarray) -> np.ndarray:
    classes = np.asarray(getattr(model, "classes_", []))
    out = np.full(len(labels), -1, dtype=np.int64)
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    for j, v in enumerate(labels.tolist()):
        out[j] = lookup.get(v, -1)
    return out


# ==================================================================================================
# the check
# ==================================================================================================
@register_check(CHECK, applies_to="model", title="Evasion robustness", requires=("training_data",), cost="slow")
def evasion(*, model: Any, X: Any, y: Any = None, X_test: Any = None, y_test: Any = None,
            framework: str = "other", eps: Any = None, attack: str = "auto", norm: str = "linf",
            steps: int = A.PGD_STEPS, n_rows: int | None = None, scale: str = "auto", full: bool = False,
            budget: Budget) -> list[Finding]:
    """Robust accuracy over a range of ε (see the module docstring).

    ``X``/``y``: the data the model was fitted on (or, called directly, the rows to attack);
    ``X_test``/``y_test``: held-out rows, attacked when given. ``eps``: ε values (default: from the data);
    ``attack``: ``"auto"``, ``"fgsm"``, ``"pgd"``, ``"exact"`` or ``"blackbox"``; ``norm``: ``"linf"`` or
    ``"l2"``; ``steps``: PGD iterations; ``n_rows``: rows attacked (default per attack:
    :data:`DEFAULT_ROWS`); ``scale``: ``"auto"``, ``"data"`` (ε in the data's units) or ``"std"`` (ε in each
    feature's standard deviations); ``full``: the whole sweep (:data:`FULL_ROWS` rows, :data:`FULL_FRACTIONS`
    ε, most of the budget) instead of the quick automatic one.
    """
    if attack not in ATTACKS:
        raise ValueError(f"attack must be one of {', '.join(ATTACKS)}, got {attack!r}.")
    norm = check_norm(norm)
    eps_given = None if eps is None else check_eps(eps)
    if int(steps) < 1:
        raise ValueError(f"steps must be at least 1, got {steps!r}.")
    if n_rows is not None and int(n_rows) < 1:
        raise ValueError(f"n_rows must be at least 1, got {n_rows!r}.")
    if not is_classifier_probe(model):
        return [skipped(CHECK, "Evasion robustness not checked",
                        f"{type(model).__name__} is a regressor; robustness is measured as classification accuracy.")]
    held_out = X_test is not None and y_test is not None
    Xa, ya = (X_test, y_test) if held_out else (X, y)
    try:
        rows_for = FULL_ROWS if full else DEFAULT_ROWS
        probe_rows = int(n_rows) if n_rows else max(rows_for.values())
        target = prepare_target(model, Xa, ya, budget, max_rows=probe_rows, name="X_test" if held_out else "X",
                                deterministic=True)
        kind = _which_attack(attack, model, target)
        if not n_rows and target.n_rows > rows_for[kind]:
            keep = np.sort(budget.rng().choice(target.n_rows, size=rows_for[kind], replace=False))
            target = _subset(target, keep)
    except NotProbed as exc:
        return [skipped(CHECK, "Evasion robustness not checked", exc.message, exc.severity)]
    budget.checkpoint()
    ref_values, ref_codes = _reference(X if held_out else None, y if held_out else None, target, budget)
    sc = data_scale(ref_values, scale)  # the reference rows include the attacked ones
    gap = class_gap(ref_values, ref_codes, sc, norm, budget.rng())
    eps_list = eps_given or eps_grid(gap, FULL_FRACTIONS if full else GAP_FRACTIONS)
    if not eps_list:
        return [skipped(CHECK, "Evasion robustness not checked",
                        "The data holds a single class, so no ε can be derived from it; pass eps=[...].")]
    clean = target.correct(target.values, budget)
    ctx = _Context(target, sc, norm, eps_list, clean, budget, kind, int(steps), 0.9 if full else SWEEP_SHARE)
    if kind == "exact":
        result = _run_exact(ctx, model)
    elif kind == "blackbox":
        result = _run_blackbox(ctx, ref_values)
    else:
        result = _run_white_box(ctx, ref_values)
    notes = list(dict.fromkeys(target.notes + result.pop("notes", []) + budget.notes))
    metrics = _metrics(ctx, result, gap, held_out, notes)
    findings = [_main_finding(ctx, metrics, gap)]
    if metrics.get("masking_flags"):
        findings.append(_masking_finding(metrics))
    return findings


def _subset(target: Target, keep: np.ndarray) -> Target:
    return Target(target.probe, target.values[keep], target.labels[keep], target.codes[keep], target.classes,
                  target.positions[keep], target.n_total, target.notes)


class _Context:
    """What every attack runner needs."""

    def __init__(self, target: Target, scale: Any, norm: str, eps: list[float], clean: np.ndarray,
                 budget: Budget, kind: str, steps: int, share: float) -> None:
        self.target, self.scale, self.norm, self.eps = target, scale, norm, eps
        self.clean, self.budget, self.kind, self.steps = clean, budget, kind, steps
        self.share = share  # of the time budget the ε sweep may use
        self.seed = int(budget.rng().integers(2**31))


def _accuracy(ctx: _Context, fooled: np.ndarray) -> float:
    return float(np.mean(ctx.clean & ~fooled))


# -- white box --------------------------------------------------------------------------------------
def _white(ctx: _Context, rows: np.ndarray, eps: float, fgsm: bool, steps: int | None = None) -> A.WhiteBoxResult:
    t = ctx.target
    sc = ctx.scale
    return A.torch_attack(t.probe._model, t.probe.row_shape, t.values[rows], t.labels[rows], eps, norm=ctx.norm,
                          unit=sc.unit, lower=sc.lower, upper=sc.upper,
                          steps=1 if fgsm else (steps or ctx.steps), step_size=eps if fgsm else None,
                          random_start=not fgsm, seed=ctx.seed, budget=ctx.budget)


def attack_at_eps(module: Any, row_shape: tuple[int, ...], x0: np.ndarray, labels: np.ndarray, eps: float,
                  norm: str, unit: np.ndarray, lower: np.ndarray, upper: np.ndarray, steps: int, seed: int,
                  with_pgd: bool, *, budget: Budget | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """One point of the ε sweep: which rows FGSM fools, which PGD fools (``None`` without PGD) and the FGSM
    gradient norms. A job of :func:`.._parallel.sweep`: it may run on a cluster, so it takes plain values
    and returns arrays only."""
    common = dict(norm=norm, unit=unit, lower=lower, upper=upper, seed=seed, budget=budget)
    r = A.torch_attack(module, row_shape, x0, labels, eps, steps=1, step_size=eps, random_start=False, **common)
    fooled_pgd = None
    if with_pgd:
        fooled_pgd = A.torch_attack(module, row_shape, x0, labels, eps, steps=steps, step_size=None,
                                    random_start=True, **common).fooled
    return r.fooled, fooled_pgd, r.grad_norm


def _on_rows(n_rows: int, rows: np.ndarray, fooled: np.ndarray) -> np.ndarray:
    out = np.zeros(n_rows, bool)
    out[rows] = fooled
    return out


def _run_white_box(ctx: _Context, pool: np.ndarray) -> dict[str, Any]:
    """FGSM (and PGD) at every ε on the correctly classified rows, then the gradient-masking checks."""
    t, budget = ctx.target, ctx.budget
    n_out = _n_outputs(t)
    valid = (t.labels >= 0) & (t.labels < n_out)
    rows = np.flatnonzero(ctx.clean & valid)
    pgd: list[float] = []
    fgsm: list[float] = []
    grad_norm = np.zeros(0)
    notes: list[str] = []
    done_eps: list[float] = []
    stopped = f"to stay within the {budget.seconds:g} s budget (%mlsec probe runs the whole sweep)"
    sc, x0, labels = ctx.scale, t.values[rows], t.labels[rows]  # one copy shared by every job
    jobs = [(t.probe._model, t.probe.row_shape, x0, labels, eps, ctx.norm, sc.unit, sc.lower, sc.upper, ctx.steps,
             ctx.seed, ctx.kind == "pgd") for eps in ctx.eps]
    results = sweep(attack_at_eps, jobs, budget)
    try:
        for i, eps in enumerate(ctx.eps):
            try:
                budget.progress(i / (len(ctx.eps) + 1), f"{ctx.kind.upper()} at ε {eps:g}")
                fooled_fgsm, fooled_pgd, r_grad_norm = next(results)
            except CheckTimeout:
                if not done_eps:
                    raise
                notes.append(f"stopped after {len(done_eps)} of {len(ctx.eps)} ε values {stopped}")
                break
            if i == 0:
                grad_norm = r_grad_norm
            fgsm.append(_accuracy(ctx, _on_rows(t.n_rows, rows, fooled_fgsm)))
            if ctx.kind == "pgd":
                pgd.append(_accuracy(ctx, _on_rows(t.n_rows, rows, fooled_pgd)))
            done_eps.append(eps)
            if budget.elapsed > ctx.share * budget.seconds and i + 1 < len(ctx.eps):
                notes.append(f"stopped after {len(done_eps)} of {len(ctx.eps)} ε values {stopped}")
                break
    finally:
        results.close()
    ctx.eps = done_eps
    robust = pgd if ctx.kind == "pgd" else fgsm
    result: dict[str, Any] = {"robust_accuracy": robust, "notes": notes}
    if ctx.kind == "pgd":
        result["fgsm_robust_accuracy"] = fgsm
    try:
        budget.progress(len(ctx.eps) / (len(ctx.eps) + 1), "gradient-masking checks")
        result["masking_flags"] = _masking_flags(ctx, rows, robust, fgsm, grad_norm, pool)
    except CheckTimeout:  # the curve is measured: keep it, say what is missing
        result["masking_flags"] = []
        notes.append("the gradient-masking checks did not finish within the time budget")
    return result


def _n_outputs(t: Target) -> int:
    _, out = t.probe.outputs(t.values[:2])
    return max(int(out.shape[1]), 2)


def _masking_flags(ctx: _Context, rows: np.ndarray, robust: list[float], fgsm: list[float],
                   grad_norm: np.ndarray, pool: np.ndarray) -> list[str]:
    """Signs that the white-box numbers overstate robustness (Carlini et al. 2019, §5–6)."""
    flags: list[str] = []
    t, budget = ctx.target, ctx.budget
    clean_acc = float(np.mean(ctx.clean))
    if ctx.kind == "pgd":
        worse = [e for e, p, f in zip(ctx.eps, robust, fgsm) if p > f + MASKING_TOLERANCE]
        if worse:
            flags.append(f"PGD is weaker than single-step FGSM at ε {', '.join(f'{e:g}' for e in worse)} "
                         f"(an iterative attack should never do worse)")
    rising = [ctx.eps[i + 1] for i in range(len(robust) - 1) if robust[i + 1] > robust[i] + MASKING_TOLERANCE]
    if rising:
        flags.append(f"robust accuracy rises with ε at ε {', '.join(f'{e:g}' for e in rising)}")
    if len(robust) >= 2 and clean_acc > 0 and robust[-1] >= clean_acc - MASKING_TOLERANCE:
        flags.append(f"robust accuracy does not fall as ε grows (still {robust[-1]:.3f} at ε {ctx.eps[-1]:g}, "
                     f"clean {clean_acc:.3f})")
    if len(grad_norm):
        vanishing = float(np.mean(grad_norm <= VANISHING_GRADIENT))
        if vanishing >= 0.5:
            flags.append(f"the loss gradient is zero or vanishing (below {VANISHING_GRADIENT:g}) at "
                         f"{100 * vanishing:.0f}% of correctly classified rows (saturated outputs or a "
                         f"non-differentiable step)")
    if not rows.size:
        return flags
    budget.checkpoint()
    if _random_outputs(t):
        flags.append("the model gives different outputs for the same input (randomness defeats a single "
                     "gradient; average over it, EOT)")
    wide = float(np.max((ctx.scale.upper - ctx.scale.lower) / ctx.scale.unit))
    if ctx.norm == "l2":
        wide *= np.sqrt(t.n_features)
    few = rows[:CROSS_CHECK_ROWS * 2]
    fooled = _white(ctx, few, wide, fgsm=False, steps=max(ctx.steps, 20)).fooled
    kept = 1.0 - float(np.mean(fooled))
    if wide > 0 and kept > UNBOUNDED_MAX_ACCURACY:
        flags.append(f"PGD allowed to move every feature across the whole data range still leaves {kept:.0%} of "
                     f"rows correct (an attack that may change anything should win)")
    if budget.remaining > 0.3 * budget.seconds:
        flags.extend(_cross_check(ctx, rows[:CROSS_CHECK_ROWS], pool))
    return flags


def _random_outputs(t: Target) -> bool:
    rows = t.values[:64]
    _, a = t.probe.outputs(rows)
    _, b = t.probe.outputs(rows)
    return not np.allclose(a, b, rtol=1e-5, atol=1e-6)


def _cross_check(ctx: _Context, rows: np.ndarray, pool: np.ndarray) -> list[str]:
    """The black-box attack on a few rows: finding adversarial examples inside ε that PGD missed means
    the gradient misleads PGD."""
    t = ctx.target
    bb = A.hop_skip_jump(lambda r: t.probe.predict(r, ctx.budget), t.values[rows], t.labels[rows], pool,
                         norm=ctx.norm, unit=ctx.scale.unit, lower=ctx.scale.lower, upper=ctx.scale.upper,
                         rng=np.random.default_rng(ctx.seed), seconds=0.25 * ctx.budget.remaining, budget=ctx.budget)
    flags = []
    for eps in ctx.eps:
        bb_fooled = bb.distance <= eps
        if not bb_fooled.any():
            continue
        pgd_fooled = _white(ctx, rows, eps, fgsm=False).fooled
        extra, missed = int(np.sum(bb_fooled & ~pgd_fooled)), int(np.sum(~bb_fooled & pgd_fooled))
        if extra >= max(CROSS_CHECK_MIN_ROWS, CROSS_CHECK_SHARE * len(rows)) and extra > 2 * missed:
            flags.append(f"a black-box attack (no gradients) fools {extra} of {len(rows)} rows at ε {eps:g} that "
                         f"PGD could not")
            break
    return flags


# -- exact (linear) ------------------------------------------------------------------------------------
def _run_exact(ctx: _Context, model: Any) -> dict[str, Any]:
    t = ctx.target
    W, b = linear_form(model, t.values[:50])
    cols = _label_columns(model, t.labels)
    dist, _ = A.linear_minimal_perturbation(W, b, t.values, cols, ctx.scale.unit, ctx.norm)
    dist = np.where(ctx.clean, dist, 0.0)
    robust = [float(np.mean(dist > e)) for e in ctx.eps]
    good = dist[ctx.clean]
    return {"robust_accuracy": robust, "median_min_perturbation": float(np.median(good)) if good.size else 0.0,
            "min_perturbation_quantiles": [float(q) for q in np.quantile(good, [0.1, 0.5, 0.9])] if good.size else [],
            "notes": ["exact minimal perturbations of the linear decision function (closed form, not clipped to "
                      "the data range, so the robust accuracy is exact for an attacker free to leave it)"]}


# -- black box ------------------------------------------------------------------------------------------
def _run_blackbox(ctx: _Context, pool: np.ndarray) -> dict[str, Any]:
    t = ctx.target
    ctx.budget.progress(0.05, "HopSkipJump black-box attack")
    bb = A.hop_skip_jump(lambda r: t.probe.predict(r, ctx.budget), t.values, t.labels, pool, norm=ctx.norm,
                         unit=ctx.scale.unit, lower=ctx.scale.lower, upper=ctx.scale.upper,
                         rng=np.random.default_rng(ctx.seed), seconds=ctx.share * ctx.budget.remaining,
                         budget=ctx.budget)
    dist = np.where(ctx.clean, bb.distance, 0.0)
    robust = [float(np.mean(dist > e)) for e in ctx.eps]
    found = dist[ctx.clean & np.isfinite(dist)]
    notes = [f"decision-based HopSkipJump attack, {bb.queries:,} queries per row: the robust accuracy is an upper "
             f"bound (a stronger attack can only lower it)"]
    if np.isinf(dist).any():
        notes.append(f"{int(np.isinf(dist).sum())} rows had no differently-labelled starting point")
    return {"robust_accuracy": robust, "queries_per_row": bb.queries,
            "median_min_perturbation": float(np.median(found)) if found.size else None, "notes": notes}


# ==================================================================================================
# findings
# ==================================================================================================
_ATTACK_NAMES = {"pgd": "PGD", "fgsm": "FGSM", "exact": "exact minimal perturbation", "blackbox": "HopSkipJump"}


def _metrics(ctx: _Context, result: dict[str, Any], gap: float, held_out: bool, notes: list[str]) -> dict[str, Any]:
    unit = "data units" if ctx.scale.kind == "data" else "feature standard deviations"
    m: dict[str, Any] = {
        "attack": ctx.kind, "norm": ctx.norm, "eps": list(ctx.eps),
        "robust_accuracy": [round(v, 4) for v in result.pop("robust_accuracy")],
        "clean_accuracy": round(float(np.mean(ctx.clean)), 4),
        # 95% Clopper–Pearson intervals over the rows attacked (a sample of the data: Q9)
        "clean_accuracy_ci": rate_ci(float(np.mean(ctx.clean)), ctx.target.n_rows),
        "eps_unit": unit, "class_half_gap": round_sig(gap, 3) if np.isfinite(gap) else None,
        "n_rows": ctx.target.n_rows, "rows": "held-out" if held_out else "training",
    }
    m["robust_accuracy_ci"] = [rate_ci(v, ctx.target.n_rows) for v in m["robust_accuracy"]]
    if ctx.kind in ("pgd", "fgsm"):
        m["steps"] = 1 if ctx.kind == "fgsm" else ctx.steps
        if ctx.kind == "pgd":
            m["step_size"] = f"{A.PGD_STEP_FACTOR:g}·ε/{ctx.steps}, random start"
    if ctx.scale.kind == "data":
        m["data_range"] = [round_sig(float(ctx.scale.lower[0]), 4), round_sig(float(ctx.scale.upper[0]), 4)]
    for key in ("fgsm_robust_accuracy",):
        if key in result:
            m[key] = [round(v, 4) for v in result.pop(key)]
    if "masking_flags" in result:  # only where a white-box attack ran
        m["masking_flags"] = result.pop("masking_flags")
    m.update({k: v for k, v in result.items() if v is not None})
    if len(ctx.eps) >= 2:
        m["plot"] = {"kind": "line", "x": "eps", "y": "robust_accuracy",
                     "x_label": f"ε ({norm_words(ctx.norm)}, {unit})", "y_label": "robust accuracy"}
    if notes:
        m["notes"] = notes
    return m


def _at_small_eps(metrics: dict[str, Any], gap: float) -> tuple[float, float]:
    """(small ε, robust accuracy there, interpolated on the curve that starts at the clean accuracy); when
    no ε tried reaches the small ε (the user's ε, or a sweep cut short), the largest ε tried instead: the
    curve is never extended beyond what was measured."""
    eps, acc = metrics["eps"], metrics["robust_accuracy"]
    small = round_sig(SMALL_EPS_FRACTION * gap) if np.isfinite(gap) and gap > 0 else eps[0]
    small = min(small, eps[-1])
    return small, float(np.interp(small, [0.0, *eps], [metrics["clean_accuracy"], *acc]))


def _main_finding(ctx: _Context, m: dict[str, Any], gap: float) -> Finding:
    clean = m["clean_accuracy"]
    small, at_small = _at_small_eps(m, gap)
    drop = (clean - at_small) / clean if clean > 0 else 0.0
    severity = (Severity.HIGH if drop >= DROP_HIGH else Severity.MEDIUM if drop >= DROP_MEDIUM
                else Severity.LOW if drop >= DROP_LOW else Severity.INFO)
    m["small_eps"], m["robust_accuracy_at_small_eps"] = small, round(at_small, 4)
    how = _ATTACK_NAMES[ctx.kind]
    nw = norm_words(ctx.norm)
    unit = ("in the data's own units" + (f" (range {m['data_range'][0]:g} to {m['data_range'][1]:g})"
                                         if "data_range" in m else "")
            if ctx.scale.kind == "data" else "in standard deviations of each feature (the features have different scales)")
    curve = ", ".join(f"{a:.2f} at ε {e:g}" for e, a in zip(m["eps"], m["robust_accuracy"]))
    gap_text = (f"Half the median distance between rows of different classes is {m['class_half_gap']:g}; the small "
                f"ε {small:g} is a fifth of it." if m.get("class_half_gap") else "")
    summary = (f"{how} ({nw}, ε {unit}) on {m['n_rows']:,} {m['rows']} rows: clean accuracy {clean:.3f}; robust "
               f"accuracy {curve}. {gap_text}")
    if m.get("notes"):
        summary += " Note: " + "; ".join(m["notes"]) + "."
    if severity >= Severity.MEDIUM:
        title = (f"Small perturbations fool the model: accuracy {clean:.2f} → {at_small:.2f} at ε {small:g} "
                 f"({nw}, {how})")
        return Finding(CHECK, severity, title, summary, metrics=m, recommendation=_ADVICE)
    title = (f"Robust to small perturbations: accuracy {clean:.2f} → {at_small:.2f} at ε {small:g} ({nw}, {how})"
             if severity == Severity.INFO else
             f"Slightly sensitive to small perturbations: accuracy {clean:.2f} → {at_small:.2f} at ε {small:g}")
    advice = "" if severity == Severity.INFO else _ADVICE
    return Finding(CHECK, severity, title, summary, metrics=m, recommendation=advice)


def _masking_finding(m: dict[str, Any]) -> Finding:
    flags = m["masking_flags"]
    summary = ("The white-box numbers may overstate robustness: " + "; ".join(flags) +
               ". These are the signs of gradient masking listed by Carlini et al. (2019).")
    return Finding(CHECK, Severity.MEDIUM, "Robustness may be overstated: signs of gradient masking", summary,
                   metrics={"masking_flags": flags, "attack": m["attack"]}, recommendation=_MASKING_ADVICE)
