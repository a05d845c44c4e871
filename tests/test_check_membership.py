"""``privacy.membership``: exact metric values, plant-and-detect on real models, clean data, Q7, torch,
structural checks, budget and cancellation, the DP comparison and the card."""

from __future__ import annotations

import hashlib
import threading
import time

import numpy as np
import pytest
from guards import rng_unchanged, unchanged
from scipy.stats import norm
from sklearn.datasets import load_breast_cancer, make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

import mlsec_jupyter as mj
from mlsec_jupyter.checks.budget import Budget, CheckCancelled
from mlsec_jupyter.checks.privacy import membership as M
from mlsec_jupyter.checks.registry import get_check, run_check
from mlsec_jupyter.findings import Finding, RiskCard, Severity

CHECK = "privacy.membership"
STABLE = {"auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr", "advantage", "epsilon_lower_bound"}


# ------------------------------------------------------------------------------------------------
# exact values (reference-values.md §2)
# ------------------------------------------------------------------------------------------------
def toy():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([.1, .6, .2, .45, .9, .99])
    return s[y == 1], s[y == 0]


def test_toy_vector_metrics_are_exact():
    m, n = toy()
    fpr, tpr, _ = M.roc(m, n)
    assert M.auc(m, n) == pytest.approx(8 / 9, abs=1e-12)
    assert M.tpr_at_fpr(fpr, tpr, 0.0) == pytest.approx(2 / 3, abs=1e-12)
    assert M.tpr_at_fpr(fpr, tpr, 0.4) == pytest.approx(1.0, abs=1e-12)
    assert M.advantage(m, n, threshold=0.5) == pytest.approx(1 / 3, abs=1e-12)
    assert M.advantage(m, n) == pytest.approx(2 / 3, abs=1e-12)  # best threshold (0.45)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_epsilon_from_rates_and_dp_region_are_exact():
    assert float(M.epsilon_from_rates(0.01, 0.5, 0.0)) == pytest.approx(0.6831, abs=5e-5)
    assert float(M.epsilon_from_rates(0.01, 0.5, 0.0)) == pytest.approx(np.log(0.99 / 0.5), abs=1e-12)
    for eps, expected in [(1.0, 0.0027283), (2.0, 0.0073991), (8.0, 0.99966)]:
        assert M.dp_max_tpr(1e-3, eps, 1e-5) == pytest.approx(expected, abs=1e-5 if eps == 8 else 1e-7)
    for eps, expected in [(0.1, 0.049958), (1.0, 0.462117), (2.0, 0.761594), (8.0, 0.999329)]:
        assert M.dp_max_advantage(eps, 0.0) == pytest.approx(expected, abs=1e-6)
        assert M.dp_max_advantage(eps, 0.0) == pytest.approx(np.tanh(eps / 2), abs=1e-12)
    assert M.dp_max_advantage(1.0, 1e-5) == pytest.approx((np.e - 1 + 2e-5) / (np.e + 1), abs=1e-12)


def test_gaussian_trade_off_curve_lies_inside_the_dp_region():
    # mu-GDP TPR = Phi(Phi^-1(FPR) + mu) (reference §2); mu = 1 is (eps=4.377178, 1e-5)-DP (§1 row 18)
    fpr = np.array([0.1, 1e-3, 1e-5])
    tpr = norm.cdf(norm.ppf(fpr) + 1.0)
    assert tpr == pytest.approx([0.38914, 0.01830, 0.0005475], rel=1e-3)
    assert np.all(tpr <= M.dp_max_tpr(fpr, 4.377178, 1e-5) + 1e-12)


def test_clopper_pearson_matches_closed_forms():
    lo, hi = M.clopper_pearson(0, 10)
    assert float(lo) == 0 and float(hi) == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-12)
    lo, hi = M.clopper_pearson(10, 10)
    assert float(hi) == 1 and float(lo) == pytest.approx(0.025 ** (1 / 10), abs=1e-12)


def test_epsilon_lower_bound_is_conservative_on_a_known_mechanism():
    # randomized response with eps = 1: each row says "member" w.p. e/(1+e) if it is one, 1/(1+e) if not.
    rng = np.random.default_rng(0)
    p = np.e / (1 + np.e)
    m = (rng.random(5000) < p).astype(float)
    n = (rng.random(5000) < 1 - p).astype(float)
    lb, _ = M.epsilon_lower_bound(m, n, delta=0.0)
    point = float(M.epsilon_from_rates(np.mean(n), 1 - np.mean(m)))
    assert 0.8 < lb < 1.0 < point + 0.1
    assert lb < point
    assert M.advantage(m, n) <= M.dp_max_advantage(1.0) + 0.03


