"""Pessimistic privacy-loss-distribution (PLD) accounting for the Poisson-subsampled Gaussian.

The pure kernel behind :func:`mlsec_jupyter.privacy.epsilon` with ``accountant="pld"``; see the
module docstring of :mod:`mlsec_jupyter.privacy.accounting` for the method and its references.

One step of the mechanism (sensitivity 1, noise ``sigma``, sampling rate ``q``) has, for the
"remove" direction, the pair ``P = (1-q) N(0, s^2) + q N(1, s^2)`` against ``Q = N(0, s^2)``
(privacy loss ``L(x) = log(1 - q + q exp((2x - 1) / (2 s^2)))``, increasing in ``x``) and, for the
"add" direction, ``P = N(0, s^2)`` against that mixture (loss ``-L(x)``, decreasing in ``x``).

Every step is discretised on the grid ``i * h`` by *connect the dots* (Doroshenko et al. 2022):
the P-mass of the loss in each grid interval is split between its two ends so that both its P-mass
and its Q-mass (``E_P[exp(-L)]``) are kept. The hockey-stick curve of the result is the chord of
the true (convex in ``exp(eps)``) curve through the grid points, hence above it everywhere: the
discrete pair dominates the true one, and domination survives composition. Loss above the grid goes
to ``+inf`` (counted in delta), loss below it is rounded up to the lowest grid point. Both are
pessimistic.

Composition is a product of discrete Fourier transforms on a circular grid (Koskela et al. 2020).
The window ``[a, b]`` comes from Chernoff bounds on the composed discrete loss: the mass above
``b`` that wraps around is bounded by ``exp(K(lambda) - lambda b)`` and that bound is *added* to
delta; mass below ``a`` that wraps around lands at the top of the window, where it can only increase
delta. A floating-point allowance for the FFT (see :func:`compose`, about 1e-12 for 10^4 steps) is
added to delta as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as _fft
from scipy import signal as _signal
from scipy import special as _special

#: Variance added by the discretisation, relative to the composed variance (sets the grid width).
REL_VARIANCE = 1e-3
#: The grid width never exceeds this (bounds the single-step error when there are few steps).
MAX_WIDTH = 4e-3
#: Most grid points one step's PLD and the composed window may take (the grid is widened beyond).
MAX_STEP_POINTS, MAX_POINTS = 2 ** 14, 2 ** 19


@dataclass(frozen=True)
class DiscretePLD:
    """Masses ``omega`` at losses ``(start + arange(len(omega))) * width``; ``inf`` at +infinity."""

    start: int
    omega: np.ndarray
    inf: float


@dataclass(frozen=True)
class Composed:
    """A composed discrete PLD on the window ``(start + arange(len(pmf))) * width``."""

    start: int
    width: float
    pmf: np.ndarray
    extra: float  # delta that is certain: mass at +inf plus the Chernoff bound of the wrapped tail


def _interval_masses(z: np.ndarray, increasing: bool) -> np.ndarray:
    """Standard normal mass between consecutive points of ``z``, accurate in both tails."""
    cdf, sf = _special.ndtr(z), _special.ndtr(-z)
    if increasing:   # intervals (z_k, z_k+1]
        return np.where(z[:-1] > 0, sf[:-1] - sf[1:], cdf[1:] - cdf[:-1])
    return np.where(z[1:] > 0, sf[1:] - sf[:-1], cdf[:-1] - cdf[1:])   # intervals (z_k+1, z_k]


def _threshold(ell: np.ndarray, sigma: float, q: float) -> np.ndarray:
    """``x`` with ``log(1 - q + q exp((2x - 1) / (2 sigma^2))) = ell`` (``-inf`` below the range)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        small = np.minimum(ell, 0.0)
        inner = np.expm1(small) + q                              # e^ell - 1 + q for ell <= 0
        big = np.maximum(ell, 0.0)                               # log(e^ell - 1 + q) for ell > 0
        log_big = big + np.log1p(-(1.0 - q) * np.exp(-big))
        log_inner = np.where(ell > 0, log_big, np.log(np.where(inner > 0, inner, 1.0)))
        x = sigma * sigma * (log_inner - math.log(q)) + 0.5
    return np.where((ell > 0) | (inner > 0), x, -np.inf)


