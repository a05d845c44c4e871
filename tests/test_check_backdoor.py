"""``data.backdoor``: plant-and-detect, clean data, layouts, representation kernels, Q4 properties, guards."""

from __future__ import annotations

import json

import numpy as np
import pytest
from guards import rng_unchanged, unchanged

import mlsec_jupyter as mj
from mlsec_jupyter.checks.budget import Budget, CheckCancelled
from mlsec_jupyter.checks.data.backdoor import (
    activation_clusters,
    infer_layout,
    spectral_scores,
    spectral_suspects,
)
from mlsec_jupyter.findings import Severity

CHECK = "data.backdoor"


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    return load_digits(return_X_y=True)


def plant_patch(X, y, *, rows=slice(6, 8), cols=slice(6, 8), value=16.0, rate=0.05, target=0, seed=0):
    """BadNets: stamp a patch on ``rate`` of the rows of other classes and relabel them ``target``."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(np.flatnonzero(y != target), int(rate * len(X)), replace=False))
    X, y = X.copy(), y.copy()
    img = X.reshape(len(X), 8, 8)
    img[idx, rows, cols] = value
    y[idx] = target
    return img.reshape(len(X), 64), y, idx


def f1(found, truth):
    found, truth = {int(i) for i in found}, {int(i) for i in truth}
    tp = len(found & truth)
    if not tp:
        return 0.0
    p, r = tp / len(found), tp / len(truth)
    return 2 * p * r / (p + r)


def flagged(findings):
    return [f for f in findings if f.severity >= Severity.MEDIUM]


# -- plant and detect ------------------------------------------------------------------------------------
def test_digits_2x2_bottom_right_patch_is_found(digits):
    X, y, idx = plant_patch(*digits)
    findings = mj.run_check(CHECK, X=X, y=y)
    hits = flagged(findings)
    assert len(hits) == 1
    f = hits[0]
    assert f.severity == Severity.HIGH
    assert f1(f.indices, idx) >= 0.9
    m = f.metrics
    assert m["target_class"] == "0"
    assert m["suspect_rate"] == pytest.approx(len(f.indices) / len(X))
    assert m["n_suspects"] == len(f.indices)
    assert sorted(m["trigger_features"]) == [54, 55, 62, 63]
    assert m["trigger_value"] == 16.0
    assert "8×8" in m["layout"]
    mask = np.array(m["trigger_mask"])
    assert mask.shape == (8, 8) and mask.sum() == 4 and mask[6:, 6:].all()
    assert "2×2 patch" in f.title and "class '0'" in f.title
    assert any("AML.T0020" in r for r in f.references) and any("AML.T0018" in r for r in f.references)
    assert any("ML02" in r for r in f.references)
    json.dumps(f.to_dict())  # the mask and the metrics are plain JSON


@pytest.mark.parametrize("shape", ["flat", "nhw", "nchw", "nhwc"])
def test_3x3_top_left_patch_in_every_image_layout(digits, shape):
    X, y, idx = plant_patch(*digits, rows=slice(0, 3), cols=slice(0, 3), target=7, rate=0.03, seed=1)
    n = len(X)
    shaped = {"flat": X, "nhw": X.reshape(n, 8, 8), "nchw": X.reshape(n, 1, 8, 8),
              "nhwc": X.reshape(n, 8, 8, 1)}[shape]
    hits = flagged(mj.run_check(CHECK, X=shaped, y=y))
    assert len(hits) == 1
    m = hits[0].metrics
    assert f1(hits[0].indices, idx) >= 0.9
    assert m["target_class"] == "7"
    mask = np.array(m["trigger_mask"])
    assert mask.shape == (8, 8) and mask[:3, :3].all() and mask.sum() == 9
    assert "3×3 patch" in hits[0].title


def test_tabular_trigger_two_features_set_to_an_unusual_constant():
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(3)
    idx = np.sort(rng.choice(np.flatnonzero(y == 0), 20, replace=False))
    X, y = X.copy(), y.copy()
    X[idx, 3] = 777.0  # out of range
    X[idx, 11] = 1.25  # inside the range: only its repetition is unusual
    y[idx] = 1
    hits = flagged(mj.run_check(CHECK, X=X, y=y))
    assert len(hits) == 1
    m = hits[0].metrics
    assert f1(hits[0].indices, idx) >= 0.9
    assert sorted(m["trigger_features"]) == [3, 11] and m["target_class"] == "1"
    assert m["layout"] == "tabular" and "trigger_mask" not in m


# -- clean data ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["digits", "wine", "breast_cancer", "iris"])
def test_no_flags_on_clean_data(name):
    import sklearn.datasets as ds

    X, y = getattr(ds, f"load_{name}")(return_X_y=True)
    findings = mj.run_check(CHECK, X=X, y=y)
    assert len(findings) == 1
    f = findings[0]
    assert f.severity == Severity.INFO and f.title == "No backdoor trigger found"
    assert f.metrics["suspect_rate"] == 0.0 and f.metrics["target_class"] is None
    assert not f.indices


def test_class_specific_zeros_on_rows_that_look_like_their_class_are_only_noted():
    """breast_cancer: 13 benign rows hold 0 in six concavity features — a real shortcut, not a backdoor."""
    from sklearn.datasets import load_breast_cancer

    f = mj.run_check(CHECK, X=load_breast_cancer().data, y=load_breast_cancer().target)[0]
    assert f.severity == Severity.INFO and f.metrics["patterns_seen"] == 1
    assert "look like their own class" in f.summary


def test_without_labels_or_with_continuous_labels_it_says_why():
    X = np.random.default_rng(0).normal(size=(50, 4))
    f = mj.run_check(CHECK, X=X)[0]
    assert f.severity == Severity.INFO and "labels" in f.summary
    f = mj.run_check(CHECK, X=X, y=np.linspace(0, 1, 50) ** 2)[0]
    assert f.severity == Severity.INFO and "continuous" in f.summary
    assert {"suspect_rate", "target_class"} <= set(f.metrics)


# -- layout ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, n_features, kind, hw", [
    ((10, 64), 64, "image", (8, 8)), ((10, 784), 784, "image", (28, 28)), ((10, 30), 30, "tabular", None),
    ((10, 4), 4, "tabular", None), ((10, 28, 28), 784, "image", (28, 28)),
    ((10, 3, 32, 32), 3072, "image", (32, 32)), ((10, 32, 32, 3), 3072, "image", (32, 32)),
])
def test_layout_is_inferred_from_the_shape(shape, n_features, kind, hw):
    layout = infer_layout(shape, n_features)
    assert layout.kind == kind and layout.hw == hw


def test_an_ambiguous_channel_axis_is_stated_and_can_be_overridden(digits):
    """B19: (N, 3, 3, 3) could be channels first or last: searched flat, said so, and overridable."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 8, size=(300, 3, 3, 3)).astype(np.float32)
    y = np.arange(300) % 3
    (f,) = mj.run_check(CHECK, X=X, y=y)
    assert "could be channels first or last" in f.metrics["layout"] and "layout='nchw'" in f.summary
    assert mj.run_check(CHECK, X=X, y=y, layout="nchw")[0].metrics["layout"].endswith("(N, C, H, W)")
    assert mj.run_check(CHECK, X=X, y=y, layout="NHWC")[0].metrics["layout"].endswith("(N, H, W, C)")
    with pytest.raises(ValueError, match="Unknown layout 'chw'"):
        mj.run_check(CHECK, X=X, y=y, layout="chw")
    with pytest.raises(ValueError, match="needs a 3-D X"):
        mj.run_check(CHECK, X=X, y=y, layout="nhw")