def test_log_roc_is_short_monotone_and_never_optimistic():
    rng = np.random.default_rng(1)
    m, n = rng.normal(0.5, 1, 3000), rng.normal(0, 1, 3000)
    fpr, tpr, _ = M.roc(m, n)
    rf, rt = M.log_roc(fpr, tpr, len(n))
    assert len(rf) <= 200 and rf[0] == pytest.approx(1 / 3000, rel=1e-4) and rf[-1] == 1
    assert np.all(np.diff(rf) > 0) and np.all(np.diff(rt) >= 0)
    for f, t in zip(rf, rt):
        assert t == pytest.approx(M.tpr_at_fpr(fpr, tpr, f), abs=1e-6)


def test_compare_with_dp_flags_a_broken_guarantee():
    bad = M.compare_with_dp(2.5, 1.0, delta=1e-5)
    assert isinstance(bad, Finding) and bad.severity == Severity.CRITICAL
    assert bad.metrics["epsilon_lower_bound"] == 2.5 and bad.metrics["accounted_epsilon"] == 1.0
    assert bad.metrics["delta"] == 1e-5 and "noise" in bad.recommendation
    ok = M.compare_with_dp(0.4, 1.0)
    assert ok.severity == Severity.INFO and "40%" in ok.summary
    assert M.compare_with_dp(1.0, 1.0).severity == Severity.INFO  # equal is allowed
    assert M.compare_with_dp(3.0, 1.0, check="privacy.dp_budget").check == "privacy.dp_budget"


# ------------------------------------------------------------------------------------------------
# real models
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def split():
    X, y = make_classification(n_samples=2400, n_features=20, n_informative=8, flip_y=0.1, random_state=0)
    return train_test_split(X, y, test_size=0.5, random_state=0)


@pytest.fixture(scope="module")
def rf_findings(split):
    Xtr, Xte, ytr, yte = split
    rf = RandomForestClassifier(100, random_state=0).fit(Xtr, ytr)
    with unchanged(rf, Xtr, ytr, Xte, yte), rng_unchanged():
        findings = mj.run_check(CHECK, model=rf, X=Xtr, y=ytr, X_test=Xte, y_test=yte)
    return rf, findings


def main_finding(findings):
    main = [f for f in findings if "attacks" in f.metrics]
    assert len(main) == 1, [f.title for f in findings]
    return main[0]


