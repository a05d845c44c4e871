"""data.duplicates: real duplicates (iris), planted duplicates / conflicts / overlap, properties Q4–Q5."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine

from guards import bad_inputs, rng_unchanged, unchanged
from mlsec_jupyter.checks.budget import Budget
from mlsec_jupyter.checks.data import duplicates as dup_module
from mlsec_jupyter.checks.data.duplicates import (canonical_bits, duplicate_groups, duplicates, near_pairs,
                                                  robust_scale, row_hashes, rows_matching)
from mlsec_jupyter.checks.registry import run_check
from mlsec_jupyter.findings import Severity

STABLE = {"exact_duplicates", "conflicting_label_duplicates", "train_test_overlap", "near_duplicates",
          "conflicting_label_near_duplicates"}


@pytest.fixture(scope="module")
def cancer():
    return load_breast_cancer(return_X_y=True)


def by_title(findings):
    return {f.title: f for f in findings}


def pandas_duplicates(X) -> np.ndarray:
    """Independent oracle: rows that repeat an earlier row."""
    return np.flatnonzero(pd.DataFrame(X).duplicated(keep="first").to_numpy())


def pandas_conflicts(X, y) -> np.ndarray:
    """Independent oracle: rows in groups of identical X with more than one distinct label."""
    df = pd.DataFrame(X)
    cols = list(df.columns)
    df["__y"] = y
    n_labels = df.groupby(cols, dropna=False)["__y"].transform("nunique")
    return np.flatnonzero(n_labels.to_numpy() > 1)


def test_iris_real_duplicates():
    X, y = load_iris(return_X_y=True)
    expected = pandas_duplicates(X)
    assert len(expected) >= 1
    with unchanged(X, y), rng_unchanged():
        findings = run_check("data.duplicates", X=X, y=y)
    f = by_title(findings)["Exact duplicate rows"]
    assert f.metrics["exact_duplicates"] == len(expected)
    assert f.indices == tuple(expected)
    assert f.metrics["conflicting_label_duplicates"] == len(pandas_conflicts(X, y))
    assert f.metrics["train_test_overlap"] is None
    assert f.severity is Severity.LOW


def test_clean_real_data_gives_one_info_finding(cancer):
    X, y = cancer
    findings = run_check("data.duplicates", X=X, y=y)
    assert [f.severity for f in findings] == [Severity.INFO]
    assert findings[0].title == "No duplicates found"
    assert findings[0].metrics["exact_duplicates"] == 0
    assert findings[0].metrics["conflicting_label_duplicates"] == 0
    assert findings[0].metrics["train_test_overlap"] is None
    assert STABLE <= set(findings[0].metrics)


def test_planted_exact_duplicates(cancer):
    X, y = cancer
    X = X.copy()
    src, dst = [1, 2, 3, 4, 5], [100, 200, 300, 400, 500]
    X[dst] = X[src]
    f = by_title(run_check("data.duplicates", X=X, y=y.copy()))
    exact = f["Exact duplicate rows"]
    assert exact.indices == tuple(dst) == tuple(pandas_duplicates(X))
    assert exact.metrics["exact_duplicates"] == 5 and exact.metrics["duplicate_groups"] == 5
    assert "5 rows (0.9%) repeat an earlier row exactly" in exact.summary


@pytest.mark.parametrize("n_pairs, severity", [(2, Severity.MEDIUM), (5, Severity.HIGH)])
def test_planted_conflicting_labels(cancer, n_pairs, severity):
    X, y = cancer
    X, y = X.copy(), y.copy()
    src, dst = np.arange(1, 1 + n_pairs), np.arange(100, 100 + 100 * n_pairs, 100)
    X[dst] = X[src]
    y[dst] = 1 - y[src]
    f = by_title(run_check("data.duplicates", X=X, y=y))["Duplicates with conflicting labels"]
    assert f.indices == tuple(sorted(np.r_[src, dst])) == tuple(pandas_conflicts(X, y))
    assert f.metrics["conflicting_label_duplicates"] == 2 * n_pairs
    assert f.metrics["conflicting_groups"] == n_pairs
    assert f.severity is severity
    assert any(r.startswith("OWASP ML02:2023") for r in f.references)


def test_planted_train_test_overlap(cancer):
    X, y = cancer
    X_train, X_test = X[:400].copy(), X[400:].copy()
    X_test[[3, 7, 50]] = X_train[[10, 20, 30]]
    with unchanged(X_train, X_test):
        f = by_title(run_check("data.duplicates", X=X_train, y=y[:400], X_test=X_test, y_test=y[400:]))
    overlap = f["Train/test overlap"]
    assert overlap.indices == (3, 7, 50)
    assert overlap.metrics["train_test_overlap"] == 3 and overlap.metrics["n_test_rows"] == 169
    assert "positions in X_test" in overlap.summary
    assert overlap.severity is Severity.HIGH  # 3 / 169 >= 1%


def test_overlap_skipped_when_feature_counts_differ(cancer):
    X, _ = cancer
    findings = by_title(run_check("data.duplicates", X=X[:100], X_test=X[100:150, :5]))
    skip = findings["Train/test overlap not checked"]
    assert skip.severity is Severity.INFO
    assert skip.summary == "X_test has 5 features but X has 30; overlap not checked."
    assert skip.metrics["train_test_overlap"] is None
    assert "No duplicates found" in findings


def test_overlap_with_text_columns_coded_independently():
    train = pd.DataFrame({"city": ["a", "b", "c", "d"], "v": [1.0, 2.0, 3.0, 4.0]})
    test = pd.DataFrame({"city": ["c", "zz", "a"], "v": [3.0, 3.0, 2.0]})  # only row 0 equals a training row
    f = by_title(run_check("data.duplicates", X=train, X_test=test))["Train/test overlap"]
    assert f.indices == (0,)


def test_hash_collisions_never_make_false_duplicates():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 3, size=(300, 3)).astype(float)
    bits = canonical_bits(X)
    colliding = np.zeros(len(X), dtype=np.uint64)  # every row "collides"
    groups = duplicate_groups(bits, colliding)
    expected = pd.DataFrame(X).groupby([0, 1, 2]).ngroup().to_numpy()
    sizes = np.bincount(expected)
    repeated = sizes[expected] > 1
    assert np.array_equal(groups >= 0, repeated)
    for g in np.unique(groups[groups >= 0]):  # same group <=> same row content
        assert len(np.unique(expected[groups == g])) == 1
    test = X[:10] + np.r_[np.zeros(5), np.full(5, 10.0)][:, None]
    assert list(rows_matching(canonical_bits(test), np.zeros(10, np.uint64), bits, colliding)) == [0, 1, 2, 3, 4]


def test_signed_zero_and_nan_payloads_are_equal():
    payload_nan = np.frombuffer(np.uint64(0x7FF8000000000123).tobytes(), dtype=np.float64)[0]
    X = np.array([[0.0, np.nan, 1.0], [-0.0, payload_nan, 1.0], [0.0, 1.0, 1.0]])
    f = by_title(run_check("data.duplicates", X=X))["Exact duplicate rows"]
    assert f.indices == (1,)
    assert len(np.unique(row_hashes(canonical_bits(X[:2])))) == 1


def test_a_frame_too_big_to_read_whole_is_sampled_at_random_and_says_so(cancer):
    X, y = cancer
    X = X.copy()
    X[300:400] = X[200:300]
    budget = Budget(max_rows=100, seed=3)
    sample = Budget(max_rows=100, seed=3).sample_rows(569)
    with rng_unchanged():
        f = by_title(duplicates(X=pd.DataFrame(X), y=y, budget=budget))["Exact duplicate rows"]
    assert f.indices == tuple(sample[pandas_duplicates(X[sample])])
    assert f.metrics["sampled_rows"] == 100 and f.metrics["total_rows"] == 569
    assert f.metrics["sample"] == "random rows" and "exact_duplicate_rate_ci" not in f.metrics
    assert "in a random sample of 100 of 569 rows" in f.summary and "likely higher" in f.summary
    assert "sampled 100 of 569 rows" in budget.notes


def test_a_big_array_is_sampled_by_content_so_copies_stay_together(cancer):
    """Issue 9: a random sample keeps both copies of a pair with probability (100/569)² ≈ 3 %; a content
    sample keeps them together, and the keying pass counts duplicates over every row."""
    X, y = cancer
    X = X.copy()
    X[300:400] = X[200:300]  # 100 of 569 rows (17.6 %) repeat an earlier row
    budget = Budget(max_rows=100, seed=3)
    with rng_unchanged(), unchanged(X):
        f = by_title(duplicates(X=X, y=y, budget=budget))["Exact duplicate rows"]
    rows = np.asarray(f.indices)
    assert rows.size >= 5 and np.all((rows >= 300) & (rows < 400))  # only real later copies are flagged
    assert f.metrics["sample"] == "by content" and f.metrics["sampled_rows"] == 100
    assert f.metrics["exact_duplicates_total"] == 100 and f.metrics["exact_duplicate_rate"] == round(100 / 569, 6)
    assert "100 rows (17.6%) of all 569 repeat an earlier row" in f.summary
    assert "every copy of a row together" in f.summary
    assert any("by a hash of their content" in note for note in budget.notes)


def test_rows_repeated_very_often_are_counted_exactly_and_read_at_random():
    """Five distinct rows repeated 2,000 times each: the lowest keys are whole groups of 2,000 rows, which
    do not fit a 1,000-row sample, so rows are read at random; the count over every row still holds."""
    X = np.repeat(np.arange(5.0)[:, None] * np.ones((1, 3)), 2_000, axis=0)
    budget = Budget(max_rows=1_000)
    f = by_title(duplicates(X=X, budget=budget))["Exact duplicate rows"]
    assert f.metrics["exact_duplicates_total"] == 10_000 - 5 and f.metrics["sample"] == "random rows"
    assert any("repeat so often" in note for note in budget.notes)


def test_an_overlap_that_cannot_be_measured_is_said_so_not_reported_as_zero():
    """X_test is one copy of a training row; the content sample holds 100 of 20,000 training rows, and
    that copy's key is not among them: it cannot be compared, which is not the same as "no overlap"."""
    X = np.random.default_rng(0).normal(size=(20_000, 4))
    findings = duplicates(X=X, X_test=X[:1], budget=Budget(max_rows=100))
    (problem,) = [f for f in findings if f.title == "Train/test overlap not checked"]
    assert "no overlap can be measured" in problem.summary
    assert problem.metrics["train_test_overlap"] is None
    assert not any("no test row" in f.summary for f in findings)