def test_an_overridden_layout_finds_the_patch_in_the_right_place(digits):
    X, y, idx = plant_patch(*digits)
    images = X.reshape(-1, 8, 8, 1)  # channels last, inferable; the override must agree
    hit = flagged(mj.run_check(CHECK, X=images, y=y, layout="nhwc"))[0]
    assert hit.metrics["trigger_box"] == [6, 6, 2, 2]


def test_channel_pixels_map_back_to_the_image():
    assert infer_layout((1, 3, 32, 32), 3072).pixel(2 * 1024 + 5 * 32 + 7) == (5, 7)
    assert infer_layout((1, 32, 32, 3), 3072).pixel((5 * 32 + 7) * 3 + 2) == (5, 7)


# -- representation kernels (reference-values.md §3) -----------------------------------------------------
def test_spectral_scores_exact_rule_on_a_tiny_case():
    reps = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.1], [0.0, -0.1],  # class 0: top direction (1, 0)
                     [5.0, 5.0], [5.0, 7.0], [5.0, 3.0]])  # class 1: mean (5, 5), direction (0, 1)
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    np.testing.assert_allclose(spectral_scores(reps, labels), [1, 1, 0, 0, 0, 4, 4], atol=1e-12)


@pytest.mark.parametrize("dims", [5, 40], ids=["tall", "wide"])
def test_spectral_scores_match_the_covariance_route_on_random_data(dims):
    rng = np.random.default_rng(0)
    reps, labels = rng.normal(size=(60, dims)), np.repeat([0, 1, 2], 20)
    scores = spectral_scores(reps, labels)
    for c in range(3):
        R = reps[labels == c] - reps[labels == c].mean(axis=0)
        _, vecs = np.linalg.eigh(R.T @ R)  # the top eigenvector of RᵀR is the top right singular vector
        np.testing.assert_allclose(scores[labels == c], (R @ vecs[:, -1]) ** 2, rtol=1e-9)


