"""``robustness.evasion``: exact minimal perturbations of linear models (reference-values.md §4), PGD/FGSM
on a real torch MLP, the black-box attack, planted gradient masking, Q8, R9/R10, bad inputs, the card
and ``%mlsec probe``."""

from __future__ import annotations

import threading

import html5lib
import numpy as np
import pytest
import torch
from conftest import card_bundles, one_logit_model, run
from guards import rng_unchanged, unchanged
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlsec_jupyter.checks._models import ModelProbe, private_torch_copy
from mlsec_jupyter.checks.budget import Budget, CheckCancelled
from mlsec_jupyter.checks.registry import run_check
from mlsec_jupyter.checks.robustness import _attacks as A
from mlsec_jupyter.checks.robustness._common import linear_form
from mlsec_jupyter.findings import RiskCard, Severity
from mlsec_jupyter.render import card_bundle

CHECK = "robustness.evasion"
STABLE = {"attack", "eps", "robust_accuracy", "clean_accuracy"}


# ------------------------------------------------------------------------------------------------
# data and models
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    return train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)


def _mlp(digits, epochs: int = 40):
    Xtr, _, ytr, _ = digits
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        xt, yt = torch.tensor(Xtr), torch.tensor(ytr)
        for _ in range(epochs):
            perm = torch.randperm(len(xt))
            for i in range(0, len(xt), 64):
                b = perm[i:i + 64]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(xt[b]), yt[b]).backward()
                opt.step()
    return net


@pytest.fixture(scope="module")
def mlp(digits):
    return _mlp(digits)


def _evasion(model, data, **kw):
    Xtr, Xte, ytr, yte = data
    return run_check(CHECK, model=model, X=Xtr, y=ytr, X_test=Xte, y_test=yte, **kw)


# ------------------------------------------------------------------------------------------------
# exact values: reference-values.md §4 (Moosavi-Dezfooli et al. 2016, Eq. 3; Goodfellow et al. 2015 §3)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pipeline", [False, True])
def test_binary_linear_minimal_perturbation_is_exact(cancer, pipeline):
    Xtr, Xte, ytr, yte = cancer
    if pipeline:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(Xtr, ytr)
    else:
        model = LogisticRegression(max_iter=10000).fit(StandardScaler().fit(Xtr).transform(Xtr), ytr)
        Xte = StandardScaler().fit(Xtr).transform(Xte)
    W, b = linear_form(model, Xte[:20])
    f = model.decision_function(Xte)
    unit = np.ones(Xte.shape[1])
    cols = np.searchsorted(model.classes_, yte)
    right = model.predict(Xte) == yte
    d2, delta2 = A.linear_minimal_perturbation(W, b, Xte, cols, unit, "l2")
    dinf, deltainf = A.linear_minimal_perturbation(W, b, Xte, cols, unit, "linf")
    w = W[0]
    np.testing.assert_allclose(d2[right], np.abs(f[right]) / np.linalg.norm(w), rtol=1e-12)
    np.testing.assert_allclose(dinf[right], np.abs(f[right]) / np.abs(w).sum(), rtol=1e-12)
    assert np.all(d2[~right] == 0) and np.all(dinf[~right] == 0)
    for delta, dist, q in ((delta2, d2, 2), (deltainf, dinf, np.inf)):
        np.testing.assert_allclose(np.linalg.norm(delta[right], ord=q, axis=1), dist[right], rtol=1e-9)
        keeps = model.predict(Xte[right] + (1 - 1e-6) * delta[right])
        flips = model.predict(Xte[right] + (1 + 1e-6) * delta[right])
        assert np.array_equal(keeps, yte[right]), "a perturbation 1e-6 short of the minimum must keep the label"
        assert np.all(flips != yte[right]), "a perturbation 1e-6 past the minimum must flip the label"
    # FGSM with ε·sign(w) flips exactly when ε > d∞ (the minimal L∞ perturbation of a linear model)
    sign = np.where(f[right] > 0, -1.0, 1.0)[:, None] * np.sign(w)
    below = model.predict(Xte[right] + (dinf[right] * (1 - 1e-6))[:, None] * sign)
    above = model.predict(Xte[right] + (dinf[right] * (1 + 1e-6))[:, None] * sign)
    assert np.array_equal(below, yte[right]) and np.all(above != yte[right])


