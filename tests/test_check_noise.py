"""``robustness.noise``: the smoothing radius against its published values (reference-values.md §4), a
clean model, a planted brittle model, R9/R10, bad inputs and the card."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import one_logit_model
from guards import rng_unchanged, unchanged
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlsec_jupyter.checks.budget import Budget, CheckCancelled
from mlsec_jupyter.checks.registry import run_check
from mlsec_jupyter.checks.robustness.noise import smoothing_radius
from mlsec_jupyter.findings import RiskCard, Severity
from mlsec_jupyter.render import card_bundle

CHECK = "robustness.noise"


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


def test_smoothing_radius_matches_cohen_et_al():
    """Cohen, Rosenfeld & Kolter 2019, Thm. 1: p_A = 0.98 → 2.05375σ; σ 0.5, p_A 0.8, p_B 0.1 → 0.530793."""
    assert float(smoothing_radius(0.98, 1.0)) == pytest.approx(2.05375, abs=1e-5)
    assert float(smoothing_radius(0.98, 0.25)) == pytest.approx(0.25 * 2.05375, abs=1e-5)
    assert float(smoothing_radius(0.8, 0.5, 0.1)) == pytest.approx(0.530793, abs=1e-6)
    assert float(smoothing_radius(0.5, 1.0)) == 0.0 and float(smoothing_radius(0.3, 1.0)) == 0.0


def test_a_sound_model_is_robust_to_mild_noise(cancer):
    Xtr, Xte, ytr, yte = cancer
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(Xtr, ytr)
    with unchanged(model, *cancer), rng_unchanged():
        (f,) = run_check(CHECK, model=model, X=Xtr, y=ytr, X_test=Xte, y_test=yte)
    m = f.metrics
    assert f.severity <= Severity.LOW and {"sigma", "accuracy"} <= set(m)
    assert m["sigma_unit"] == "feature standard deviations" and len(m["sigma"]) == len(m["accuracy"]) == 5
    assert m["accuracy"][0] >= m["clean_accuracy"] - 0.03 and m["accuracy"][-1] < m["clean_accuracy"]
    assert len(m["corruptions"]) == 4 and all(0 <= v <= 1 for v in m["corruptions"].values())
    assert 0.5 <= m["smoothing"]["certified_accuracy"] <= 1 and m["smoothing"]["median_certified_radius"] > 0
    assert m["rows"] == "held-out" and m["n_rows"] == len(Xte)


class _Parity(ClassifierMixin, BaseEstimator):
    """A planted brittle model: it decides by the second decimal of the first feature, a detail that any
    noise destroys (it memorised the training rows' exact values)."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return (np.floor(np.asarray(X)[:, 0] * 100) % 2).astype(int)


def test_a_model_relying_on_fine_detail_is_flagged():
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, size=(600, 4))
    model = _Parity().fit(X, None)
    y = model.predict(X)
    (f,) = run_check(CHECK, model=model, X=X, y=y)
    assert f.metrics["clean_accuracy"] == 1.0
    assert f.severity == Severity.MEDIUM and "Mild noise costs accuracy" in f.title
    assert f.metrics["accuracy"][2] < 0.7 and f.recommendation


def test_torch_model_in_train_mode_is_left_alone():
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                                  torch.nn.Linear(32, 10))
        opt = torch.optim.Adam(net.parameters(), 1e-2)
        for _ in range(60):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(torch.tensor(X)), torch.tensor(y)).backward()
            opt.step()
    assert net.training
    with unchanged(net, X, y), rng_unchanged():
        (f,) = run_check(CHECK, model=net, X=X, y=y)
    assert net.training and f.metrics["sigma_unit"] == "data units"
    assert f.metrics["clean_accuracy"] >= 0.9  # computed in eval mode (dropout off) on the private copy
    assert f.metrics["sigma"] == [0.02, 0.05, 0.1, 0.2, 0.3]


def test_bad_inputs_and_parameters(cancer):
    Xtr, Xte, ytr, yte = cancer
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(Xtr, ytr)
    (f,) = run_check(CHECK, model=model, X=Xtr)
    assert f.metrics["skipped"] and "needs y" in f.summary
    (f,) = run_check(CHECK, model=LinearRegression().fit(Xtr, ytr), X=Xtr, y=ytr)
    assert "regressor" in f.summary
    with pytest.raises(ValueError, match="sigma must be positive"):
        run_check(CHECK, model=model, X=Xtr, y=ytr, sigma=[0.0])
    (f,) = run_check(CHECK, model=model, X=Xtr, y=ytr, sigma=0.3)
    assert f.metrics["sigma"] == [0.3] and "plot" not in f.metrics
    budget = Budget()
    budget.cancel_event.set()
    with pytest.raises(CheckCancelled):
        run_check(CHECK, model=model, X=Xtr, y=ytr, budget=budget)


def test_card_draws_the_noise_curve(cancer):
    Xtr, Xte, ytr, yte = cancer
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(Xtr, ytr)
    card = RiskCard("model")
    card.add(run_check(CHECK, model=model, X=Xtr, y=ytr, X_test=Xte, y_test=yte))
    page = card_bundle(card)["text/html"]
    assert "mlsec-plot" in page and "noise σ (feature standard deviations)" in page


def test_a_torch_model_with_one_output_logit_is_read_as_binary():
    X, y, net = one_logit_model(300)
    (f,) = run_check(CHECK, model=net, X=X, y=y)
    assert f.metrics["clean_accuracy"] == 1.0 and f.metrics["accuracy"][0] > 0.95
