"""``model.extraction``: exact equation solving on logistic regression (reference-values §5), the label-only
surrogate sweep on real models, torch, budget and cancellation, bad inputs and the card."""

from __future__ import annotations

import numpy as np
import pytest
from guards import rng_unchanged, unchanged
from sklearn.datasets import load_breast_cancer, load_digits, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from mlsec_jupyter.checks.budget import Budget, CheckCancelled
from mlsec_jupyter.checks.registry import get_check, run_check
from mlsec_jupyter.checks.robustness import extraction as E
from mlsec_jupyter.findings import RiskCard, Severity

CHECK = "model.extraction"


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def by_severity(findings, severity):
    return [f for f in findings if f.severity == severity]


def sweep_of(findings):
    (f,) = [f for f in findings if "plot" in f.metrics or "surrogates" in f.metrics]
    return f


# ------------------------------------------------------------------------------------------------
# registration
# ------------------------------------------------------------------------------------------------
def test_the_check_is_registered_as_a_slow_model_check():
    spec = get_check(CHECK)
    assert spec.applies_to == "model" and spec.cost == "slow" and spec.title == "Model extraction"
    assert spec.requires == ("training_data",)
    assert {"model", "X", "y", "X_test", "y_test", "framework", "queries"} <= spec.parameters


# ------------------------------------------------------------------------------------------------
# equation solving (Tramèr et al. 2016 §4.1; reference-values §5)
# ------------------------------------------------------------------------------------------------
def test_d_plus_one_queries_recover_breast_cancer_logistic_regression_exactly():
    X, y = load_breast_cancer(return_X_y=True)
    Xs = StandardScaler().fit_transform(X)
    lr = LogisticRegression(max_iter=5000).fit(Xs, y)
    # the attack on its own, as in the reference: 31 queries x ~ N(0, 0.1²) on standardised data
    rec = E.equation_solving(lr.predict_proba, np.zeros(30), np.ones(30), np.random.default_rng(1))
    assert rec.queries.shape == (31, 30)
    w, b = lr.coef_[0], lr.intercept_[0]
    assert np.max(np.abs(rec.W[0] - w)) / np.max(np.abs(w)) <= 1e-8
    assert abs(rec.b[0] - b) / max(abs(b), 1e-12) <= 1e-8
    # ... and through the check
    with unchanged(lr, Xs, y), rng_unchanged():
        findings = run_check(CHECK, model=lr, X=Xs, queries=[25, 100, 500])
    (crit,) = by_severity(findings, Severity.CRITICAL)
    assert crit.title == "Probabilities expose the model: 31 queries recover its weights exactly"
    assert crit.metrics["exact_recovery_queries"] == 31 and crit.metrics["n_features"] == 30
    assert crit.metrics["max_relative_error"] <= 1e-8
    assert crit.metrics["exact_fidelity"] == 1.0
    assert crit.metrics["rounded_max_relative_error"] > 1e-3  # rounding to 2 decimals breaks it
    assert any("AML.T0024.002" in r for r in crit.references) and "OWASP ML05:2023 Model Theft" in crit.references
    assert "labels only" in crit.recommendation.lower() or "return labels" in crit.recommendation.lower()
    assert {"queries", "fidelity"} <= set(crit.metrics)


def test_recovery_goes_through_a_scaler_pipeline_in_raw_units(cancer):
    Xtr, Xte, ytr, _yte = cancer
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(Xtr, ytr)
    with unchanged(pipe, Xtr, Xte), rng_unchanged():
        findings = run_check(CHECK, model=pipe, X=Xtr, X_test=Xte, queries=[50, 500])
    (crit,) = by_severity(findings, Severity.CRITICAL)
    assert crit.metrics["exact_recovery_queries"] == 31 and crit.metrics["max_relative_error"] <= 1e-8
    # the closed form in raw units, computed here independently of the check
    sc, lr = pipe[0], pipe[-1]
    w_raw = lr.coef_[0] / sc.scale_
    b_raw = lr.intercept_[0] - np.sum(lr.coef_[0] * sc.mean_ / sc.scale_)
    centre, unit = Xtr.mean(axis=0), Xtr.std(axis=0)
    rec = E.equation_solving(pipe.predict_proba, centre, unit, np.random.default_rng(3))
    theta_hat = np.concatenate([rec.W[0], rec.b])
    theta = np.concatenate([w_raw, [b_raw]])
    assert np.max(np.abs(theta_hat - theta)) / np.max(np.abs(theta)) <= 1e-8
    # rounded probabilities: the same queries no longer pin the weights down
    rounded = np.round(rec.proba, 2)
    W_r, b_r = E.solve_linear(rec.queries, E.log_ratios(rounded, floor=0.005), rec.centre, rec.spread)
    assert E.relative_error(W_r, b_r, w_raw[None, :], np.array([b_raw])) > 1e-3