def test_when_keying_every_row_would_take_too_long_rows_are_sampled_at_random(monkeypatch):
    X = np.random.default_rng(0).normal(size=(1_000_000, 10))  # 5 blocks of 200,000 rows
    monkeypatch.setattr(dup_module, "KEY_TIME_SHARE", 1e-9)  # any keying is "too slow"
    budget = Budget(max_rows=1_000)
    (f,) = duplicates(X=X, budget=budget)
    assert f.metrics["sample"] == "random rows" and f.metrics["sampled_rows"] == 1_000
    assert any("keying all 1,000,000 rows by content would take more than" in n for n in budget.notes)


def test_float32_and_float64_agree(cancer):
    X, y = cancer
    X = X.astype(np.float32)
    X[50:60] = X[0:10]
    y = y.copy()
    y[55] = 1 - y[5]
    a = run_check("data.duplicates", X=X.astype(np.float64), y=y, X_test=X[:20].astype(np.float64))
    b = run_check("data.duplicates", X=X, y=y, X_test=X[:20])
    assert [(f.title, f.indices, f.metrics) for f in a] == [(f.title, f.indices, f.metrics) for f in b]


def test_large_array_with_one_percent_duplicates():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(100_000, 50))
    dst = np.sort(rng.choice(np.arange(50_000, 100_000), size=1_000, replace=False))
    X[dst] = X[rng.choice(50_000, size=1_000, replace=False)]
    f = by_title(run_check("data.duplicates", X=X))["Exact duplicate rows"]
    assert f.indices == tuple(dst)


