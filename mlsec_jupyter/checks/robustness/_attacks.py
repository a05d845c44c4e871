"""Evasion attacks: white-box FGSM/PGD on torch models, the exact minimal perturbation of linear models
and a decision-based black-box attack for anything with ``predict``.

All attacks work in *unit space*: a perturbation ``t`` of a row ``x0`` means the row
``clip(x0 + unit * t, lo, hi)``, where ``unit`` comes from :class:`._common.Scale` (1 for data units,
each feature's standard deviation otherwise) and ``[lo, hi]`` is the data's range widened to contain
``x0``. Norms and ε are measured on ``t``. Because ``x0`` lies in the box, clipping only moves a point
towards ``x0``, so every returned row stays within ε *and* within the data's range (property Q8).

Why our own code rather than torchattacks or ART: the check needs things neither gives together —
attacks in per-feature units with box constraints from the data, a record of whether *any* iterate
fooled the model (a misclassified point found on the way is a valid adversarial example; AutoAttack
keeps it too), rows leaving the batch once fooled (most rows fall at large ε, so later steps cost
less), gradients taken on a private copy whose parameters need no gradient (only the input's gradient
is computed), and a per-step time budget and cancellation. bench/robustness.py checks that the robust
accuracy matches torchattacks' on the same model, data, ε and steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .._models import BATCH_CELLS, rows_per_batch
from ..budget import Budget

#: Rows per forward/backward pass of the white-box attacks.
ATTACK_BATCH = 1024
#: Fooled rows stay in the batch (their result is kept) until the rows still attacked fall below this
#: share of it; then the batch is compacted.
COMPACT_BELOW = 0.8
#: PGD iterations and step size as a multiple of ε/steps (Madry et al. 2018 use 2.5·ε/steps).
PGD_STEPS = 10
PGD_STEP_FACTOR = 2.5


@dataclass
class WhiteBoxResult:
    """Outcome of FGSM/PGD at one ε on rows ``x0``.

    ``fooled[i]``: some iterate of row ``i`` (all inside the ε-ball and the data range) was misclassified
    (torchattacks and ART report the last iterate; bench/robustness.py shows the two agree);
    ``adv``: the first fooling iterate of each row, else its last one (flat, as ``x0``; float32 or wider);
    ``grad_norm``: the norm of the loss gradient at ``x0`` (unit space), for the gradient-masking checks.
    """

    eps: float
    fooled: np.ndarray
    adv: np.ndarray
    grad_norm: np.ndarray


def box(x0: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row bounds: the data range widened to contain each row."""
    return np.minimum(lower, x0), np.maximum(upper, x0)


def _project(t: Any, eps: float, norm: str) -> Any:
    """Onto the ε-ball of ``norm`` (rows × features)."""
    if norm == "linf":
        return t.clamp(-eps, eps)
    return t * (eps / t.norm(dim=1).clamp_min(1e-12)).clamp(max=1.0)[:, None]


def _bound(b: np.ndarray, dtype: Any) -> Any:
    """A clamp bound: one number when it is the same for every cell (a faster clamp), else a tensor."""
    import torch

    first = float(b.flat[0]) if b.size else 0.0
    return first if b.size and np.all(b == first) else torch.as_tensor(b, dtype=dtype)


def _random_start(shape: tuple[int, int], eps: float, norm: str, gen: Any, dtype: Any) -> Any:
    """Uniform in the L∞ ball; for L2 a uniform direction at a radius uniform in [0, ε] (as torchattacks
    does). Uniform in the L2 *ball* puts nearly every start at radius ε in high dimensions (radius ε·U^(1/d)),
    and on bench/robustness.py's digits MLP that start left 2 points more robust accuracy at ε 0.5."""
    import torch

    if norm == "linf":
        return (torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1) * eps
    g = torch.randn(shape, generator=gen, dtype=dtype)
    g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return g * (torch.rand((shape[0], 1), generator=gen, dtype=dtype) * eps)


def _step(g: Any, norm: str) -> Any:
    """The steepest-ascent direction of ``norm``: the sign for L∞, the normalised gradient for L2."""
    if norm == "linf":
        return g.sign()
    return g / g.norm(dim=1, keepdim=True).clamp_min(1e-30)


