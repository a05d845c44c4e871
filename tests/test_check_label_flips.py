"""``data.label_flips`` on real data: plant-and-detect, clean data, skips, Q4 properties, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine

from guards import rng_unchanged, unchanged
from mlsec_jupyter.checks.registry import run_check
from mlsec_jupyter.findings import Severity

CHECK = "data.label_flips"


def flip(y, seed=0, rate=0.10):
    """10 % of rows moved to a uniformly chosen different class (as bench/_poison_labels.py)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    rows = rng.choice(len(y), size=int(round(rate * len(y))), replace=False)
    noisy = y.copy()
    for i in rows:
        noisy[i] = rng.choice(classes[classes != y[i]])
    return noisy, set(rows.tolist())


def run(X, y):
    findings = run_check(CHECK, X=X, y=y)
    assert len(findings) == 1
    return findings[0]


# measured (seed 0): digits precision 0.90 / recall 0.98; breast_cancer 0.86 / 0.84
@pytest.mark.parametrize("loader, precision_floor, recall_floor",
                         [(load_digits, 0.80, 0.85), (load_breast_cancer, 0.75, 0.75)],
                         ids=["digits", "breast_cancer"])
def test_planted_flips_are_found(loader, precision_floor, recall_floor):
    X, y = loader(return_X_y=True)
    noisy, planted = flip(y)
    f = run(X, noisy)
    flagged = set(f.indices)
    hit = len(flagged & planted)
    assert hit / len(flagged) >= precision_floor and hit / len(planted) >= recall_floor, (hit, len(flagged))
    assert f.severity == Severity.HIGH and f.title.startswith("About ") and "look flipped" in f.title
    assert 0.08 <= f.metrics["estimated_flip_rate"] <= 0.13
    assert f.metrics["n_flagged"] == len(f.indices)
    scores = {r["row"]: r["score"] for r in f.metrics["top_rows"]}
    assert list(scores) == list(f.indices[:10]) and list(scores.values()) == sorted(scores.values(), reverse=True)
    top = f.metrics["top_rows"][0]
    assert top["label"] == str(noisy[top["row"]]) and top["suggested"] != top["label"]
    assert "Most suspected flips are labelled" in f.summary and f.metrics["class_pairs"][0]["count"] >= 1
    assert f.metrics["folds"] == 5 and f.metrics["model"]
    assert "MITRE ATLAS AML.T0020 Poison Training Data" in f.references and any("ML02" in r for r in f.references)
    assert "relabel" in f.recommendation and "retrain" in f.recommendation


def tiny():
    """Two tight clusters of 6 rows; row 5 sits in cluster A with label 1, row 11 in cluster B with label 0."""
    a = np.array([[0, 0], [0.1, 0], [0, 0.1], [0.1, 0.1], [0.05, 0.05], [0.02, 0.08]])
    X = np.vstack([a, a + 5.0])
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0])
    return X, y


def test_tiny_hand_made_case_flags_exactly_the_two_swapped_rows():
    X, y = tiny()
    f = run(X, y)
    assert sorted(f.indices) == [5, 11]
    assert {(r["row"], r["label"], r["suggested"]) for r in f.metrics["top_rows"]} == {(5, "1", "0"), (11, "0", "1")}
    assert f.metrics["estimated_flip_rate"] == pytest.approx(2 / 12, abs=1e-6)


@pytest.mark.parametrize("loader", [load_wine, load_iris], ids=["wine", "iris"])
def test_clean_data_gives_no_flags(loader):
    # measured false-flag rate: 0 % on wine (178 rows) and iris (150 rows); 0.18 % on breast_cancer, 0.33 % on digits
    X, y = loader(return_X_y=True)
    f = run(X, y)
    assert f.severity == Severity.INFO and f.title == "No label flips found"
    assert f.metrics["estimated_flip_rate"] == 0 and f.indices == ()