def _loss(x: float, sigma: float, q: float) -> float:
    """Privacy loss ``log(1 - q + q exp(u))``, ``u = (2x - 1) / (2 sigma^2)``, without overflow."""
    u = (2.0 * x - 1.0) / (2.0 * sigma * sigma)
    if u < 30.0:
        return math.log1p(q * math.expm1(u))
    return math.log(q) + u + math.log1p((1.0 - q) / q * math.exp(-u))


def loss_sd(sigma: float, q: float) -> float:
    """Rough standard deviation of one step's privacy loss (only sets the grid width)."""
    if sigma > 30.0:
        return q / sigma
    if sigma < 0.1:
        return 1.0 / sigma
    return min(q * math.sqrt(math.expm1(1.0 / (sigma * sigma))), 1.0 / sigma)


def loss_range(sigma: float, q: float, remove: bool, tail: float) -> tuple[float, float]:
    """Losses between which one step keeps all but ``tail`` P-mass on each side."""
    z = float(-_special.ndtri(tail))
    x_lo, x_hi = -sigma * z, (1.0 if remove else 0.0) + sigma * z   # range of the P-distributed x
    floor = math.log1p(-q) if q < 1 else -math.inf  # loss never below this (remove) / above -this (add)
    if remove:
        return max(_loss(x_lo, sigma, q), floor), _loss(x_hi, sigma, q)
    return -_loss(x_hi, sigma, q), min(-_loss(x_lo, sigma, q), -floor)


def discretise(sigma: float, q: float, width: float, remove: bool, tail: float) -> DiscretePLD:
    """Connect-the-dots PLD of one step, with at most ``tail`` P-mass beyond each end of the grid."""
    lo_loss, hi_loss = loss_range(sigma, q, remove, tail)
    i_lo = math.floor(lo_loss / width)
    i_hi = max(math.ceil(hi_loss / width), i_lo + 1)
    grid = np.arange(i_lo, i_hi + 1) * width
    # Thresholds in x of {L > grid_i}: x > t_i (remove) or x < t_i (add).
    t = _threshold(grid, sigma, q) if remove else _threshold(-grid, sigma, q)
    # Interval masses of x between consecutive thresholds, under N(0, s^2) and N(1, s^2).
    m0 = _interval_masses(t / sigma, remove)
    m1 = _interval_masses((t - 1.0) / sigma, remove)
    if remove:
        p, r = (1.0 - q) * m0 + q * m1, m0                   # P- and Q-mass of (grid_k, grid_k+1]
        below = float(_special.ndtr(t[0] / sigma)) * (1 - q) + q * float(_special.ndtr((t[0] - 1) / sigma))
        above = (1 - q) * float(_special.ndtr(-t[-1] / sigma)) + q * float(_special.ndtr(-(t[-1] - 1) / sigma))
    else:
        p, r = m0, (1.0 - q) * m0 + q * m1
        below = float(_special.ndtr(-t[0] / sigma))
        above = float(_special.ndtr(t[-1] / sigma))
    # Split each interval's mass between its ends, keeping P-mass and Q-mass (connect the dots).
    with np.errstate(over="ignore", invalid="ignore"):      # beyond e^700 all mass goes up (pessimistic)
        q_scaled = np.where(grid[:-1] < 700.0, r * np.exp(np.minimum(grid[:-1], 700.0)), 0.0)
    upper = (p - q_scaled) / -math.expm1(-width)
    upper = np.clip(upper, 0.0, p)
    omega = np.zeros(len(grid))
    omega[:-1] += p - upper
    omega[1:] += upper
    omega[0] += below                                      # rounded up to the lowest grid point
    return DiscretePLD(i_lo, omega, above)