def test_multinomial_recovery_gives_the_weight_differences(digits):
    Dtr, Dte, dtr, _dte = digits
    iris_X, iris_y = load_iris(return_X_y=True)
    iris = LogisticRegression(max_iter=5000).fit(iris_X, iris_y)
    rec = E.equation_solving(iris.predict_proba, iris_X.mean(axis=0), iris_X.std(axis=0), np.random.default_rng(0))
    assert rec.W.shape == (2, 4) and len(rec.queries) == 5
    W_true, b_true = iris.coef_[1:] - iris.coef_[0], iris.intercept_[1:] - iris.intercept_[0]
    assert E.relative_error(rec.W, rec.b, W_true, b_true) <= 1e-8
    # digits: 64 pixels (some always 0) and 10 classes through the check
    lr = LogisticRegression(max_iter=3000).fit(Dtr[:600] / 16.0, dtr[:600])
    with unchanged(lr, Dtr, Dte), rng_unchanged():
        findings = run_check(CHECK, model=lr, X=Dtr / 16.0, X_test=Dte / 16.0, queries=[50, 200])
    (crit,) = by_severity(findings, Severity.CRITICAL)
    assert crit.metrics["exact_recovery_queries"] == 65 and crit.metrics["n_classes"] == 10
    assert crit.metrics["max_relative_error"] <= 1e-8
    assert crit.metrics["rounded_max_relative_error"] > 1e-2
    assert "up to softmax" in crit.title


def test_one_vs_rest_probabilities_and_label_only_linear_models_get_no_exact_finding():
    X, y = load_iris(return_X_y=True)
    sgd = make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss", random_state=0)).fit(X, y)
    findings = run_check(CHECK, model=sgd, X=X, queries=[25, 100])
    assert not by_severity(findings, Severity.CRITICAL)
    assert any("not the softmax" in n for n in sweep_of(findings).metrics["notes"])
    svm = make_pipeline(StandardScaler(), LinearSVC()).fit(X, y)
    findings = run_check(CHECK, model=svm, X=X, queries=[25, 100])
    assert not by_severity(findings, Severity.CRITICAL)
    assert any("no predict_proba" in n for n in sweep_of(findings).metrics["notes"])


def test_softmax_form_rejects_an_altered_probability_output():
    X, y = load_iris(return_X_y=True)
    lr = LogisticRegression(max_iter=5000).fit(X, y)
    p = lr.predict_proba(X[:20])
    assert E.softmax_form(lr.coef_, lr.intercept_, p, X[:20])[0]
    ok, why = E.softmax_form(lr.coef_, lr.intercept_, np.round(p, 2), X[:20])
    assert not ok and "softmax" in why