@pytest.mark.parametrize("case", bad_inputs(), ids=lambda c: c.id)
def test_bad_inputs(case):
    X, y = case.make()
    with unchanged(X) if y is None else unchanged(X, y), rng_unchanged():
        findings = duplicates(X=X, y=y, budget=Budget(max_rows=1000))
    assert findings and all(f.check == "data.duplicates" and f.summary for f in findings)
    text = " ".join(f"{f.title}: {f.summary} {' '.join(f.metrics.get('notes', []))}" for f in findings)
    assert case.expect["data.duplicates"] in text
    assert all(STABLE <= set(f.metrics) for f in findings)


# -- properties Q4 (joint row permutation, class bijection) and Q5 (no global RNG dependence) --------
@st.composite
def labelled_rows(draw):
    n = draw(st.integers(2, 40))
    k = draw(st.integers(1, 3))
    X = np.array(draw(st.lists(st.lists(st.integers(0, 2), min_size=k, max_size=k), min_size=n, max_size=n)),
                 dtype=float)
    y = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    perm = np.array(draw(st.permutations(range(n))))
    n_test = draw(st.integers(1, 10))
    X_test = np.array(draw(st.lists(st.lists(st.integers(0, 3), min_size=k, max_size=k),
                                     min_size=n_test, max_size=n_test)), dtype=float)
    test_perm = np.array(draw(st.permutations(range(n_test))))
    return X, y, perm, X_test, test_perm


