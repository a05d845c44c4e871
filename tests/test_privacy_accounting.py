"""``mlsec_jupyter.privacy`` accounting: golden values, an independent oracle, properties, bad input.

Row numbers refer to /work/shared/notes/reference-values.md §1; properties Q1-Q3 to
/work/shared/notes/reliability.md.
"""

from __future__ import annotations

import logging
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsec_jupyter import privacy
from mlsec_jupyter.privacy import (
    OPACUS_ORDERS,
    delta_for,
    delta_of_history,
    epsilon,
    epsilon_from_rdp,
    epsilon_of_history,
    gaussian_delta,
    gaussian_epsilon,
    noise_multiplier,
    rdp_sampled_gaussian,
)

PROPS = settings(max_examples=10, deadline=None, derandomize=True)


# -- golden values: RDP ---------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha,sigma", [(2, 1.0), (5.5, 0.7), (32, 3.0), (1.5, 10.0)])
def test_row1_rdp_of_gaussian_is_alpha_over_two_sigma_squared(alpha, sigma):
    # Row 1 (EXACT): dp_accounting rdp/rdp_privacy_accountant_test.py:246-252.
    got = rdp_sampled_gaussian(noise_multiplier=sigma, sample_rate=1.0, orders=[alpha])[0]
    assert got == pytest.approx(alpha / (2 * sigma**2), rel=1e-12, abs=0)


def test_row2_rdp_to_dp_improved_rule_constant_rdp():
    # Row 2 (EXACT): dp_accounting rdp test :720-735; TF rdp_accountant_test.py:132-140 @be8175b.
    eps, order = epsilon_from_rdp(orders=list(range(2, 33)), rdp=[1.1] * 31, delta=1e-5)
    assert eps == pytest.approx(1.32783806176, abs=1e-9)
    assert order == 32


def test_row3_sampled_gaussian_rdp():
    # Row 3 (EXACT): TF rdp_accountant_test.py:101-103 @be8175b.
    got = rdp_sampled_gaussian(noise_multiplier=2, sample_rate=0.1, steps=10, orders=[5])[0]
    assert got == pytest.approx(0.07737, abs=1e-5)


def test_row4_sampled_gaussian_rdp_orders():
    # Row 4: dp_accounting rdp test :508-534. Integer orders are EXACT there.
    orders = [1.5, 2.5, 5, 50, 100, math.inf]
    got = rdp_sampled_gaussian(noise_multiplier=2.5, sample_rate=0.01, steps=50, orders=orders)
    np.testing.assert_allclose(got[2:5], [2.18075656e-3, 2.38460375e-2, 167.416308], rtol=1e-4)
    assert got[5] == math.inf
    # Fractional orders: dp_accounting sums the absolute values of the series (6.70579741e-4,
    # 1.08548710e-3, an upper bound); the signed series of Mironov et al. 2019 is exact. Oracle:
    # mpmath quadrature of E_{N(0,σ²)}[(1-q+q·exp((2z-1)/(2σ²)))^α] (30 digits), times T/(α-1).
    np.testing.assert_allclose(got[:2], [6.50070897188e-4, 1.08541805692e-3], rtol=1e-7)
    assert got[0] <= 6.70579741e-4 and got[1] <= 1.08548710e-3


@pytest.mark.parametrize("n,batch,sigma,epochs,delta,improved,classic,order", [
    # Row 7: TF compute_dp_sgd_privacy_test.py:42 (Test0); row 8: same file :43 (Test1).
    (60000, 150, 1.3, 15, 1e-5, 0.7242234026109595, 0.941870567, 19),
    (100000, 100, 1.0, 30, 1e-7, 1.4154988495444842, 1.70928734, 13),
])
def test_rows7_8_tf_compute_dp_sgd_privacy(n, batch, sigma, epochs, delta, improved, classic, order):
    q, steps = batch / n, math.ceil(epochs * n / batch)   # TF: steps = ceil(epochs * N / B)
    assert epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta,
                   accountant="rdp") == pytest.approx(improved, abs=1e-7)
    assert epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta, accountant="rdp",
                   rule="classic") == pytest.approx(classic, abs=1e-8)
    rdp = rdp_sampled_gaussian(noise_multiplier=sigma, sample_rate=q, steps=steps, orders=privacy.DEFAULT_ORDERS)
    assert epsilon_from_rdp(orders=privacy.DEFAULT_ORDERS, rdp=rdp, delta=delta)[1] == order