def test_multiclass_linear_minimal_perturbation_is_exact(digits):
    Xtr, Xte, ytr, yte = (a.astype(np.float64) if a.dtype.kind == "f" else a for a in digits)
    model = LogisticRegression(max_iter=5000).fit(Xtr, ytr)
    W, b = linear_form(model, Xte[:20])
    right = model.predict(Xte) == yte
    for norm in ("l2", "linf"):
        dist, delta = A.linear_minimal_perturbation(W, b, Xte, yte, np.ones(64), norm)
        assert np.array_equal(model.predict(Xte[right] + (1 - 1e-6) * delta[right]), yte[right])
        assert np.all(model.predict(Xte[right] + (1 + 1e-6) * delta[right]) != yte[right])
        assert np.all(dist[right] > 0)


def test_exact_attack_gives_the_exact_robust_accuracy_curve(cancer):
    Xtr, Xte, ytr, yte = cancer
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(Xtr, ytr)
    (f,) = _evasion(model, cancer, eps=[0.1, 0.3, 1.0], scale="data")
    m = f.metrics
    assert m["attack"] == "exact" and STABLE <= set(m)
    W, b = linear_form(model, Xte[:20])
    dist, _ = A.linear_minimal_perturbation(W, b, Xte, np.searchsorted(model.classes_, yte), np.ones(30), "linf")
    expected = [float(np.mean((model.predict(Xte) == yte) & (dist > e))) for e in (0.1, 0.3, 1.0)]
    assert m["robust_accuracy"] == pytest.approx(expected, abs=1e-4)
    assert m["clean_accuracy"] == pytest.approx(float(np.mean(model.predict(Xte) == yte)), abs=1e-4)
    assert m["eps_unit"] == "data units"


def test_tabular_features_of_different_scales_get_per_feature_units(cancer):
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(cancer[0], cancer[2])
    (f,) = _evasion(model, cancer)
    assert f.metrics["eps_unit"] == "feature standard deviations"
    assert 0 < f.metrics["eps"][0] < f.metrics["eps"][-1] < 5  # a few standard deviations at most, not 8/255
    assert "standard deviations of each feature" in f.summary
    assert f.metrics["robust_accuracy"] == sorted(f.metrics["robust_accuracy"], reverse=True)


# ------------------------------------------------------------------------------------------------
# torch white box
# ------------------------------------------------------------------------------------------------
def test_pgd_on_a_torch_mlp_finds_it_fragile_and_matches_the_known_curve(mlp, digits):
    with unchanged(mlp, *digits), rng_unchanged():
        findings = _evasion(mlp, digits)
    (f,) = findings  # no gradient-masking finding on a plain MLP
    m = f.metrics
    assert STABLE <= set(m) and m["attack"] == "pgd" and m["norm"] == "linf"
    assert m["clean_accuracy"] >= 0.95
    assert len(m["eps"]) == 5 and m["eps"] == sorted(m["eps"])
    assert 0.02 < m["eps"][0] < 0.06 and 0.2 < m["eps"][-1] < 0.5  # from the data: digits in [0, 1]
    acc = m["robust_accuracy"]
    assert all(a >= b for a, b in zip(acc, acc[1:])) and acc[0] < m["clean_accuracy"] and acc[-1] <= 0.02
    assert all(p <= g + 1e-9 for p, g in zip(acc, m["fgsm_robust_accuracy"]))  # PGD at least as strong
    assert m["masking_flags"] == []
    assert f.severity >= Severity.MEDIUM and "Small perturbations fool the model" in f.title
    assert m["data_range"] == [0.0, 1.0]