def test_registration():
    spec = get_check(CHECK)
    assert spec.applies_to == "model" and spec.cost == "slow" and spec.title == "Membership inference"
    assert set(spec.requires) == {"training_data", "test_data"}
    fitted = LogisticRegression().fit(np.r_[np.zeros((3, 2)), np.ones((3, 2))], [0, 0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="held-out test set"):
        run_check(CHECK, model=fitted, X=np.zeros((5, 2)), y=np.zeros(5))
    with pytest.raises(ValueError, match="needs a fitted model"):  # B31
        run_check(CHECK, model=LogisticRegression(), X=np.zeros((5, 2)), y=np.zeros(5))


def test_overfit_forest_is_caught(rf_findings, split):
    _, findings = rf_findings
    f = main_finding(findings)
    assert STABLE <= set(f.metrics)
    assert f.metrics["auc_ci"][0] > 0.5 and f.metrics["auc"] > 0.7
    assert f.severity >= Severity.MEDIUM
    assert f.metrics["n_members"] == f.metrics["n_nonmembers"] == 1200
    assert len(f.metrics["roc_fpr"]) == len(f.metrics["roc_tpr"]) <= 200 and min(f.metrics["roc_fpr"]) > 0
    assert f.metrics["plot"] == {"kind": "line", "x": "roc_fpr", "y": "roc_tpr", "x_label": "false-positive rate",
                                 "y_label": "true-positive rate", "log_x": True}
    assert set(f.metrics["attacks"]) == {"loss threshold", "shadow (LiRA offline)"}
    assert f.metrics["attacks"]["shadow (LiRA offline)"]["shadow_models"] == M.N_SHADOW
    assert f.metrics["epsilon_lower_bound"] > 0
    assert "MITRE ATLAS AML.T0024.000 Exfiltration via AI Inference API: Infer Training Data Membership" in f.references
    assert any("ML04" in r for r in f.references)
    assert "DP-SGD" in f.recommendation and "probabilities" in f.recommendation
    assert all(isinstance(x, Finding) and x.check == CHECK for x in findings)
    titles = " ".join(x.title for x in findings)
    assert "Accuracy drops" in titles and "Tree leaves" in titles  # structural findings


def test_shadow_attack_matches_or_beats_loss_attack_at_low_fpr(rf_findings):
    attacks = main_finding(rf_findings[1]).metrics["attacks"]
    loss, shadow = attacks["loss threshold"], attacks["shadow (LiRA offline)"]
    # measured (seed 0): loss AUC 0.77, TPR@1% 0.03; shadow AUC 0.90, TPR@1% 0.28
    assert shadow["tpr_at_1pct_fpr"] >= loss["tpr_at_1pct_fpr"]
    assert shadow["auc"] >= loss["auc"]


def test_overfit_model_leaks_more_than_a_regularised_one(rf_findings, split):
    """Q7: overfit > regularised."""
    Xtr, Xte, ytr, yte = split
    lr = LogisticRegression(C=1e-3).fit(Xtr, ytr)
    reg = main_finding(run_check(CHECK, model=lr, X=Xtr, y=ytr, X_test=Xte, y_test=yte))
    over = main_finding(rf_findings[1])
    assert reg.metrics["auc"] < over.metrics["auc"] - 0.1
    assert reg.severity <= Severity.LOW


def test_exchangeable_members_and_nonmembers_give_chance(split):
    """Clean-data test: 'members' and 'non-members' both come from rows the model never saw."""
    Xtr, Xte, ytr, yte = split
    rf = RandomForestClassifier(100, random_state=0).fit(Xtr, ytr)
    f = main_finding(run_check(CHECK, model=rf, X=Xte[:600], y=yte[:600], X_test=Xte[600:], y_test=yte[600:],
                               n_shadow=4))
    lo, hi = f.metrics["auc_ci"]
    assert lo <= 0.5 <= hi and abs(f.metrics["auc"] - 0.5) < 0.05
    assert f.severity <= Severity.LOW


def test_random_labels_memorised_by_a_forest_but_not_by_a_model_that_cannot_learn_them():
    """Q7's random-label case. A model that cannot learn from the rows (class prior only) gives AUC ≈ 0.5
    within its interval. A forest that memorises random labels is the clearest membership leak of all.
    (Even a heavily regularised logistic regression leaks a little here: its weights are a sum over the
    training rows, so with 10 noise features its member AUC interval sits just above 0.5.)"""
    from sklearn.dummy import DummyClassifier

    rng = np.random.default_rng(3)
    X = rng.normal(size=(1200, 10))
    y = rng.integers(0, 2, 1200)
    Xtr, Xte, ytr, yte = X[:600], X[600:], y[:600], y[600:]
    prior = DummyClassifier(strategy="prior").fit(Xtr, ytr)
    f = main_finding(run_check(CHECK, model=prior, X=Xtr, y=ytr, X_test=Xte, y_test=yte, n_shadow=4))
    lo, hi = f.metrics["auc_ci"]
    assert lo <= 0.5 <= hi and f.severity <= Severity.LOW
    rf = RandomForestClassifier(50, random_state=0).fit(Xtr, ytr)
    g = main_finding(run_check(CHECK, model=rf, X=Xtr, y=ytr, X_test=Xte, y_test=yte, attacks=("loss",)))
    assert g.metrics["auc"] > 0.8 and g.severity == Severity.HIGH


def test_pandas_inputs_and_decision_function_models():
    pd = pytest.importorskip("pandas")
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.4, random_state=0)
    svc = LinearSVC(C=1.0, max_iter=5000).fit((Xtr - Xtr.mean()) / Xtr.std(), ytr)
    Ztr, Zte = (Xtr - Xtr.mean()) / Xtr.std(), (Xte - Xtr.mean()) / Xtr.std()
    with unchanged(Ztr, ytr, Zte, yte, svc), rng_unchanged():
        findings = run_check(CHECK, model=svc, X=Ztr, y=ytr, X_test=Zte, y_test=yte, n_shadow=2)
    f = main_finding(findings)
    assert isinstance(Ztr, pd.DataFrame)
    assert "decision-function margin" in f.summary and STABLE <= set(f.metrics)
    assert f.metrics["attacks"]["shadow (LiRA offline)"]["shadow_models"] == 2