def _logits_2d(out: Any) -> Any:
    import torch

    if isinstance(out, (tuple, list)):
        out = out[0]
    out = out.reshape(out.shape[0], -1)
    if out.shape[1] == 1:  # one logit: a binary classifier with a sigmoid
        out = torch.cat([torch.zeros_like(out), out], dim=1)
    return out


def torch_attack(module: Any, row_shape: tuple[int, ...], x0: np.ndarray, labels: np.ndarray, eps: float, *,
                 norm: str, unit: np.ndarray, lower: np.ndarray, upper: np.ndarray, steps: int = PGD_STEPS,
                 step_size: float | None = None, random_start: bool = True, seed: int = 0,
                 budget: Budget | None = None, batch: int = ATTACK_BATCH) -> WhiteBoxResult:
    """PGD (Madry et al., ICLR 2018) with ``steps`` ≥ 1 and a random start, or FGSM (Goodfellow et al.,
    ICLR 2015) with ``steps=1, step_size=eps, random_start=False``; untargeted, cross-entropy loss,
    L∞ (signed steps) or L2 (normalised steps), in unit space (module docstring).

    ``module`` must be a private copy (:func:`.._models.private_torch_copy`): gradients are taken with
    respect to the input only, and rows leave the batch as soon as an iterate fools the model.
    """
    import torch

    alpha = float(step_size) if step_size is not None else PGD_STEP_FACTOR * eps / max(steps, 1)
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
    gen = torch.Generator().manual_seed(int(seed))
    n = len(x0)
    fooled = np.zeros(n, bool)
    adv = np.array(x0, dtype=np.result_type(np.asarray(x0).dtype, np.float32))  # float32 stays float32
    grad_norm = np.zeros(n)
    ones = bool(np.all(unit == 1.0))  # data units: skip the scaling (most image models)
    batch = rows_per_batch(x0.shape[1], batch)  # wide rows (images): fewer per batch, bounded memory
    u = torch.as_tensor(unit, dtype=dtype)
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")
    for start in range(0, n, batch):
        rows = x0[start:start + batch]
        if np.all(rows >= lower) and np.all(rows <= upper):  # the usual case: one range for every row
            lo_b, hi_b = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
        else:
            lo_b, hi_b = box(rows, lower, upper)
        xa = torch.as_tensor(rows, dtype=dtype)
        lo, hi = _bound(lo_b, dtype), _bound(hi_b, dtype)
        if isinstance(lo, float) != isinstance(hi, float):  # torch.clamp takes two numbers or two tensors
            lo, hi = (torch.as_tensor(b, dtype=dtype) for b in (lo_b, hi_b))
        ya = torch.as_tensor(labels[start:start + batch], dtype=torch.long)
        t = _random_start(tuple(xa.shape), eps, norm, gen, dtype) if random_start else torch.zeros_like(xa)
        active = torch.arange(len(xa))  # rows of this batch still being attacked; xa, lo, hi, ya follow it
        done = xa.clone()
        hit = torch.zeros(len(xa), dtype=torch.bool)
        for k in range(steps + 1):
            if budget is not None:
                budget.checkpoint()
            x = torch.clamp(xa + (t if ones else u * t), lo, hi)
            if k == steps:  # the last iterate is only judged: no graph
                with torch.no_grad():
                    wrong = _logits_2d(module(x.reshape(-1, *row_shape))).argmax(dim=1) != ya
                break
            x.requires_grad_(True)
            with torch.enable_grad():
                out = _logits_2d(module(x.reshape(-1, *row_shape)))
                wrong = (out.argmax(dim=1) != ya).detach()
                (g,) = torch.autograd.grad(loss_fn(out, ya), x)
            if not ones:
                g = g * u
            if k == 0:
                grad_norm[start + active.numpy()] = g.norm(dim=1).double().numpy()
            point = x.detach()
            newly = wrong & ~hit[active]
            if newly.any():  # a fooling iterate: keep it; the row leaves the batch at the next compaction
                hit[active[newly]] = True
                done[active[newly]] = point[newly]
                keep = ~hit[active]
                if not keep.any():
                    break
                if keep.float().mean() < COMPACT_BELOW:  # gathering 7 tensors costs; do it in bulk
                    active, g, point, xa, ya = (v[keep] for v in (active, g, point, xa, ya))
                    lo, hi = (b if isinstance(b, float) or b.dim() == 1 else b[keep] for b in (lo, hi))
            # step from the clipped point: budget spent pushing against the data range is given back
            # (matters for L2 on images, where many pixels sit at the range's ends)
            t = point - xa if ones else (point - xa) / u
            t = _project(t + alpha * _step(g, norm), eps, norm)
        if len(active):
            last = ~hit[active]  # rows never fooled end at their last iterate
            done[active[last]] = x.detach()[last]
            hit[active[last]] = wrong[last]
        fooled[start:start + batch] = hit.numpy()
        adv[start:start + batch] = done.numpy()
    return WhiteBoxResult(eps, fooled, adv, grad_norm)