def _run(X, y, X_test, seed=None, max_rows=200_000):
    if seed is not None:
        np.random.seed(seed)
        random.seed(seed)
    return by_title(duplicates(X=X, y=y, X_test=X_test, budget=Budget(max_rows=max_rows)))


def _indices(findings, title):
    return set(findings[title].indices) if title in findings else set()


@settings(max_examples=60, deadline=None)
@given(labelled_rows())
def test_findings_follow_a_joint_row_permutation(data):
    X, y, perm, X_test, test_perm = data
    base = _run(X, y, X_test)
    moved = _run(X[perm], y[perm], X_test[test_perm])
    metrics = next(iter(base.values())).metrics
    moved_metrics = next(iter(moved.values())).metrics
    for key in ("exact_duplicates", "conflicting_label_duplicates", "train_test_overlap", "near_duplicates",
                "conflicting_label_near_duplicates", "near_duplicate_pairs"):
        assert metrics[key] == moved_metrics[key]
    for title in ("Near-duplicate rows", "Near-duplicates with conflicting labels"):
        assert {int(perm[i]) for i in _indices(moved, title)} == _indices(base, title)
    # rows in permuted data are original rows perm[i]
    assert {int(perm[i]) for i in _indices(moved, "Duplicates with conflicting labels")} == \
        _indices(base, "Duplicates with conflicting labels")
    assert {int(test_perm[i]) for i in _indices(moved, "Train/test overlap")} == _indices(base, "Train/test overlap")
    # which copy counts as "the repeat" depends on order: both runs must match the pandas oracle
    assert _indices(base, "Exact duplicate rows") == set(pandas_duplicates(X))
    assert _indices(moved, "Exact duplicate rows") == set(pandas_duplicates(X[perm]))
    assert _indices(base, "Duplicates with conflicting labels") == set(pandas_conflicts(X, y))
    # a bijection of class ids changes nothing
    relabelled = _run(X, (y + 1) % 3, X_test)
    assert _indices(relabelled, "Duplicates with conflicting labels") == \
        _indices(base, "Duplicates with conflicting labels")