def _textbook_pgd(net, x, y, eps, steps=10, restarts=3):
    """PGD as Madry et al. write it (random start, signed steps of ε/4, projection, clamp to [0, 1]), final
    iterate, best of a few restarts: an independent yardstick for ours."""
    fooled = torch.zeros(len(x), dtype=torch.bool)
    gen = torch.Generator().manual_seed(1)
    for _ in range(restarts):
        adv = (x + (torch.rand(x.shape, generator=gen) * 2 - 1) * eps).clamp(0, 1)
        for _ in range(steps):
            adv.requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(net(adv), y)
            (g,) = torch.autograd.grad(loss, adv)
            adv = torch.min(torch.max(adv.detach() + eps / 4 * g.sign(), x - eps), x + eps).clamp(0, 1)
        with torch.no_grad():
            fooled |= net(adv).argmax(1) != y
    return 1.0 - fooled.float().mean().item()


def test_pgd_matches_a_textbook_pgd_on_the_same_model(mlp, digits):
    (f,) = _evasion(mlp, digits, eps=[0.05, 0.1, 0.2], attack="pgd")
    x, y = torch.tensor(digits[1]), torch.tensor(digits[3])
    twin = private_torch_copy(mlp)
    reference = [_textbook_pgd(twin, x, y, e) for e in (0.05, 0.1, 0.2)]
    for ours, ref in zip(f.metrics["robust_accuracy"], reference):
        assert abs(ours - ref) <= 0.03, (f.metrics["robust_accuracy"], reference)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_adversarial_rows_stay_inside_eps_and_the_data_range(mlp, digits, norm):
    """Q8, for both the data's units and per-feature units."""
    Xte, yte = digits[1].astype(np.float64), digits[3]
    twin = private_torch_copy(mlp)
    for unit, lower, upper in ((np.ones(64), np.zeros(64), np.ones(64)),
                               (np.linspace(0.1, 2.0, 64), np.full(64, -0.05), np.full(64, 0.9))):
        for fgsm in (True, False):
            eps = 0.3 if norm == "linf" else 1.5
            r = A.torch_attack(twin, (64,), Xte, yte, eps, norm=norm, unit=unit, lower=lower, upper=upper,
                               steps=1 if fgsm else 10, step_size=eps if fgsm else None, random_start=not fgsm)
            t = (r.adv - Xte) / unit
            size = np.abs(t).max(axis=1) if norm == "linf" else np.linalg.norm(t, axis=1)
            assert size.max() <= eps * (1 + 1e-5)
            lo, hi = np.minimum(lower, Xte), np.maximum(upper, Xte)
            assert np.all(r.adv >= lo - 1e-6) and np.all(r.adv <= hi + 1e-6)
            fooled_now = ModelProbe(mlp, (64,)).predict(r.adv) != yte
            assert np.array_equal(fooled_now[r.fooled], np.ones(r.fooled.sum(), bool))


def test_the_users_module_keeps_mode_grads_hooks_and_rng(digits):
    net = _mlp(digits, epochs=3)
    net.train()
    calls = []
    net[0].register_forward_hook(lambda *a: calls.append(1))
    net(torch.tensor(digits[0][:8])).sum().backward()  # the user has gradients lying around
    with unchanged(net, *digits), rng_unchanged():
        findings = _evasion(net, digits, attack="pgd", norm="l2")
    assert net.training and all(m.training for m in net.modules())
    assert calls == [1], "the user's forward hook must never run from the check"
    assert net[0].weight.grad is not None and all(p.requires_grad for p in net.parameters())
    assert findings[0].metrics["norm"] == "l2"


# ------------------------------------------------------------------------------------------------
# gradient masking (Athalye et al. 2018; Carlini et al. 2019)
# ------------------------------------------------------------------------------------------------
class _Quantised(torch.nn.Module):
    """Rounds its input to 3 levels first: gradients are zero everywhere (a classic masking defence)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(torch.round(x * 2) / 2)


class _Saturated(torch.nn.Module):
    """Logits ×10⁴: softmax saturates in float32 and the loss gradient vanishes on confident rows."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x) * 1e4