# ==================================================================================================
# linear models: the exact minimal perturbation
# ==================================================================================================
def linear_minimal_perturbation(W: np.ndarray, b: np.ndarray, x0: np.ndarray, label_col: np.ndarray,
                                unit: np.ndarray, norm: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact smallest perturbation (in unit space, ``norm``) that changes a linear classifier's decision
    away from the true class, and the perturbation (in data units) that attains it.

    Binary (``W`` has one row, class 1 iff ``x·w + b > 0``): d = abs(f(x)) / ‖unit∘w‖_q, attained by
    δ = −f(x)·unit²∘w/‖unit∘w‖₂² for L2 (one DeepFool step, Moosavi-Dezfooli et al., CVPR 2016, Eq. 3) and
    δ = −f(x)/‖unit∘w‖₁·unit∘sign(w) for L∞ (FGSM is optimal for linear models, Goodfellow et al., ICLR
    2015 §3); q is the dual norm (2 for L2, 1 for L∞). Multiclass: the decision region of the true class
    is the polytope {f_y ≥ f_k}, so the distance to its complement is the smallest distance to one of its
    hyperplanes f_y − f_k = 0. Rows the model already gets wrong have distance 0 (``label_col`` −1: a label
    the model does not know, also 0). The data's range is not imposed (the closed form is unconstrained;
    a perturbation that must stay in range can only be larger).
    """
    x0 = np.asarray(x0, dtype=np.float64)
    F = x0 @ W.T + b
    n = len(x0)
    q = 2 if norm == "l2" else 1
    dist = np.zeros(n)
    delta = np.zeros_like(x0)
    if W.shape[0] == 1:
        w = W[0] * unit
        f = F[:, 0]
        pred = (f > 0).astype(int)
        wn = np.linalg.norm(w, ord=q)
        good = (pred == label_col) & (label_col >= 0)
        dist[good] = np.abs(f[good]) / wn
        step = (unit * w / wn ** 2) if norm == "l2" else (unit * np.sign(w) / wn)
        delta[good] = -f[good, None] * step
        return dist, delta
    rows = np.arange(n)
    col = np.maximum(label_col, 0)
    good = (F.argmax(axis=1) == label_col) & (label_col >= 0)
    best = np.full(n, np.inf)
    for k in range(W.shape[0]):
        dw = (W[col] - W[k]) * unit  # rows × features
        m = F[rows, col] - F[:, k]
        wn = np.linalg.norm(dw, ord=q, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where((col != k) & (wn > 0), m / wn, np.inf)
        better = good & (d < best)
        if better.any():
            best[better] = d[better]
            if norm == "l2":
                delta[better] = -(m[better] / wn[better] ** 2)[:, None] * dw[better] * unit
            else:
                delta[better] = -(m[better] / wn[better])[:, None] * np.sign(dw[better]) * unit
    dist[good] = best[good]
    return dist, delta


# ==================================================================================================
# decision-based black box
# ==================================================================================================
#: HopSkipJump iterations, random directions per gradient estimate and binary-search steps.
HSJ_ITERATIONS = 20
HSJ_DIRECTIONS = 48
BINARY_STEPS = 14


@dataclass
class BlackBoxResult:
    """Per row: the smallest perturbation found (unit space, the attack's norm; 0 for rows misclassified
    already, ``inf`` where no adversarial start was found) and queries spent per row."""

    distance: np.ndarray
    queries: int
    adv: np.ndarray


def _dist(t: np.ndarray, norm: str) -> np.ndarray:
    return np.abs(t).max(axis=1) if norm == "linf" else np.linalg.norm(t, axis=1)


def _blend(x0: np.ndarray, xa: np.ndarray, s: np.ndarray, norm: str, unit: np.ndarray) -> np.ndarray:
    """Points between ``x0`` (s = 0) and ``xa`` (s = 1): the segment for L2; for L∞, ``xa`` clipped to the
    L∞ ball of radius s·‖xa − x0‖∞ around ``x0`` (HopSkipJump's L∞ projection)."""
    if norm == "l2":
        return x0 + s[:, None] * (xa - x0)
    radius = (s * _dist((xa - x0) / unit, "linf"))[:, None] * unit
    return np.clip(xa, x0 - radius, x0 + radius)


def _binary_search(is_adv: Callable[[np.ndarray, np.ndarray], np.ndarray], x0: np.ndarray, xa: np.ndarray,
                   norm: str, unit: np.ndarray, rows: np.ndarray, budget: Budget | None) -> np.ndarray:
    """The adversarial end of a bracket [x0 (clean), xa (adversarial)] narrowed :data:`BINARY_STEPS` times."""
    lo, hi = np.zeros(len(x0)), np.ones(len(x0))
    for _ in range(BINARY_STEPS):
        if budget is not None:
            budget.checkpoint()
        mid = (lo + hi) / 2
        adv = is_adv(_blend(x0, xa, mid, norm, unit), rows)
        hi = np.where(adv, mid, hi)
        lo = np.where(adv, lo, mid)
    return _blend(x0, xa, hi, norm, unit)


def hop_skip_jump(predict: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, labels: np.ndarray,
                  pool: np.ndarray, *, norm: str, unit: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                  rng: np.random.Generator, iterations: int = HSJ_ITERATIONS, directions: int = HSJ_DIRECTIONS,
                  seconds: float | None = None, budget: Budget | None = None) -> BlackBoxResult:
    """HopSkipJump (Chen, Jordan & Wainwright, IEEE S&P 2020): a decision-based attack that needs only
    predicted labels. Each row starts from the nearest ``pool`` row the model labels differently
    (Brendel et al.'s boundary-attack start), a binary search finds the boundary, and every iteration
    estimates the boundary's normal from ``directions`` random probes, steps along it (geometric step
    search) and searches the boundary again. Vectorised over rows: one ``predict`` call per step.

    The distances are upper bounds on the minimal perturbation (an attack can only find one), so the
    robust accuracy it implies is an upper bound too. ``seconds`` stops the iterations early (the result
    then holds the best points so far).
    """
    import time

    began = time.monotonic()
    n, d = x0.shape
    lo, hi = box(x0, lower, upper)
    queries = 0

    def is_adv(points: np.ndarray, rows: np.ndarray) -> np.ndarray:
        nonlocal queries
        queries += len(points)
        return np.asarray(predict(points) != labels[rows], dtype=bool).reshape(-1)

    distance = np.full(n, np.inf)
    adv = x0.copy()
    wrong = is_adv(x0, np.arange(n))
    distance[wrong] = 0.0
    todo = np.flatnonzero(~wrong)
    if len(todo) == 0 or len(pool) == 0:
        return BlackBoxResult(distance, queries // max(n, 1), adv)
    start = _starts(pool, predict, labels[todo], x0[todo], unit, norm)
    queries += len(pool)
    have = np.isfinite(start[:, 0])
    rows = todo[have]
    if len(rows) == 0:
        return BlackBoxResult(distance, queries // max(n, 1), adv)
    xs, base = start[have], x0[rows]
    xb = _binary_search(is_adv, base, xs, norm, unit, rows, budget)
    gamma = 1.0
    theta = gamma / (d ** 1.5) if norm == "l2" else gamma / d ** 2
    for it in range(1, iterations + 1):
        if budget is not None:
            budget.checkpoint()
        if seconds is not None and it > 1 and time.monotonic() - began > seconds:
            break
        dist = _dist((xb - base) / unit, norm)
        delta = np.maximum(np.sqrt(d) * theta * dist if norm == "l2" else d * theta * dist, 1e-12)
        v = np.concatenate([_boundary_normal(is_adv, xb[c], delta[c], rows[c], lo[rows[c]], hi[rows[c]], unit, norm,
                                             directions, rng)
                            for c in row_chunks(len(rows), max(1, BATCH_CELLS // (directions * d)))])
        step_dir = v if norm == "l2" else np.sign(v)
        xi = dist / np.sqrt(it)
        cand = xb.copy()
        pending = np.ones(len(rows), bool)
        for _ in range(10):  # geometric step search: halve until the step lands on the adversarial side
            trial = np.clip(xb + (xi[:, None] * step_dir) * unit, lo[rows], hi[rows])
            ok = is_adv(trial, rows) & pending
            cand[ok] = trial[ok]
            pending &= ~ok
            if not pending.any():
                break
            xi = np.where(pending, xi / 2, xi)
        new = _binary_search(is_adv, base, cand, norm, unit, rows, budget)
        better = _dist((new - base) / unit, norm) < _dist((xb - base) / unit, norm)
        xb = np.where(better[:, None], new, xb)
    distance[rows] = _dist((xb - base) / unit, norm)
    adv[rows] = xb
    return BlackBoxResult(distance, queries // max(n, 1), adv)


def row_chunks(n: int, size: int) -> list[slice]:
    """Slices of at most ``size`` rows covering ``n`` rows (bounded memory for wide rows)."""
    return [slice(i, i + size) for i in range(0, n, size)]


def _boundary_normal(is_adv: Callable[[np.ndarray, np.ndarray], np.ndarray], xb: np.ndarray, delta: np.ndarray,
                     rows: np.ndarray, lo: np.ndarray, hi: np.ndarray, unit: np.ndarray, norm: str,
                     directions: int, rng: np.random.Generator) -> np.ndarray:
    """HopSkipJump's Monte-Carlo estimate of the boundary's normal at boundary points ``xb`` (unit length),
    from ``directions`` probes at radius ``delta``: the mean of the probes weighted by ±1 (adversarial or
    not) minus its baseline; when every probe agrees the baseline would cancel everything, so the plain
    ±mean is used, as in the paper."""
    n, d = xb.shape
    if norm == "l2":
        probes = rng.standard_normal((n, directions, d))
        probes /= np.linalg.norm(probes, axis=2, keepdims=True)
    else:
        probes = rng.uniform(-1, 1, (n, directions, d))
    pts = np.clip(xb[:, None, :] + delta[:, None, None] * probes * unit, lo[:, None, :], hi[:, None, :])
    phi = is_adv(pts.reshape(-1, d), np.repeat(rows, directions)).reshape(n, directions).astype(float) * 2 - 1
    mean = phi.mean(axis=1, keepdims=True)
    agree = np.abs(mean) == 1.0
    phi = np.where(agree, phi, phi - mean)
    v = np.einsum("rk,rkd->rd", phi, probes) / directions
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-30)


def _starts(pool: np.ndarray, predict: Callable[[np.ndarray], np.ndarray], labels: np.ndarray, x0: np.ndarray,
            unit: np.ndarray, norm: str) -> np.ndarray:
    """For each row, the nearest pool row (unit space) that the model does not label as the row's label;
    NaN rows where none exists."""
    from sklearn.neighbors import NearestNeighbors

    pred = np.asarray(predict(pool)).reshape(-1)
    out = np.full_like(x0, np.nan)
    metric = "chebyshev" if norm == "linf" else "euclidean"
    for label in np.unique(labels):
        cand = pool[pred != label]
        mine = np.flatnonzero(labels == label)
        if len(cand) == 0:
            continue
        nn = NearestNeighbors(n_neighbors=1, metric=metric).fit(cand / unit)
        out[mine] = cand[nn.kneighbors(x0[mine] / unit, return_distance=False)[:, 0]]
    return out