class PredictOnly:
    """A model that only offers predict (B32)."""

    def __init__(self, inner):
        self.inner = inner

    def predict(self, X):
        return self.inner.predict(X)


def test_predict_only_model_gets_a_weak_attack_note(split):
    Xtr, Xte, ytr, yte = split
    tree = DecisionTreeClassifier(random_state=0).fit(Xtr, ytr)
    findings = run_check(CHECK, model=PredictOnly(tree), X=Xtr, y=ytr, X_test=Xte, y_test=yte)
    f = main_finding(findings)
    assert "weak" in f.summary and list(f.metrics["attacks"]) == ["loss threshold"]
    assert f.metrics["auc"] > 0.55  # right/wrong alone still separates a fully grown tree's rows


def test_structural_checks_flag_single_row_leaves_and_one_neighbour(split):
    Xtr, Xte, ytr, yte = split
    tree = DecisionTreeClassifier(random_state=0).fit(Xtr, ytr)
    found = run_check(CHECK, model=tree, X=Xtr, y=ytr, X_test=Xte, y_test=yte, framework="sklearn",
                      attacks=("loss",))
    leaf = [f for f in found if f.title.startswith("Tree leaves")]
    assert leaf and leaf[0].metrics["min_leaf_samples"] == 1 and leaf[0].severity >= Severity.MEDIUM
    assert "min_samples_leaf" in leaf[0].recommendation
    pruned = DecisionTreeClassifier(min_samples_leaf=20, random_state=0).fit(Xtr, ytr)
    found = run_check(CHECK, model=pruned, X=Xtr, y=ytr, X_test=Xte, y_test=yte, framework="sklearn",
                      attacks=("loss",))
    assert not [f for f in found if f.title.startswith("Tree leaves")]

    knn1 = KNeighborsClassifier(n_neighbors=1).fit(Xtr, ytr)
    found = run_check(CHECK, model=knn1, X=Xtr, y=ytr, X_test=Xte, y_test=yte, framework="sklearn",
                      attacks=("loss",))
    knn = [f for f in found if f.title.startswith("k-nearest")]
    assert knn and knn[0].metrics["n_neighbors"] == 1 and knn[0].severity == Severity.MEDIUM
    knn15 = KNeighborsClassifier(n_neighbors=15).fit(Xtr, ytr)
    found = run_check(CHECK, model=knn15, X=Xtr, y=ytr, X_test=Xte, y_test=yte, framework="sklearn",
                      attacks=("loss",))
    assert not [f for f in found if f.title.startswith("k-nearest")]


# ------------------------------------------------------------------------------------------------
# torch
# ------------------------------------------------------------------------------------------------
def _param_hash(net) -> str:
    h = hashlib.sha256()
    for name, p in net.state_dict().items():
        h.update(name.encode())
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


@pytest.fixture
def one_torch_thread():
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # after scikit-learn's OpenMP pools, torch's own pool can spin for seconds on 2 cores
    yield torch
    torch.set_num_threads(threads)


def test_torch_classifier_loss_attack_leaves_model_and_rng_alone(one_torch_thread):
    torch = one_torch_thread
    gen = torch.Generator().manual_seed(0)
    X, y = make_classification(n_samples=600, n_features=20, n_informative=8, flip_y=0.1, random_state=1)
    Xt = torch.tensor(X, dtype=torch.float32)
    yt = torch.tensor(y)
    Xtr, Xte, ytr, yte = Xt[:300], Xt[300:], yt[:300], yt[300:]
    net = torch.nn.Sequential(torch.nn.Linear(20, 128), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                              torch.nn.Linear(128, 2))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(100):  # full batch, enough to overfit 300 noisy rows
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(Xtr), ytr)
        loss.backward()
        opt.step()
    net.train()
    before = (_param_hash(net), net.training, [m.training for m in net.modules()])
    with unchanged(Xtr, ytr, Xte, yte), rng_unchanged():
        findings = run_check(CHECK, model=net, framework="torch", X=Xtr, y=ytr, X_test=Xte, y_test=yte)
    assert (_param_hash(net), net.training, [m.training for m in net.modules()]) == before
    assert not net._forward_hooks and not net._forward_pre_hooks
    f = main_finding(findings)
    assert list(f.metrics["attacks"]) == ["loss threshold"]
    assert "torch" in f.summary and f.metrics["auc"] > 0.6 and STABLE <= set(f.metrics)
    skipped = [x for x in findings if x.title.startswith("Shadow-model attack skipped")]
    assert skipped and skipped[0].severity == Severity.INFO