def test_spectral_suspects_remove_the_top_one_and_a_half_eps_per_class():
    rng = np.random.default_rng(1)
    reps, labels = rng.normal(size=(80, 3)), np.repeat([0, 1], 40)
    reps[:4, 0] += 50.0  # four far rows in class 0
    flags = spectral_suspects(reps, labels, eps=0.1)  # 1.5 · 0.1 · 40 = 6 rows per class
    assert flags[:40].sum() == 6 and flags[40:].sum() == 6 and flags[:4].all()


def test_activation_clusters_flag_the_small_cluster():
    rng = np.random.default_rng(2)
    reps = rng.normal(size=(200, 16))
    labels = np.repeat([0, 1], 100)
    reps[:12] += 8.0  # a tight poisoned cluster inside class 0 (12 % of the class)
    with rng_unchanged():
        flags, report = activation_clusters(reps, labels, seed=0)
    assert flags[:12].all() and flags[12:100].sum() == 0
    assert report[0]["smaller_cluster_share"] == pytest.approx(0.12)
    assert report[0]["silhouette"] > 0.1


# -- Q4 properties ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def poisoned(digits):
    X, y, idx = plant_patch(*digits)
    f = flagged(mj.run_check(CHECK, X=X, y=y))[0]
    return X, y, idx, f


def test_row_permutation_permutes_the_suspects(poisoned):
    X, y, _, base = poisoned
    perm = np.random.default_rng(5).permutation(len(X))
    f = flagged(mj.run_check(CHECK, X=X[perm], y=y[perm]))[0]
    assert sorted(perm[list(f.indices)].tolist()) == sorted(base.indices)
    assert f.metrics["trigger_features"] == base.metrics["trigger_features"]


def test_class_relabelling_moves_only_the_target_name(poisoned):
    X, y, _, base = poisoned
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    f = flagged(mj.run_check(CHECK, X=X, y=names[y]))[0]
    assert f.metrics["target_class"] == "zero" and f.indices == base.indices
    shifted = flagged(mj.run_check(CHECK, X=X, y=(y + 3) % 10))[0]
    assert shifted.metrics["target_class"] == "3" and shifted.indices == base.indices


def test_float32_and_float64_give_the_same_result(poisoned):
    X, y, _, base = poisoned
    f = flagged(mj.run_check(CHECK, X=X.astype(np.float32), y=y))[0]
    assert f.indices == base.indices and f.metrics["trigger_features"] == base.metrics["trigger_features"]


# -- guards ----------------------------------------------------------------------------------------------
def test_user_objects_and_rngs_are_untouched_for_torch_and_pandas_inputs(poisoned):
    import pandas as pd
    import torch

    X, y, idx, _ = poisoned
    tensor = torch.tensor(X.reshape(len(X), 1, 8, 8), dtype=torch.float32, requires_grad=True)
    labels = torch.tensor(y)
    frame, series = pd.DataFrame(X), pd.Series(y)
    with unchanged(tensor, labels, frame, series), rng_unchanged():
        for XX, yy in [(tensor, labels), (frame, series)]:
            hits = flagged(mj.run_check(CHECK, X=XX, y=yy))
            assert len(hits) == 1 and f1(hits[0].indices, idx) >= 0.9


def test_a_cancelled_budget_stops_the_search(poisoned):
    X, y, _, _ = poisoned
    budget = Budget()
    budget.cancel_event.set()
    with pytest.raises(CheckCancelled):
        mj.run_check(CHECK, X=X, y=y, budget=budget)


def test_big_data_is_sampled_and_said_so(digits):
    X, y, idx = plant_patch(*digits)
    f = flagged(mj.run_check(CHECK, X=X, y=y, budget=Budget(max_rows=1000)))[0]
    assert f.metrics["sampled_rows"] == 1000 and "random sample" in f.summary
    assert set(f.indices) <= set(idx.tolist())