# ------------------------------------------------------------------------------------------------
# the surrogate sweep
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: RandomForestClassifier(n_estimators=50, random_state=0),
    lambda: make_pipeline(StandardScaler(), SVC()),
    lambda: KNeighborsClassifier(n_neighbors=5),
], ids=["random_forest", "svc_rbf", "knn"])
def test_sweep_on_nonlinear_models_copies_breast_cancer(cancer, make):
    Xtr, Xte, ytr, _yte = cancer
    model = make().fit(Xtr, ytr)
    grid = [25, 100, 500, 2500] if isinstance(model, RandomForestClassifier) else None
    with unchanged(model, Xtr, Xte), rng_unchanged():
        findings = run_check(CHECK, model=model, X=Xtr, X_test=Xte, queries=grid)
    assert not by_severity(findings, Severity.CRITICAL)
    (f,) = findings
    q, fid = f.metrics["queries"], f.metrics["fidelity"]
    assert q == (grid or list(E.QUERY_GRID)) and len(fid) == len(q)
    assert all(0.0 <= v <= 1.0 for v in fid)
    assert fid[-1] >= 0.9
    assert f.metrics["n_eval"] == len(Xte) and f.metrics["synthetic_from"] == len(Xtr)
    assert f.metrics["surrogate"] == f"clone of {type(model).__name__}"
    assert f.metrics["baseline_fidelity"] == pytest.approx(np.mean(model.predict(Xte) == 1)
                                                          if np.mean(model.predict(Xte) == 1) > 0.5
                                                          else np.mean(model.predict(Xte) == 0))
    assert f.severity == Severity.MEDIUM and "If served, the model can be copied" in f.title
    assert f.metrics["plot"] == {"kind": "line", "x": "queries", "y": "fidelity", "x_label": "label-only queries",
                                 "y_label": "fidelity (agreement)", "log_x": True}


def test_fidelity_is_recomputed_exactly_for_a_deterministic_surrogate(cancer):
    """kNN's clone is deterministic: the reported fidelity is the agreement of a 3-NN fitted on the first N
    (query, model label) pairs with the model's own predictions."""
    from mlsec_jupyter.checks._models import ModelProbe

    Xtr, Xte, ytr, _yte = cancer
    knn = KNeighborsClassifier(n_neighbors=3).fit(Xtr, ytr)
    rng = np.random.default_rng(0)
    queries, n_real = E.make_queries(Xtr, 1000, rng)
    assert n_real == len(Xtr) and queries.shape == (1000, 30)
    assert np.all(queries[n_real:] >= Xtr.min()) and np.all(queries[n_real:] <= Xtr.max())
    labels, eval_pred = knn.predict(queries), knn.predict(Xte)
    sweep = E.surrogate_sweep(knn, ModelProbe(knn, (30,)), queries, labels, Xte, eval_pred, [40, 300, 1000],
                              Budget(), rng)
    assert sweep.queries == [40, 300, 1000] and sweep.surrogates == ["clone"] * 3
    for n, fid in zip(sweep.queries, sweep.fidelity):
        twin = KNeighborsClassifier(n_neighbors=3).fit(queries[:n], labels[:n])
        assert fid == pytest.approx(np.mean(twin.predict(Xte) == eval_pred), abs=1e-12)
    # a query set with a single label gives the constant surrogate
    one = E.surrogate_sweep(knn, ModelProbe(knn, (30,)), queries, np.zeros(1000, dtype=int), Xte, eval_pred,
                            [10], Budget(), rng)
    assert one.surrogates == ["constant"] and one.fidelity[0] == pytest.approx(np.mean(eval_pred == 0))


def test_split_of_x_alone_and_one_class_query_sets():
    X, y = load_breast_cancer(return_X_y=True)
    # a model that predicts class 1 on almost everything: the first queries may hold one class
    skewed = LogisticRegression(max_iter=5000, class_weight={0: 0.02, 1: 1.0}).fit(StandardScaler().fit_transform(X), y)
    Xs = StandardScaler().fit_transform(X)
    findings = run_check(CHECK, model=skewed, X=Xs, queries=[1, 2, 200])
    f = sweep_of(findings)
    assert f.metrics["eval_rows"].endswith("held-back rows of X") and f.metrics["n_eval"] == round(len(X) / 3)
    assert f.metrics["n_pool"] == len(X) - f.metrics["n_eval"]
    assert f.metrics["surrogates"][0] == "constant"  # one query, one label
    assert f.metrics["queries"] == [1, 2, 200]