def test_row10_opacus_rdp():
    # Row 10: opacus tests/accountants_test.py:94-104 (Opacus grid, int(90/0.04) = 2250 steps).
    got = epsilon(noise_multiplier=1.5, sample_rate=0.04, steps=2250, delta=1e-5, accountant="rdp",
                  orders=OPACUS_ORDERS)
    assert got == pytest.approx(7.32911117143, abs=1e-6)


# -- golden values: PLD and GDP -------------------------------------------------------------------------------
def test_row14_tf_privacy_statement():
    # Row 14: TF compute_dp_sgd_privacy_test.py:184-305. σ_eff = 1, δ = 1e-6.
    # No sampling: PLD is the analytic Gaussian with μ = √5 (EXACT); RDP ACCT.
    assert epsilon(noise_multiplier=1.0, sample_rate=1.0, steps=5, delta=1e-6) == pytest.approx(12.595, abs=1e-3)
    assert epsilon(noise_multiplier=1.0, sample_rate=1.0, steps=5, delta=1e-6,
                   accountant="rdp") == pytest.approx(13.376, abs=1e-3)
    assert gaussian_epsilon(mu=math.sqrt(5), delta=1e-6) == pytest.approx(12.595, abs=1e-3)
    # Poisson sampling (N=10000, B=64, 5 epochs): RDP 1.616, PLD 1.199 (ACCT).
    q, steps = 64 / 10000, math.ceil(5 * 10000 / 64)
    assert epsilon(noise_multiplier=1.0, sample_rate=q, steps=steps, delta=1e-6,
                   accountant="rdp") == pytest.approx(1.616, abs=1e-3)
    assert epsilon(noise_multiplier=1.0, sample_rate=q, steps=steps, delta=1e-6) == pytest.approx(1.199, abs=1e-3)


def test_row15_tf_example_privacy():
    # Row 15: TF compute_dp_sgd_privacy_test.py:85-113. No sampling, T=2: PLD EXACT (μ = √2/0.7).
    assert epsilon(noise_multiplier=0.7, sample_rate=1.0, steps=2, delta=1e-5) == pytest.approx(10.1224946, abs=1e-6)
    assert epsilon(noise_multiplier=0.7, sample_rate=1.0, steps=2, delta=1e-5,
                   accountant="rdp") == pytest.approx(10.8602036, abs=1e-6)
    # q = 0.01, 1.2 epochs = 120 steps (ACCT). TF's PLD value comes from dp_accounting's pessimistic
    # grid; its RDP value sums the fractional series' absolute values (see row 4), ours is a hair lower.
    pld = epsilon(noise_multiplier=0.7, sample_rate=0.01, steps=120, delta=1e-5)
    rdp = epsilon(noise_multiplier=0.7, sample_rate=0.01, steps=120, delta=1e-5, accountant="rdp")
    assert pld == pytest.approx(2.4612381, rel=1e-4)
    assert rdp == pytest.approx(3.2392676, rel=1e-4) and rdp <= 3.2392676


@pytest.mark.parametrize("mu,expected", [(0.5, 1.993091), (1.0, 4.377178), (2.0, 9.997256)])
def test_row18_gdp_to_dp(mu, expected):
    # Row 18 (EXACT): Dong, Roth & Su 2019 Cor 2.13; dp_accounting pld_privacy_accountant_test.py:253-274.
    assert gaussian_epsilon(mu=mu, delta=1e-5) == pytest.approx(expected, abs=1e-6)
    # the same through the accountant: T Gaussian steps with σ = sqrt(T)/μ compose to μ-GDP
    assert epsilon(noise_multiplier=math.sqrt(3) / mu, sample_rate=1.0, steps=3,
                   delta=1e-5) == pytest.approx(expected, abs=1e-6)