@settings(max_examples=25, deadline=None)
@given(labelled_rows(), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_results_do_not_depend_on_global_rng(data, seed_a, seed_b):
    X, y, _, X_test, _ = data
    state = np.random.get_state(), random.getstate()
    try:
        runs = [_run(X, y, X_test, seed=s, max_rows=max(1, len(X) // 2)) for s in (seed_a, seed_b)]
    finally:
        np.random.set_state(state[0])
        random.setstate(state[1])
    a, b = ([(f.title, f.indices, f.metrics) for f in r.values()] for r in runs)
    assert a == b


def test_rows_with_unreadable_values_are_never_duplicates():
    cells = np.empty(4, dtype=object)
    cells[:] = [[1, 2], [1, 2], None, None]
    df = pd.DataFrame({"obj": cells, "v": [1.0, 1.0, 2.0, 2.0],
                       "p": pd.period_range("2020-01", periods=2, freq="M").repeat(2)})
    with unchanged(df):
        findings = by_title(run_check("data.duplicates", X=df, X_test=df.iloc[[0, 2]]))
    exact = findings["Exact duplicate rows"]
    assert exact.indices == (3,)  # rows 2 and 3 are equal (None is missing); rows 0 and 1 hold lists
    assert "2 rows of X holding values that cannot be compared were left out" in exact.metrics["notes"]
    assert findings["Train/test overlap"].indices == (1,)


# -- near-duplicates ---------------------------------------------------------------------------------
NEAR, NEAR_CONFLICT = "Near-duplicate rows", "Near-duplicates with conflicting labels"


def plant_jittered_flips(X, y, n_copies, seed=0, noise=1e-3):
    """Append ``n_copies`` copies of random rows, jittered by ``noise`` x each feature's std, with a
    different label. Returns the new data and the planted rows (sources and copies)."""
    rng = np.random.default_rng(seed)
    src = np.sort(rng.choice(len(X), size=n_copies, replace=False))
    copies = X[src] + rng.normal(size=(n_copies, X.shape[1])) * noise * X.std(axis=0)
    n_classes = len(np.unique(y))
    flipped = (y[src] + 1 + rng.integers(0, n_classes - 1, size=n_copies)) % n_classes
    X2, y2 = np.vstack([X, copies]), np.r_[y, flipped]
    return X2, y2, set(src.tolist()) | set(range(len(X), len(X) + n_copies))


@pytest.mark.parametrize("load", [load_iris, load_wine, load_breast_cancer, load_digits],
                         ids=["iris", "wine", "breast_cancer", "digits"])
def test_clean_sklearn_data_has_no_near_duplicates(load):
    """Measured false-flag rate on clean data: 0 rows of 150 / 178 / 569 / 1797 (the floor is < 0.5 %)."""
    X, y = load(return_X_y=True)
    findings = run_check("data.duplicates", X=X, y=y)
    metrics = findings[0].metrics
    assert metrics["near_duplicates"] == 0 and metrics["conflicting_label_near_duplicates"] == 0
    assert metrics["near_duplicates"] < 0.005 * len(X)
    assert NEAR not in by_title(findings) and NEAR_CONFLICT not in by_title(findings)
    assert metrics["near_duplicate_rows_searched"] == len(np.unique(X, axis=0))


@pytest.mark.parametrize("load, n_copies", [(load_breast_cancer, 12), (load_digits, 36)],
                         ids=["breast_cancer", "digits"])
def test_planted_jittered_flips_are_found(load, n_copies):
    X, y = load(return_X_y=True)
    X2, y2, planted = plant_jittered_flips(X, y, n_copies)
    with unchanged(X2, y2), rng_unchanged():
        f = by_title(run_check("data.duplicates", X=X2, y=y2))
    conflict = f[NEAR_CONFLICT]
    found = set(conflict.indices)
    recall, precision = len(found & planted) / len(planted), len(found & planted) / len(found)
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)
    assert conflict.severity is Severity.HIGH  # >= 1% of rows
    assert any(r.startswith("OWASP ML02:2023") for r in conflict.references)
    m = conflict.metrics
    assert m["conflicting_label_near_duplicates"] == len(found)
    assert m["near_duplicates"] == n_copies
    assert m["exact_duplicates"] == 0 and m["conflicting_label_duplicates"] == 0  # jittered: never exact
    assert STABLE <= set(m)
    assert f[NEAR].severity is Severity.LOW and set(f[NEAR].indices) >= found


def test_few_near_duplicates_are_info_and_conflicts_medium(cancer):
    X, y = cancer
    X2, y2, planted = plant_jittered_flips(X, y, 2, seed=4)
    f = by_title(run_check("data.duplicates", X=X2, y=y2))
    assert f[NEAR_CONFLICT].severity is Severity.MEDIUM  # 4 rows of 571 < 1%
    assert set(f[NEAR_CONFLICT].indices) == planted
    assert f[NEAR].severity is Severity.INFO  # 2 near repeats of 571 < 0.5%
    assert f[NEAR].metrics["near_duplicates"] == 2


def test_near_duplicates_with_agreeing_labels_are_not_conflicts(cancer):
    X, y = cancer
    rng = np.random.default_rng(1)
    src = np.arange(0, 60, 2)
    X2 = np.vstack([X, X[src] + rng.normal(size=(len(src), X.shape[1])) * 1e-3 * X.std(axis=0)])
    y2 = np.r_[y, y[src]]
    f = by_title(run_check("data.duplicates", X=X2, y=y2))
    assert NEAR_CONFLICT not in f
    assert f[NEAR].metrics["conflicting_label_near_duplicates"] == 0
    assert set(f[NEAR].indices) == set(src.tolist()) | set(range(len(X), len(X2)))
    assert f[NEAR].severity is Severity.LOW  # 30 of 599 >= 0.5%


def test_exact_copies_are_not_counted_again_as_near_duplicates(cancer):
    X, y = cancer
    X, y = X.copy(), y.copy()
    X[[100, 200]] = X[[1, 2]]  # exact copies, same labels
    y[[100, 200]] = y[[1, 2]]
    X[300] = X[3]  # exact copy with another label
    y[300] = 1 - y[3]
    jitter = X[1] + 1e-3 * X.std(axis=0)  # one near copy of row 1 (and so of its exact copy 100)
    X2, y2 = np.vstack([X, jitter]), np.r_[y, 1 - y[1]]
    f = by_title(run_check("data.duplicates", X=X2, y=y2))
    m = f[NEAR].metrics
    assert m["exact_duplicates"] == 3 and m["conflicting_label_duplicates"] == 2
    assert m["near_duplicates"] == 1 and m["near_duplicate_pairs"] == 1  # 1 ~ 569 only; 1 == 100 is exact
    assert set(f[NEAR].indices) == {1, 100, 569}
    assert set(f[NEAR_CONFLICT].indices) == {1, 100, 569}
    assert set(f["Duplicates with conflicting labels"].indices) == {3, 300}


def test_near_duplicates_follow_a_row_permutation_and_dtype(cancer):
    X, y = cancer
    X2, y2, planted = plant_jittered_flips(X, y, 8, seed=2)
    base = by_title(run_check("data.duplicates", X=X2, y=y2))
    perm = np.random.default_rng(9).permutation(len(X2))
    moved = by_title(run_check("data.duplicates", X=X2[perm], y=y2[perm]))
    for title in (NEAR, NEAR_CONFLICT):
        assert {int(perm[i]) for i in moved[title].indices} == set(base[title].indices)
        assert moved[title].metrics["near_duplicates"] == base[title].metrics["near_duplicates"]
    assert set(base[NEAR_CONFLICT].indices) == planted
    X32 = X2.astype(np.float32)
    a = run_check("data.duplicates", X=X32.astype(np.float64), y=y2)
    b = run_check("data.duplicates", X=X32, y=y2)
    assert [(f.title, f.indices, f.metrics) for f in a] == [(f.title, f.indices, f.metrics) for f in b]
    assert set(by_title(b)[NEAR_CONFLICT].indices) == planted


def test_near_duplicate_search_is_sampled_beyond_the_cap(cancer, monkeypatch):
    X, y = cancer
    X2, y2, planted = plant_jittered_flips(X, y, 30, seed=3)
    monkeypatch.setattr(dup_module, "NEAR_MAX_ROWS", 300)
    with rng_unchanged():
        findings = run_check("data.duplicates", X=X2, y=y2)
    m = findings[0].metrics
    assert m["near_duplicate_rows_searched"] == 300
    assert "near-duplicates searched among a sample of 300 of 599 distinct rows" in m["notes"]
    f = by_title(findings)
    if NEAR_CONFLICT in f:  # whatever was found is planted, and the card says it sampled
        assert set(f[NEAR_CONFLICT].indices) <= planted
        assert "Searched among a sample of 300 of 599 distinct rows" in f[NEAR_CONFLICT].summary


def test_near_duplicates_not_searched_on_tiny_data():
    X = np.arange(12.0).reshape(6, 2)
    findings = run_check("data.duplicates", X=X, y=np.arange(6) % 2)
    assert findings[0].metrics["near_duplicates"] is None
    assert findings[0].metrics["conflicting_label_near_duplicates"] is None
    assert "near-duplicates not searched" in findings[0].summary


def test_near_pairs_matches_brute_force():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(600, 20))
    src = rng.choice(600, size=40, replace=False)
    Z = np.vstack([Z, Z[src] + rng.normal(size=(40, 20)) * 0.01])
    radius = 0.5
    pairs, stopped = near_pairs(Z, radius, np.random.default_rng(1))
    d2 = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
    i, j = np.nonzero(np.triu(d2 < radius ** 2, 1))
    assert not stopped
    assert set(map(tuple, pairs.tolist())) == set(zip(i.tolist(), j.tolist()))


def test_robust_scale_is_not_collapsed_by_jittered_copies():
    col = np.r_[np.zeros(90), np.arange(1.0, 11.0)]  # IQR 0: mostly one value
    X = np.c_[col, np.linspace(0, 1, 100)]
    jittered = np.vstack([X, X + 1e-6])
    Z = robust_scale(jittered)
    assert np.abs(Z[:100] - Z[100:]).max() < 1e-3  # copies stay near their originals


def test_robust_scale_keeps_columns_that_vary_only_outside_the_fitted_rows():
    X = np.c_[np.zeros(50), np.linspace(0, 1, 50)]
    X[40, 0] = 5.0
    Z = robust_scale(X, fit_rows=np.arange(20))
    assert Z.shape[1] == 2 and abs(Z[40, 0]) > 1