def _support(pld: DiscretePLD, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Losses and log-masses of the finite, non-zero masses."""
    keep = np.nonzero(pld.omega > 0)[0]
    return (pld.start + keep) * width, np.log(pld.omega[keep])


def _log_mgf(support: list[tuple[np.ndarray, np.ndarray, int]], lambdas: np.ndarray) -> np.ndarray:
    """``sum_s count_s * log sum_i omega_i exp(lambda * loss_i)`` for each lambda."""
    total = np.zeros(len(lambdas))
    for losses, logw, count in support:
        expo = logw[None, :] + lambdas[:, None] * losses[None, :]
        top = expo.max(axis=1)
        total += count * (top + np.log(np.exp(expo - top[:, None]).sum(axis=1)))
    return total


def _chernoff_edge(support: list[tuple[np.ndarray, np.ndarray, int]], lam0: float, log_tol: float,
                   sign: float, passes: int = 2) -> tuple[float, float]:
    """Best Chernoff edge ``min_lambda (K(sign*lambda) - log_tol) / lambda`` (times ``sign``) and its bound.

    Two passes of a geometric grid in lambda; any lambda gives a valid bound, the search only makes
    the window smaller.
    """
    best_edge, best_log = math.inf, 0.0
    factors = np.geomspace(0.1, 4.0, 5)
    for _ in range(passes):
        lambdas = lam0 * factors
        k_vals = _log_mgf(support, sign * lambdas)
        edges = (k_vals - log_tol) / lambdas
        i = int(np.argmin(edges))
        if edges[i] < best_edge:
            best_edge, best_log = float(edges[i]), float(k_vals[i] - lambdas[i] * edges[i])
        lam0 = float(lambdas[i])
        factors = np.array([0.6, 0.8, 1.25, 1.6])
    return sign * best_edge, best_log


def _window(plds: list[tuple[DiscretePLD, int]], width: float, tol: float) -> tuple[float, float, float]:
    """Window ``[a, b]`` of the composed loss and the Chernoff bound on its mass above ``b``."""
    var = 0.0
    support = []
    for pld, count in plds:
        losses, logw = _support(pld, width)
        support.append((losses, logw, count))
        w = np.exp(logw)
        m = float(np.sum(w * losses)) / w.sum()   # no BLAS calls: they spin threads on a busy machine
        var += count * float(np.sum(w * (losses - m) ** 2)) / w.sum()
    sd = math.sqrt(max(var, width * width))
    log_tol = math.log(tol)
    lam0 = math.sqrt(2.0 * -log_tol) / sd
    b, log_bound = _chernoff_edge(support, lam0, log_tol, 1.0)
    a, _ = _chernoff_edge(support, lam0, log_tol, -1.0, passes=1)
    return a, b, math.exp(min(0.0, log_bound))


def compose(plds: list[tuple[DiscretePLD, int]], width: float, window: tuple[float, float, float]) -> Composed:
    """The composition of ``count`` copies of every discrete PLD, by FFT on a circular window."""
    a, b, tail_bound = window
    start = math.floor(a / width)
    n = _fft.next_fast_len(math.ceil(b / width) - start + 1, real=True)
    spectrum = None
    inf_free = 1.0
    for pld, count in plds:
        idx = (pld.start + np.arange(len(pld.omega))) % n
        f = _fft.rfft(np.bincount(idx, weights=pld.omega, minlength=n))
        f = np.abs(f) ** count * np.exp(1j * (count * np.angle(f)))   # polar power: faster than f ** count
        spectrum = f if spectrum is None else spectrum * f
        inf_free *= (1.0 - pld.inf) ** count
    circ = _fft.irfft(spectrum, n)
    pmf = np.roll(circ, -(start % n))
    np.maximum(pmf, 0.0, out=pmf)
    # Floating-point allowance: powering the spectrum costs about ``steps`` ulps (relative) per
    # coefficient and the transforms about log2(n) more; by Parseval and Cauchy-Schwarz the error of
    # delta (a sum of at most n masses with weights <= 1) is at most sqrt(n) times the l2 error.
    steps = sum(count for _, count in plds)
    roundoff = math.sqrt(n) * 4.0 * (steps + 4.0 * math.log2(n)) * 2.0 ** -52 * math.sqrt(float(np.sum(pmf * pmf)))
    return Composed(start, width, pmf, (1.0 - inf_free) + tail_bound + roundoff)


def _hockey_at_grid(c: Composed) -> tuple[np.ndarray, np.ndarray]:
    """``D[k] = delta(loss_k)`` (without ``extra``) and ``tail[k] = P(loss >= loss_k)``."""
    rev = c.pmf[::-1]
    tail = np.cumsum(rev)[::-1]
    decay = math.exp(-c.width)
    # D_{k-1} = e^{-h} D_k + (1 - e^{-h}) A_k, run from the top (a first-order linear filter).
    x = np.concatenate(([0.0], -math.expm1(-c.width) * tail[1:][::-1]))
    d = _signal.lfilter([1.0], [1.0, -decay], x)[::-1]
    return d, tail


def epsilon(c: Composed, delta: float) -> float:
    """Smallest eps with ``delta(eps) <= delta`` for the composed discrete PLD."""
    target = delta - c.extra
    if target <= 0:
        return math.inf
    d, tail = _hockey_at_grid(c)
    h = c.width
    if d[0] < target:  # below the window (large delta): D is linear in e^eps there
        losses = (c.start + np.arange(len(c.pmf))) * h
        shift = losses[0]
        e0 = float(np.sum(c.pmf * np.exp(-(losses - shift))))
        gamma = (float(tail[0]) - target) / e0
        return max(0.0, shift + math.log(gamma)) if gamma > 0 else 0.0
    k = int(np.searchsorted(-d, -target, side="left"))  # first index with d[k] <= target
    d_hi, d_lo = d[k - 1], d[k]
    frac = (d_hi - target) / (d_hi - d_lo) if d_hi > d_lo else 0.0
    eps = (c.start + k - 1) * h + math.log1p(frac * math.expm1(h))
    return max(0.0, eps)


def delta(c: Composed, eps: float) -> float:
    """``delta(eps)`` of the composed discrete PLD (including ``extra``)."""
    d, _ = _hockey_at_grid(c)
    h = c.width
    pos = eps / h - c.start
    if pos >= len(d) - 1:
        return min(1.0, c.extra)
    if pos < 0:
        losses = (c.start + np.arange(len(c.pmf))) * h
        mask = losses > eps
        val = float(np.sum(c.pmf[mask] * -np.expm1(eps - losses[mask])))
        return min(1.0, val + c.extra)
    k = math.floor(pos)
    w = math.expm1(eps - (c.start + k) * h) / math.expm1(h)   # D is linear in e^eps between grid points
    return min(1.0, float((1 - w) * d[k] + w * d[k + 1]) + c.extra)


def grid_width(segments: list[tuple[float, float, int]], rel_variance: float = REL_VARIANCE) -> float:
    """Grid width whose added variance is ``rel_variance`` of the composed loss variance."""
    var = sum(t * loss_sd(s, q) ** 2 for s, q, t in segments)
    steps = sum(t for _, _, t in segments)
    return min(MAX_WIDTH, 2.0 * math.sqrt(rel_variance * var / steps))


def composed(segments: list[tuple[float, float, int]], remove: bool, tol: float, width: float) -> Composed:
    """Discretise every ``(sigma, q, steps)`` segment and compose them (one direction).

    ``tol`` bounds both the mass put at +inf and the Chernoff bound of the wrapped tail. The grid
    is widened (never narrowed) when one step or the composed window would need too many points:
    a wider grid is still pessimistic, only less tight.
    """
    steps = sum(t for _, _, t in segments)
    tail = tol / (2.0 * steps)
    spans = [loss_range(s, q, remove, tail) for s, q, _ in segments]
    width = max(width, max(hi - lo for lo, hi in spans) / MAX_STEP_POINTS)
    for _ in range(4):
        plds = [(discretise(s, q, width, remove, tail), t) for s, q, t in segments]
        window = _window(plds, width, tol)
        points = (window[1] - window[0]) / width
        if points <= MAX_POINTS:
            break
        width *= 1.05 * points / MAX_POINTS
    return compose(plds, width, window)