def test_row18_gdp_delta():
    # Row 18: μ=1, ε=1 → δ = 0.126936 (σ=√3, 3 steps is 1-GDP).
    assert gaussian_delta(mu=1.0, epsilon=1.0) == pytest.approx(0.126936, abs=1e-6)
    assert delta_for(noise_multiplier=math.sqrt(3), sample_rate=1.0, steps=3,
                     epsilon=1.0) == pytest.approx(0.126936, abs=1e-6)


def test_row21_subsampled_gaussian_delta_upper_side():
    # Row 21 (ACCT, tight): dp_accounting pld_privacy_accountant_test.py:276-300.
    # Finer references: dp_accounting connect-the-dots at 1e-5 gives 0.15593278, its optimistic
    # privacy buckets at 1e-4 give 0.15591831: ours must not be below the truth.
    got = delta_for(noise_multiplier=0.5, sample_rate=0.2, steps=3, epsilon=1.0)
    assert abs(got - 0.15594) < 1e-3
    assert got >= 0.15593277


# -- the issue's configurations against dp_accounting 0.6.0 (PLDAccountant, grid 1e-4, δ=1e-5) ----------------
@pytest.mark.parametrize("n,batch,sigma,epochs,reference", [
    (60000, 256, 1.1, 60, 2.381778813576912),
    (60000, 256, 0.6, 1, 2.7812043254274394),
    (50000, 512, 1.0, 100, 6.2762336559322796),
])
def test_issue_configs_within_half_a_percent_of_dp_accounting(n, batch, sigma, epochs, reference):
    got = epsilon(noise_multiplier=sigma, sample_rate=batch / n, steps=math.ceil(epochs * n / batch), delta=1e-5)
    assert reference * (1 - 1e-3) <= got <= reference * 1.005


# -- independent oracle: dp_accounting -------------------------------------------------------------------------
CROSS = [(1.5, 0.05, 300), (3.0, 0.1, 200), (2.0, 0.5, 10)]  # dp_accounting takes ~1 s per case


@pytest.mark.parametrize("sigma,q,steps", CROSS)
def test_pld_between_optimistic_and_pessimistic_dp_accounting(sigma, q, steps):
    pld = pytest.importorskip("dp_accounting.pld.privacy_loss_distribution")
    logging.getLogger().setLevel(logging.ERROR)

    def theirs(pessimistic: bool):
        return pld.from_gaussian_mechanism(sigma, sampling_prob=q, pessimistic_estimate=pessimistic,
                                           use_connect_dots=pessimistic,
                                           value_discretization_interval=1e-4).self_compose(steps)

    upper, lower = theirs(True), theirs(False)
    ours = epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=1e-5)
    assert lower.get_epsilon_for_delta(1e-5) <= ours <= upper.get_epsilon_for_delta(1e-5) * 1.005
    # and δ at a fixed ε: never below the optimistic (lower-bounding) discretisation
    d = delta_for(noise_multiplier=sigma, sample_rate=q, steps=steps, epsilon=ours / 2)
    assert lower.get_delta_for_epsilon(ours / 2) <= d <= upper.get_delta_for_epsilon(ours / 2) * 1.01


def test_pld_is_tighter_than_rdp():
    for sigma, q, steps in CROSS:
        kw = dict(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=1e-5)
        assert epsilon(**kw) < epsilon(**kw, accountant="rdp")


# -- properties Q1-Q3 ----------------------------------------------------------------------------------------
sigmas = st.floats(0.6, 4.0)
rates = st.floats(0.001, 0.3)
counts = st.integers(1, 3000)
accountants = st.sampled_from(["pld", "rdp"])
SLACK = {"pld": 1e-3, "rdp": 1e-9}   # the PLD grid width follows the parameters: ε may jitter by ~3e-4


