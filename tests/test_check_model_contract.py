"""A contract every registered model check keeps (the model-side twin of test_check_contract.py).

New model checks are picked up automatically: on a scikit-learn pipeline, a random forest and a torch
MLP they must leave the model, the data and the global RNGs unchanged (R9, R10), return at least one
finding with the stable metrics of DESIGN.md, and render into a card whose HTML runs nothing.
"""

from __future__ import annotations

import html5lib
import numpy as np
import pytest
import torch
from guards import rng_unchanged, unchanged
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlsec_jupyter.checks.budget import Budget
from mlsec_jupyter.checks.registry import all_checks
from mlsec_jupyter.findings import RiskCard
from mlsec_jupyter.render import card_bundle

MODEL_CHECKS = [s for s in all_checks() if s.applies_to == "model"]
STABLE_METRICS = {
    "privacy.membership": {"auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr", "advantage", "epsilon_lower_bound"},
    "robustness.evasion": {"attack", "eps", "robust_accuracy", "clean_accuracy"},
    "robustness.noise": {"sigma", "accuracy"},
    "model.extraction": {"queries", "fidelity"},
    "model.inversion": {"similarity"},
}


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    return train_test_split(X[:900], y[:900], test_size=0.3, random_state=0, stratify=y[:900])


def _torch_mlp(Xtr, ytr):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
        opt = torch.optim.Adam(net.parameters(), 1e-2)
        for _ in range(100):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(torch.tensor(Xtr)), torch.tensor(ytr)).backward()
            opt.step()
    return net


@pytest.fixture(scope="module")
def models(data):
    Xtr, _, ytr, _ = data
    return {
        "pipeline": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(Xtr, ytr),
        "forest": RandomForestClassifier(n_estimators=20, random_state=0).fit(Xtr, ytr),
        "torch": _torch_mlp(Xtr, ytr),
    }


def test_every_model_check_is_covered_by_this_contract():
    assert {s.id for s in MODEL_CHECKS} == set(STABLE_METRICS)


@pytest.mark.parametrize("kind", ["pipeline", "forest", "torch"])
@pytest.mark.parametrize("spec", MODEL_CHECKS, ids=lambda s: s.id)
def test_model_check_keeps_everything_unchanged_and_reports_its_metrics(spec, kind, data, models):
    """R9, R10: the model (modes, grads, buffers, state_dict, hooks), its data and the global RNGs are
    unchanged, and the check reports its metrics."""
    Xtr, Xte, ytr, yte = data
    model = models[kind]
    inputs = {"model": model, "X": Xtr, "y": ytr, "X_test": Xte, "y_test": yte,
              "framework": "torch" if kind == "torch" else "sklearn"}
    with unchanged(model, Xtr, Xte, ytr, yte), rng_unchanged():
        findings = spec.func(**spec.accepted(inputs), budget=Budget(seconds=60))
    assert findings, f"{spec.id} returned no finding on the {kind} model"
    main = findings[0]
    if not main.metrics.get("skipped"):
        assert STABLE_METRICS[spec.id] <= set(main.metrics), (spec.id, kind, sorted(main.metrics))
    else:
        assert kind == "forest" and spec.id == "model.inversion", (spec.id, kind, main.summary)
    card = RiskCard(f"{kind} <script>alert(1)</script>")
    card.add(findings)
    tree = html5lib.parse(card_bundle(card)["text/html"], namespaceHTMLElements=False)
    assert not tree.findall(".//script") and not tree.findall(".//img") and not tree.findall(".//svg")
    if kind == "torch":
        assert model.training, "the user's module must keep its train mode"