# ------------------------------------------------------------------------------------------------
# budget, cancellation, determinism, the card
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slow_forest(split):
    Xtr, _, ytr, _ = split
    return RandomForestClassifier(300, random_state=0).fit(Xtr, ytr)


def test_a_small_time_budget_stops_shadows_early_and_says_so(split, slow_forest):
    Xtr, Xte, ytr, yte = split
    rf = slow_forest
    budget = Budget(seconds=3.0)
    t0 = time.monotonic()
    findings = run_check(CHECK, model=rf, X=Xtr, y=ytr, X_test=Xte, y_test=yte, n_shadow=40, budget=budget)
    assert time.monotonic() - t0 < 30  # a sanity bound only: timing is not tested (DESIGN.md)
    f = main_finding(findings)
    notes = " ".join(f.metrics.get("notes", []))
    assert "of 40 shadow models" in notes and "time budget" in notes
    shadow = f.metrics["attacks"].get("shadow (LiRA offline)")
    assert shadow is None or M.MIN_SHADOWS <= shadow["shadow_models"] < 40
    assert "loss threshold" in f.metrics["attacks"]


def test_cancellation_stops_the_shadow_models(split, slow_forest):
    Xtr, Xte, ytr, yte = split
    rf = slow_forest
    budget = Budget(seconds=120)
    timer = threading.Timer(0.5, budget.cancel_event.set)
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(CheckCancelled):
            run_check(CHECK, model=rf, X=Xtr, y=ytr, X_test=Xte, y_test=yte, n_shadow=64, budget=budget)
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 10


def test_same_seed_same_result_regardless_of_global_rng(split):
    Xtr, Xte, ytr, yte = split
    lr = LogisticRegression(C=1.0, max_iter=500).fit(Xtr, ytr)
    np.random.seed(1)
    a = main_finding(run_check(CHECK, model=lr, X=Xtr, y=ytr, X_test=Xte, y_test=yte, n_shadow=4))
    np.random.seed(2)
    b = main_finding(run_check(CHECK, model=lr, X=Xtr, y=ytr, X_test=Xte, y_test=yte, n_shadow=4))
    def strip(m):
        return {k: ({n: {kk: vv for kk, vv in r.items() if kk != "seconds"} for n, r in v.items()}
                    if k == "attacks" else v) for k, v in m.items()}

    assert strip(a.metrics) == strip(b.metrics)


def test_missing_labels_and_tiny_inputs_are_skipped_with_a_reason(split):
    Xtr, Xte, ytr, yte = split
    lr = LogisticRegression().fit(Xtr, ytr)
    (f,) = run_check(CHECK, model=lr, X=Xtr, X_test=Xte)
    assert f.severity == Severity.INFO and "Labels" in f.summary and STABLE <= set(f.metrics)
    (g,) = run_check(CHECK, model=lr, X=Xtr[:5], y=ytr[:5], X_test=Xte[:5], y_test=yte[:5])
    assert "Needs ≥20" in g.summary
    (h,) = run_check(CHECK, model=lr, X=Xtr, y=ytr[:10], X_test=Xte, y_test=yte)
    assert "length mismatch" in h.summary
    (k,) = run_check(CHECK, model=lr, X=Xtr, y=np.ones(len(Xtr)), X_test=Xte, y_test=np.ones(len(Xte)))
    assert "only one class" in k.summary
    from sklearn.linear_model import Ridge

    (r,) = run_check(CHECK, model=Ridge().fit(Xtr, ytr), X=Xtr, y=ytr, X_test=Xte, y_test=yte)
    assert "regressor" in r.summary