@PROPS
@given(sigma=sigmas, q=rates, steps=counts, factor=st.floats(1.05, 2.0), acc=accountants)
def test_q1_monotone(sigma, q, steps, factor, acc):
    def eps(s=sigma, r=q, t=steps, d=1e-5):
        return epsilon(noise_multiplier=s, sample_rate=r, steps=t, delta=d, accountant=acc)

    base, slack = eps(), 1 + SLACK[acc]
    assert eps(t=math.ceil(steps * factor)) * slack >= base           # more steps: no less ε
    assert eps(r=min(1.0, q * factor)) * slack >= base                # larger q: no less ε
    assert eps(s=sigma * factor) <= base * slack                      # more noise: no more ε
    assert eps(d=1e-5 * factor) <= base * slack                       # larger δ: no more ε


@PROPS
@given(sigma=sigmas, q=rates, steps=counts, split=st.floats(0.0, 1.0), acc=accountants)
def test_q2_composition_splits_and_commutes(sigma, q, steps, split, acc):
    a = int(steps * split)
    whole = epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=1e-5, accountant=acc)
    parts = epsilon_of_history([(sigma, q, a), (sigma, q, steps - a)], delta=1e-5, accountant=acc)
    assert parts == pytest.approx(whole, rel=1e-9)
    mixed = [(sigma, q, steps), (sigma * 1.7, min(1.0, q * 3), 50), (1.0, 1.0, 2)]
    forward = epsilon_of_history(mixed, delta=1e-5, accountant=acc)
    assert epsilon_of_history(mixed[::-1], delta=1e-5, accountant=acc) == pytest.approx(forward, rel=1e-9)
    assert forward >= whole


@PROPS
@given(sigma=sigmas, q=rates, steps=st.integers(1, 2000), acc=accountants)
def test_q3_epsilon_delta_round_trip(sigma, q, steps, acc):
    kw = dict(noise_multiplier=sigma, sample_rate=q, steps=steps, accountant=acc)
    eps = epsilon(**kw, delta=1e-6)
    if eps == 0:
        return
    d = delta_for(**kw, epsilon=eps)
    assert d == pytest.approx(1e-6, rel=2e-2)   # RDP's δ(ε) bound is not exactly the inverse
    assert epsilon(**kw, delta=d) == pytest.approx(eps, rel=2e-3)


@PROPS
@given(target=st.floats(0.5, 10.0), q=st.floats(0.002, 0.1), steps=st.integers(10, 3000))
def test_q3_noise_multiplier_reaches_target(target, q, steps):
    sigma = noise_multiplier(target_epsilon=target, delta=1e-5, sample_rate=q, steps=steps)
    assert epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=1e-5) <= target
    assert epsilon(noise_multiplier=sigma / 1.001, sample_rate=q, steps=steps, delta=1e-5) > target


@pytest.mark.parametrize("steps,acc,orders,expected", [
    # Row 13: opacus accountants_test.py:132-234 (ε=8, δ=1e-5, q=0.04), ±0.01 on σ.
    (2000, "rdp", OPACUS_ORDERS, 1.3562), (2250, "rdp", OPACUS_ORDERS, 1.416),
    (2000, "pld", None, 1.2915),   # opacus PRV; the tight PLD needs a little less noise
])
def test_row13_noise_calibration(steps, acc, orders, expected):
    sigma = noise_multiplier(target_epsilon=8, delta=1e-5, sample_rate=0.04, steps=steps, accountant=acc,
                             orders=orders)
    assert sigma == pytest.approx(expected, abs=0.01)
    eps = epsilon(noise_multiplier=sigma, sample_rate=0.04, steps=steps, delta=1e-5, accountant=acc, orders=orders)
    assert eps <= 8
    assert epsilon(noise_multiplier=sigma * (1 - 0.01), sample_rate=0.04, steps=steps, delta=1e-5,
                   accountant=acc, orders=orders) > 8


# -- edge cases and bad input ---------------------------------------------------------------------------------
def test_zero_steps_and_empty_history_cost_nothing():
    assert epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=0, delta=1e-5) == 0.0
    assert epsilon_of_history([], delta=1e-5, accountant="rdp") == 0.0
    assert delta_of_history([], epsilon=1.0) == 0.0