def test_torch_mlp_sweep_runs_on_a_private_copy(digits):
    torch = pytest.importorskip("torch")
    Dtr, Dte, dtr, _dte = digits
    Xtr = torch.tensor(Dtr / 16.0, dtype=torch.float32)
    Xte = torch.tensor(Dte / 16.0, dtype=torch.float32)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
        opt = torch.optim.Adam(net.parameters(), lr=0.02)
        target = torch.tensor(dtr)  # 25 full-batch Adam steps: ~95 % test accuracy
        for _ in range(25):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(Xtr), target).backward()
            opt.step()
    net.train()
    with unchanged(net, Xtr, Xte), rng_unchanged():
        findings = run_check(CHECK, model=net, X=Xtr, X_test=Xte, framework="torch", queries=[50, 500, 2500])
    assert net.training and all(m.training for m in net.modules())
    (f,) = findings
    assert f.metrics["queries"] == [50, 500, 2500] and len(f.metrics["fidelity"]) == 3
    assert all(0.0 <= v <= 1.0 for v in f.metrics["fidelity"])
    assert f.metrics["fidelity"][-1] >= 0.8 and f.metrics["fidelity"][-1] > f.metrics["fidelity"][0]
    assert f.metrics["surrogate"] == E.FALLBACK_NAME and "exact_recovery_queries" not in f.metrics


# ------------------------------------------------------------------------------------------------
# budget and cancellation
# ------------------------------------------------------------------------------------------------
def test_a_small_time_budget_gives_a_partial_sweep_with_a_note(cancer):
    Xtr, Xte, ytr, _yte = cancer
    rf = RandomForestClassifier(n_estimators=300, random_state=0).fit(Xtr, ytr)
    (f,) = run_check(CHECK, model=rf, X=Xtr, X_test=Xte, budget=Budget(seconds=3.0))
    assert 1 <= len(f.metrics["queries"]) < len(E.QUERY_GRID)
    assert f.metrics["queries"] == list(E.QUERY_GRID[: len(f.metrics["queries"])])
    assert any("sweep stopped before N" in n for n in f.metrics["notes"])
    assert "sweep stopped" in f.summary


def test_cancellation_raises(cancer):
    Xtr, Xte, ytr, _yte = cancer
    lr = make_pipeline(StandardScaler(), LogisticRegression()).fit(Xtr, ytr)
    budget = Budget()
    budget.cancel_event.set()
    with pytest.raises(CheckCancelled):
        run_check(CHECK, model=lr, X=Xtr, X_test=Xte, budget=budget)


# ------------------------------------------------------------------------------------------------
# bad inputs
# ------------------------------------------------------------------------------------------------
def test_bad_inputs_get_a_clear_finding(cancer):
    Xtr, Xte, ytr, _yte = cancer
    lr = make_pipeline(StandardScaler(), LogisticRegression()).fit(Xtr, ytr)
    # strings in X
    Xo = Xtr.astype(object)
    Xo[:, 0] = "text"
    (s,) = run_check(CHECK, model=lr, X=Xo)
    assert s.severity == Severity.INFO and s.title == "Model extraction not checked"
    assert "non-numeric" in s.summary and s.metrics["queries"] == [] and s.metrics["fidelity"] == []
    # too few rows
    (t,) = run_check(CHECK, model=lr, X=Xtr[:30])
    assert "at least 50" in t.summary
    # a regressor
    ridge = Ridge().fit(Xtr, ytr.astype(float))
    (r,) = run_check(CHECK, model=ridge, X=Xtr)
    assert "regressor" in r.summary
    # no predict at all
    (n,) = run_check(CHECK, model=object(), X=Xtr)
    assert "not checked" in n.summary
    # a wrong query grid
    with pytest.raises(ValueError, match="queries"):
        run_check(CHECK, model=lr, X=Xtr, queries=[0, 10])
    with pytest.raises(ValueError, match="queries"):
        run_check(CHECK, model=lr, X=Xtr, queries=["many"])
    # X is required
    with pytest.raises(ValueError, match="needs the data"):
        run_check(CHECK, model=lr, X_test=Xte)


def test_nan_rows_are_left_out_and_labels_are_not_needed(cancer):
    Xtr, Xte, ytr, _yte = cancer
    lr = make_pipeline(StandardScaler(), LogisticRegression()).fit(Xtr, ytr)
    Xn = Xtr.copy()
    Xn[:12, 3] = np.nan
    Xn.flags.writeable = False
    with unchanged(lr, Xn, Xte), rng_unchanged():
        findings = run_check(CHECK, model=lr, X=Xn, y=None, X_test=Xte, y_test=None, queries=[25, 250])
    f = sweep_of(findings)
    assert f.metrics["n_pool"] == len(Xtr) - 12
    assert any("left out 12 rows" in n for n in f.metrics["notes"])
    assert by_severity(findings, Severity.CRITICAL)  # the d+1 attack is unaffected
    # X_test with the wrong width falls back to a split of X, and says so
    findings = run_check(CHECK, model=lr, X=Xtr, X_test=Xte[:, :5], queries=[25, 250])
    f = sweep_of(findings)
    assert "held-back rows of X" in f.metrics["eval_rows"]
    assert any("X_test not used" in n for n in f.metrics["notes"])