@pytest.mark.parametrize("y, phrase", [
    (np.linspace(0.0, 3.0, 40) ** 2, "continuous"),
    (np.ones(40, dtype=int), "only one class"),
    (np.array([0] * 37 + [1] * 3), "at least 5 labelled rows in every class"),
], ids=["continuous", "single-class", "tiny-class"])
def test_unusable_labels_give_a_clear_skip_line(y, phrase):
    X = np.random.default_rng(1).normal(size=(40, 3))
    f = run(X, y)
    assert f.severity == Severity.INFO and f.title == "Label flips not checked"
    assert phrase in f.summary and f.metrics["estimated_flip_rate"] is None


def test_tiny_input_gives_a_clear_skip_line():
    f = run(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0, 1]))
    assert f.title == "Label flips not checked" and "at least 5" in f.summary


@pytest.fixture(scope="module")
def noisy_digits():
    X, y = load_digits(return_X_y=True)
    return X, flip(y, seed=3)[0]


def test_flagged_set_follows_a_joint_row_permutation(noisy_digits):
    X, y = noisy_digits
    perm = np.random.default_rng(5).permutation(len(y))
    base = set(run(X, y).indices)
    moved = {int(perm[i]) for i in run(X[perm], y[perm]).indices}
    assert moved == base


def test_flagged_set_is_invariant_under_class_relabelling(noisy_digits):
    X, y = noisy_digits
    mapping = np.array([7, 3, 9, 0, 5, 1, 8, 2, 6, 4])
    a, b = run(X, y), run(X, mapping[y])
    assert a.indices == b.indices
    assert [(r["row"], int(mapping[int(r["label"])])) for r in a.metrics["top_rows"]] == \
           [(r["row"], int(r["label"])) for r in b.metrics["top_rows"]]


def test_float32_and_float64_give_the_same_flags(noisy_digits):
    X, y = noisy_digits
    X32 = X.astype(np.float32)
    assert run(X32, y).indices == run(X32.astype(np.float64), y).indices


def test_deterministic_and_leaves_global_rngs_and_inputs_alone(noisy_digits):
    X, y = noisy_digits
    with unchanged(X, y), rng_unchanged():
        first = run(X, y)
    np.random.seed(123)
    with rng_unchanged():
        second = run(X, y)
    assert first.indices == second.indices and first.metrics == second.metrics


def test_big_data_is_sampled_and_says_so():
    from mlsec_jupyter.checks.budget import Budget

    X, y = load_breast_cancer(return_X_y=True)
    f = run_check(CHECK, X=X, y=y, budget=Budget(max_rows=300))[0]
    assert f.metrics.get("sampled_rows") == 300 and "sampled 300 of 569 rows" in f.metrics["notes"]
    assert all(0 <= i < len(y) for i in f.indices)


def test_closed_form_models_match_scikit_learn():
    from sklearn import discriminant_analysis as da
    from sklearn.model_selection import cross_val_predict

    from mlsec_jupyter.checks.data import label_flips as lf

    X, y = load_breast_cancer(return_X_y=True)
    noisy, _ = flip(y)
    Z = lf.scaled_features(X)
    folds = lf.content_folds(np.arange(len(y)), noisy, 5)
    lda = cross_val_predict(da.LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"), Z, noisy, cv=folds,
                            method="predict_proba")
    assert np.allclose(lf._lda_oof(Z, noisy, folds, 2), lda, atol=1e-8)
    qda = cross_val_predict(da.QuadraticDiscriminantAnalysis(reg_param=lf.QDA_REG), Z, noisy, cv=folds,
                            method="predict_proba")
    assert np.abs(lf._qda_oof(Z, noisy, folds, 2) - qda).max() < 0.02


def test_reference_sample_neighbour_vote_is_permutation_invariant(noisy_digits, monkeypatch):
    from mlsec_jupyter.checks.data import label_flips as lf

    monkeypatch.setattr(lf, "KNN_REFERENCE", 600)  # the path big data takes, on digits
    X, y = noisy_digits
    perm = np.random.default_rng(7).permutation(len(y))
    base = run(X, y)
    assert base.metrics["n_flagged"] >= 100  # still finds the ~180 planted flips
    assert {int(perm[i]) for i in run(X[perm], y[perm]).indices} == set(base.indices)