def test_opacus_style_history_mixes_sampled_and_full_batch_steps():
    history = [(1.0, 0.01, 500), (1.0, 1.0, 1)]
    both = epsilon_of_history(history, delta=1e-5)
    assert both > epsilon_of_history(history[:1], delta=1e-5)
    assert both > epsilon_of_history(history[1:], delta=1e-5)
    assert both < epsilon_of_history(history, delta=1e-5, accountant="rdp")


@pytest.mark.parametrize("sigma", [0.05, 0.1])
def test_tiny_noise_stays_finite_and_below_rdp(sigma):
    # Privacy losses beyond e^700 per step: no overflow, still an upper bound, still below RDP.
    kw = dict(noise_multiplier=sigma, sample_rate=0.01, delta=1e-5)
    one, ten = epsilon(**kw, steps=1), epsilon(**kw, steps=10)
    assert math.isfinite(ten) and one < ten < epsilon(**kw, steps=10, accountant="rdp")
    # one step: about the 1 - δ/q quantile of the loss of a sampled row, (2x - 1)/(2σ²) + log q
    x = 1 + sigma * 3.0902  # Φ^-1(1 - 1e-3)
    assert one == pytest.approx((2 * x - 1) / (2 * sigma**2) + math.log(0.01), rel=0.03)


@pytest.mark.parametrize("kwargs,name", [
    (dict(noise_multiplier=0.0), "noise_multiplier"), (dict(noise_multiplier=-1.0), "noise_multiplier"),
    (dict(noise_multiplier=float("nan")), "noise_multiplier"), (dict(noise_multiplier=math.inf), "noise_multiplier"),
    (dict(sample_rate=0.0), "sample_rate"), (dict(sample_rate=1.5), "sample_rate"),
    (dict(sample_rate=float("nan")), "sample_rate"),
    (dict(steps=-1), "steps"), (dict(steps=2.5), "steps"), (dict(steps="10"), "steps"), (dict(steps=True), "steps"),
    (dict(delta=0.0), "delta"), (dict(delta=1.0), "delta"), (dict(delta=float("nan")), "delta"),
    (dict(accountant="prv"), "accountant"), (dict(accountant="rdp", rule="newest"), "rule"),
])
def test_bad_input_names_the_parameter(kwargs, name):
    base = dict(noise_multiplier=1.0, sample_rate=0.01, steps=100, delta=1e-5)
    with pytest.raises(ValueError, match=name):
        epsilon(**{**base, **kwargs})


def test_bad_input_other_entry_points():
    with pytest.raises(ValueError, match="epsilon"):
        delta_for(noise_multiplier=1.0, sample_rate=0.01, steps=10, epsilon=-1.0)
    with pytest.raises(ValueError, match="target_epsilon"):
        noise_multiplier(target_epsilon=0, delta=1e-5, sample_rate=0.01, steps=10)
    with pytest.raises(ValueError, match=r"history\[1\]"):
        epsilon_of_history([(1.0, 0.01, 10), (1.0, 0.01)], delta=1e-5)
    with pytest.raises(ValueError, match=r"history\[0\] sample_rate"):
        epsilon_of_history([(1.0, 2.0, 10)], delta=1e-5)
    with pytest.raises(ValueError, match="orders"):
        epsilon(noise_multiplier=1.0, sample_rate=0.01, steps=10, delta=1e-5, accountant="rdp", orders=[0.5, 2])
    with pytest.raises(TypeError):
        epsilon(1.0, 0.01, 10, 1e-5)  # keyword-only


def test_integral_float_steps_accepted():
    a = epsilon(noise_multiplier=1.0, sample_rate=0.01, steps=100.0, delta=1e-5)
    assert a == epsilon(noise_multiplier=1.0, sample_rate=0.01, steps=np.int64(100), delta=1e-5)


def test_import_is_cheap():
    code = ("import sys, mlsec_jupyter.privacy as p; p.__doc__; "
            "heavy = [m for m in ('numpy', 'scipy', 'torch', 'opacus', 'dp_accounting') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