def test_pandas_frames_and_string_labels():
    pd = pytest.importorskip("pandas")
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    labels = np.where(y == 1, "benign", "malignant")
    lr = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, labels)
    with unchanged(lr, X), rng_unchanged():
        findings = run_check(CHECK, model=lr, X=X, queries=[25, 250])
    (crit,) = by_severity(findings, Severity.CRITICAL)
    assert crit.metrics["max_relative_error"] <= 1e-8
    f = sweep_of(findings)
    assert all(0.9 <= v <= 1.0 for v in f.metrics["fidelity"][1:])
    assert isinstance(X, pd.DataFrame)


# ------------------------------------------------------------------------------------------------
# the card
# ------------------------------------------------------------------------------------------------
def test_the_card_draws_the_fidelity_curve(cancer):
    from mlsec_jupyter.findings import CARD_MIME
    from mlsec_jupyter.render import card_bundle

    Xtr, Xte, ytr, _yte = cancer
    lr = make_pipeline(StandardScaler(), LogisticRegression()).fit(Xtr, ytr)
    findings = run_check(CHECK, model=lr, X=Xtr, X_test=Xte, queries=[25, 100, 1000])
    card = RiskCard("lr")
    card.add(findings)
    bundle = card_bundle(card)
    data = bundle[CARD_MIME]
    sweep = next(f for f in data["findings"] if "plot" in f["metrics"])
    assert sweep["metrics"]["queries"] == [25, 100, 1000] and len(sweep["metrics"]["fidelity"]) == 3
    assert "mlsec-plot" in bundle["text/html"] and "label-only queries" in bundle["text/html"]
    assert "Probabilities expose the model" in bundle["text/html"]
    assert "model.extraction" in bundle["text/plain"]
    assert data["findings"][0]["severity"] == "critical"


def test_an_unclonable_model_gets_the_fallback_surrogate_and_a_constant_model_is_info(cancer):
    from sklearn.dummy import DummyClassifier

    Xtr, Xte, ytr, _yte = cancer

    class Served:
        """A prediction service wrapping a fitted model: predict only, no get_params (cannot be cloned)."""

        def __init__(self, inner):
            self.inner = inner

        def predict(self, rows):
            return self.inner.predict(rows)

    served = Served(make_pipeline(StandardScaler(), SVC()).fit(Xtr, ytr))
    with unchanged(served.inner, Xtr, Xte), rng_unchanged():
        (f,) = run_check(CHECK, model=served, X=Xtr, X_test=Xte, queries=[50, 1000])
    assert f.metrics["surrogate"] == E.FALLBACK_NAME and set(f.metrics["surrogates"]) == {"fallback"}
    assert any("could not be cloned" in n for n in f.metrics["notes"])
    assert f.metrics["fidelity"][-1] >= 0.9
    constant = DummyClassifier(strategy="constant", constant=1).fit(Xtr, ytr)
    (c,) = run_check(CHECK, model=constant, X=Xtr, X_test=Xte, queries=[25, 100])
    assert c.severity == Severity.INFO and c.metrics["baseline_fidelity"] == 1.0
    assert c.metrics["fidelity"] == [1.0, 1.0] and "one class" in c.title


def test_an_exhausted_budget_is_a_clean_timeout(cancer):
    from mlsec_jupyter.checks.budget import CheckTimeout

    Xtr, Xte, ytr, _yte = cancer
    knn = KNeighborsClassifier().fit(Xtr, ytr)
    with pytest.raises(CheckTimeout):
        run_check(CHECK, model=knn, X=Xtr, X_test=Xte, budget=Budget(seconds=0.0))