class _Noisy(torch.nn.Module):
    """Dropout that stays on in eval mode: a randomised model."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(torch.nn.functional.dropout(x, 0.3, training=True))


def test_zero_gradients_from_a_quantising_front_end_are_flagged(mlp, digits):
    findings = _evasion(_Quantised(mlp), digits)
    flags = findings[0].metrics["masking_flags"]
    assert any("zero or vanishing" in f for f in flags), flags
    masking = [f for f in findings if "gradient masking" in f.title]
    assert len(masking) == 1 and masking[0].severity == Severity.MEDIUM
    assert "blackbox" in masking[0].recommendation


def test_saturated_softmax_is_flagged(mlp, digits):
    flags = _evasion(_Saturated(mlp), digits)[0].metrics["masking_flags"]
    assert any("zero or vanishing" in f for f in flags), flags


def test_a_randomised_model_gets_no_robustness_verdict(mlp, digits):
    """B35: labels that change between two predictions of the same rows mean the model is random, and an
    accuracy under attack would measure that randomness: no verdict, and the card says why."""
    (finding,) = _evasion(_Noisy(mlp), digits)
    assert finding.metrics.get("skipped") and finding.severity == Severity.LOW
    assert "not deterministic" in finding.summary and "robustness verdict" in finding.summary


# ------------------------------------------------------------------------------------------------
# black box
# ------------------------------------------------------------------------------------------------
def test_blackbox_attack_on_a_random_forest(cancer):
    Xtr, Xte, ytr, yte = cancer
    forest = RandomForestClassifier(n_estimators=50, random_state=0).fit(Xtr, ytr)
    with unchanged(forest, *cancer), rng_unchanged():
        (f,) = _evasion(forest, cancer)
    m = f.metrics
    assert m["attack"] == "blackbox" and STABLE <= set(m) and "masking_flags" not in m
    acc = m["robust_accuracy"]
    assert all(a >= b for a, b in zip(acc, acc[1:])) and acc[-1] < m["clean_accuracy"] - 0.2
    assert m["queries_per_row"] > 100 and "upper bound" in f.summary


def test_blackbox_distances_are_real_adversarial_examples(cancer):
    Xtr, Xte, ytr, yte = cancer
    forest = RandomForestClassifier(n_estimators=30, random_state=0).fit(Xtr, ytr)
    unit = Xtr.std(axis=0)
    for norm in ("l2", "linf"):
        r = A.hop_skip_jump(forest.predict, Xte[:30], yte[:30], Xtr, norm=norm, unit=unit, lower=Xtr.min(0),
                            upper=Xtr.max(0), rng=np.random.default_rng(0), iterations=6)
        found = np.isfinite(r.distance) & (r.distance > 0)
        assert found.sum() >= 20
        assert np.all(forest.predict(r.adv[found]) != yte[:30][found])
        t = (r.adv[found] - Xte[:30][found]) / unit
        size = np.abs(t).max(axis=1) if norm == "linf" else np.linalg.norm(t, axis=1)
        np.testing.assert_allclose(size, r.distance[found], rtol=1e-9)


def test_blackbox_is_close_to_pgd_on_the_mlp(mlp, digits):
    pgd = _evasion(mlp, digits, eps=[0.1, 0.2])[0].metrics["robust_accuracy"]
    bb = _evasion(mlp, digits, eps=[0.1, 0.2], attack="blackbox")[0].metrics["robust_accuracy"]
    assert all(b >= p - 0.1 for b, p in zip(bb, pgd))  # an upper bound, up to sampling of 100 rows
    assert bb[-1] <= 0.2  # but a real attack: it breaks the model at ε 0.2


# ------------------------------------------------------------------------------------------------
# inputs, errors, budget
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, message", [
    ({"attack": "cw"}, "attack must be one of"),
    ({"norm": "l3"}, "norm must be"),
    ({"eps": [-0.1]}, "eps must be positive"),
    ({"eps": "big"}, "eps must be"),
    ({"steps": 0}, "steps must be at least 1"),
    ({"attack": "pgd"}, "needs the model's gradients"),
    ({"attack": "exact"}, "needs a scikit-learn linear classifier"),
])
def test_bad_parameters_say_what_to_do(cancer, kw, message):
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(cancer[0], cancer[2])
    with pytest.raises(ValueError, match=message):
        _evasion(forest, cancer, **kw)


def test_inputs_that_cannot_be_probed_give_a_clear_line(cancer):
    Xtr, Xte, ytr, yte = cancer
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(Xtr, ytr)
    (f,) = run_check(CHECK, model=lr, X=Xtr)
    assert f.metrics["skipped"] and "needs y" in f.summary
    (f,) = run_check(CHECK, model=LinearRegression().fit(Xtr, ytr), X=Xtr, y=ytr)
    assert "regressor" in f.summary
    (f,) = run_check(CHECK, model=lr, X=np.array([["a", "b"]] * 10), y=np.zeros(10))
    assert f.metrics["skipped"] and "numbers" in f.summary
    (f,) = run_check(CHECK, model=lr, X=Xtr, y=ytr[:-3])
    assert f.severity == Severity.LOW and "labels" in f.summary
    Xnan = Xte.copy()
    Xnan[:5, 0] = np.nan
    (f,) = run_check(CHECK, model=lr, X=Xtr, y=ytr, X_test=Xnan, y_test=yte)
    assert "left out 5 rows" in f.summary


def test_cancel_stops_the_attack(mlp, digits):
    budget = Budget()
    budget.cancel_event.set()
    with pytest.raises(CheckCancelled):
        _evasion(mlp, digits, budget=budget)


def test_a_sweep_past_its_share_of_the_budget_stops_and_keeps_what_it_measured(mlp, digits):
    budget = Budget(seconds=100.0)
    budget.started -= 95.0  # 95 s already spent: past the sweep's share, 5 s left for one ε and the rest
    (f, *_) = _evasion(mlp, digits, budget=budget)
    assert len(f.metrics["eps"]) == 1 and len(f.metrics["robust_accuracy"]) == 1
    assert "stopped after 1 of 5 ε values" in f.summary
    assert f.metrics["small_eps"] == f.metrics["eps"][0]  # the verdict is read where it was measured


def test_the_verdict_never_reads_beyond_the_eps_tried(cancer):
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(cancer[0], cancer[2])
    (tiny,) = _evasion(model, cancer, eps=[0.001])
    (auto,) = _evasion(model, cancer)
    assert tiny.metrics["small_eps"] == 0.001 and "at ε 0.001" in tiny.title
    assert auto.metrics["small_eps"] > 0.05


def test_a_torch_model_with_one_output_logit_is_read_as_binary():
    X, y, net = one_logit_model(400)
    (f, *_) = run_check(CHECK, model=net, X=X, y=y)
    assert f.metrics["clean_accuracy"] == 1.0
    assert f.metrics["robust_accuracy"][-1] < 1.0  # the attack moves x0 across 0


def test_a_dataframe_with_integer_column_names_is_probed(cancer):
    import pandas as pd

    Xtr, Xte, ytr, yte = (pd.DataFrame(a) if a.ndim == 2 else a for a in cancer)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(Xtr, ytr)
    (f,) = _evasion(model, (Xtr, Xte, ytr, yte))
    assert f.metrics["attack"] == "exact" and f.metrics["clean_accuracy"] > 0.9


def test_progress_is_reported_while_the_sweep_runs(mlp, digits):
    seen = []
    budget = Budget(on_progress=lambda fraction, text: seen.append((fraction, text)))
    _evasion(mlp, digits, budget=budget)
    fractions = [s[0] for s in seen]
    assert fractions == sorted(fractions) and len(seen) >= 5
    assert any("PGD at ε" in text for _, text in seen)


# ------------------------------------------------------------------------------------------------
# the card and the magic
# ------------------------------------------------------------------------------------------------
def test_card_draws_the_robust_accuracy_curve(mlp, digits):
    card = RiskCard("net <b>x</b>")
    card.add(_evasion(mlp, digits))
    page = card_bundle(card)["text/html"]
    assert "mlsec-plot" in page and "robust accuracy" in page and "<b>x</b>" not in page
    tree = html5lib.parse(page, namespaceHTMLElements=False)
    assert not tree.findall(".//script") and not tree.findall(".//svg")


def test_probe_magic_runs_the_full_sweep_on_what_the_model_was_fitted_on(ip):
    run(ip, "from sklearn.datasets import load_breast_cancer\n"
            "from sklearn.model_selection import train_test_split\n"
            "from sklearn.ensemble import RandomForestClassifier\n"
            "X, y = load_breast_cancer(return_X_y=True)\n"
            "X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)")
    run(ip, "clf = RandomForestClassifier(n_estimators=20, random_state=0).fit(X_train, y_train)")
    result, outputs, _, _ = run(ip, "%mlsec probe clf --norm l2 --rows 60")
    assert result.error_in_exec is None
    (card,) = card_bundles(outputs)  # the test shell is not a live front end: the card comes complete
    assert card["subject"] == "clf: full evasion sweep"
    assert [c["check"] for c in card["checks"]] == [CHECK] and card["status"] == "done"
    (f,) = [f for f in card["findings"] if f["check"] == CHECK]
    assert f["metrics"]["norm"] == "l2" and f["metrics"]["n_rows"] == 60 and len(f["metrics"]["eps"]) == 8
    assert f["metrics"]["rows"] == "held-out" and f["metrics"]["attack"] == "blackbox"


@pytest.mark.parametrize("line, message", [
    ("probe nothing_here", "could not evaluate"),
    ("probe X", "expected a fitted"),
    ("probe lr --attack pgd", "needs gradients"),
    ("probe lr --eps 0,x", "--eps must be positive numbers"),
    ("probe lr --rows 0", "--rows must be positive"),
    ("probe lr", "has not seen lr fitted"),
    ("probe lr X", "give the rows to attack as X Y"),
])
def test_probe_magic_errors_say_what_to_do(ip, line, message):
    from IPython.core.error import UsageError

    ip.run_line_magic("mlsec", "off")  # fitted while not watching: the session does not know its data
    run(ip, "import numpy as np\nfrom sklearn.linear_model import LogisticRegression\n"
            "X = np.random.default_rng(0).normal(size=(40, 3)); y = (X[:, 0] > 0).astype(int)\n"
            "lr = LogisticRegression().fit(X, y)")
    ip.run_line_magic("mlsec", "on")
    with pytest.raises(UsageError, match=message):
        ip.run_line_magic("mlsec", line)


def test_image_shaped_inputs_go_through_a_cnn():
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (200, 3, 16, 16)).astype(np.float32)
    y = (X[:, 0].mean(axis=(1, 2)) > X[:, 1].mean(axis=(1, 2))).astype(np.int64)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                  torch.nn.Linear(8 * 14 * 14, 2))
        opt = torch.optim.Adam(net.parameters(), 1e-2)
        for _ in range(60):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(torch.tensor(X)), torch.tensor(y)).backward()
            opt.step()
    with unchanged(net, X, y):
        (f, *_) = run_check(CHECK, model=net, X=X[:150], y=y[:150], X_test=X[150:], y_test=y[150:])
    m = f.metrics
    assert m["attack"] == "pgd" and m["eps_unit"] == "data units" and m["clean_accuracy"] >= 0.9
    assert 0.0 <= m["data_range"][0] < 0.01 and 0.99 < m["data_range"][1] <= 1.0
    assert m["robust_accuracy"][-1] < m["clean_accuracy"]