def test_card_renders_the_membership_findings(rf_findings):
    from mlsec_jupyter.findings import CARD_MIME

    card = RiskCard("rf")
    card.add(rf_findings[1])
    bundle = card._repr_mimebundle_()
    data = bundle[CARD_MIME]
    main = next(f for f in data["findings"] if "attacks" in f["metrics"])
    assert len(main["metrics"]["roc_fpr"]) <= 200
    assert "Membership" in bundle["text/html"] or "membership" in bundle["text/html"]
    assert "privacy.membership" in bundle["text/plain"]


def test_shadow_pool_with_members_scores_every_row_against_its_out_shadows(split):
    Xtr, Xte, ytr, yte = split
    rf = RandomForestClassifier(30, random_state=0).fit(Xtr, ytr)
    f = main_finding(run_check(CHECK, model=rf, X=Xtr, y=ytr, X_test=Xte, y_test=yte, n_shadow=4,
                               shadow_pool="all", budget=Budget(seconds=120)))
    shadow = f.metrics["attacks"]["shadow (LiRA offline)"]
    assert shadow["shadow_models"] == 4 and shadow["n_members"] == shadow["n_nonmembers"] == 1200
    assert shadow["auc"] > f.metrics["attacks"]["loss threshold"]["auc"] > 0.6
    with pytest.raises(ValueError, match="shadow_pool"):
        run_check(CHECK, model=rf, X=Xtr, y=ytr, X_test=Xte, y_test=yte, shadow_pool="train")


# -- comparison with a DP accountant ---------------------------------------------------------------
def test_a_leaky_model_claimed_to_be_dp_is_a_critical_contradiction(split):
    Xtr, Xte, ytr, yte = split
    rf = RandomForestClassifier(50, random_state=0).fit(Xtr, ytr)
    findings = mj.run_check(CHECK, model=rf, X=Xtr, y=ytr, X_test=Xte, y_test=yte, attacks=("loss",),
                            accounted_epsilon=0.05)
    (dp,) = [f for f in findings if "accounted_epsilon" in f.metrics]
    assert dp.severity is Severity.CRITICAL and dp.metrics["epsilon_lower_bound"] > 0.05
    findings = mj.run_check(CHECK, model=rf, X=Xtr, y=ytr, X_test=Xte, y_test=yte, attacks=("loss",),
                            accounted_epsilon=50.0)
    (dp,) = [f for f in findings if "accounted_epsilon" in f.metrics]
    assert dp.severity is Severity.INFO


def test_exchangeable_rows_never_contradict_a_small_accounted_epsilon(split):
    """No false alarm: members and non-members from the same held-out pool leak nothing, so even
    ε = 0.1 must not be contradicted (the threshold is chosen on one half, checked on the other)."""
    from sklearn.linear_model import LogisticRegression

    Xtr, Xte, ytr, yte = split
    model = LogisticRegression(max_iter=1000).fit(Xtr, ytr)
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(Xte))
        a, b = order[: len(order) // 2], order[len(order) // 2:]
        findings = mj.run_check(CHECK, model=model, X=Xte[a], y=yte[a], X_test=Xte[b], y_test=yte[b],
                                attacks=("loss",), accounted_epsilon=0.1)
        (dp,) = [f for f in findings if "accounted_epsilon" in f.metrics]
        assert dp.severity is Severity.INFO, dp.summary


def test_the_held_out_bound_is_a_bound_on_the_truth():
    from mlsec_jupyter.checks.privacy.membership import held_out_epsilon_bound

    rng = np.random.default_rng(0)
    # scores of an ε-DP-like attack: members N(μ, 1), non-members N(0, 1) with μ = 1 (1-GDP); its
    # (ε, δ=1e-5) is 4.38 (reference-values.md §1 row 18), so a valid lower bound stays below that
    bounds = [held_out_epsilon_bound(rng.normal(1.0, 1.0, 5000), rng.normal(0.0, 1.0, 5000), rng, 1e-5)
              for _ in range(5)]
    assert all(0.0 < b < 4.377178 for b in bounds)


def test_accounted_epsilon_must_be_a_number(split):
    Xtr, Xte, ytr, yte = split
    rf = RandomForestClassifier(5, random_state=0).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="accounted_epsilon must be a finite"):
        mj.run_check(CHECK, model=rf, X=Xtr, y=ytr, X_test=Xte, y_test=yte, accounted_epsilon=float("nan"))
