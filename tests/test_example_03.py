"""example-notebooks/03-private-training.ipynb, executed in a real kernel: the DP training's card shows
the ε that mlsec_jupyter.privacy.epsilon gives for the same σ, sampling rate and steps; the budget and
the ledger are shown and composed over two trainings; the membership audit measures leakage in the
ordinary network and none in the DP one."""

from __future__ import annotations

import math
import re

import pytest
from conftest import cards_in, cell_with

import mlsec_jupyter as mj

pytestmark = pytest.mark.kernel

NAME = "03-private-training.ipynb"
# What the notebook trains with: 400 training rows in batches of 32 → Opacus samples each row with
# probability 1/13 (13 batches an epoch); 15 epochs; noise multiplier 1.5; budget ε = 5 at δ = 1e-5.
SIGMA, SAMPLE_RATE, STEPS, DELTA, BUDGET = 1.5, 1 / math.ceil(400 / 32), 15 * math.ceil(400 / 32), 1e-5, 5.0


@pytest.fixture(scope="module")
def nb(executed_notebook):
    return executed_notebook(NAME)


def findings(card: dict, check: str) -> list[dict]:
    return [f for f in card["findings"] if f["check"] == check]


def stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream"
                   and o.get("name") == "stdout")


def training_card(nb, text: str) -> dict:
    return cards_in(cell_with(nb, text))[-1]  # a pre-run budget warning, if any, comes first


def attack(card: dict) -> dict:
    """The membership audit's main finding (the one with the attack's AUC)."""
    (f,) = [f for f in findings(card, "privacy.membership") if f["metrics"].get("auc") is not None]
    return f


def dp_finding(card: dict) -> dict:
    (f,) = findings(card, "privacy.dp_budget")
    return f


def spent(text: str) -> tuple[float, int, float]:
    found = re.search(r"spent ε = ([\d.]+) over (\d+) DP training\(s\); remaining (\d+(?:\.\d+)?)", text)
    assert found, text
    return float(found.group(1)), int(found.group(2)), float(found.group(3))


def test_the_notebook_writes_nothing_beside_itself(executed_notebook_path):
    path = executed_notebook_path(NAME)
    assert sorted(p.name for p in path.parent.iterdir()) == [NAME]  # the ledger went to a scratch folder


def test_no_warning_floods_the_training_cells(nb):
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert not (out.get("output_type") == "stream" and out.get("name") == "stderr"), out.get("text", "")[:300]


def test_the_dp_card_shows_the_epsilon_of_those_steps(nb):
    f = dp_finding(training_card(nb, "for xb, yb in dp_loader:"))
    m = f["metrics"]
    assert (m["noise_multiplier"], m["sample_rate"], m["steps"], m["delta"]) == pytest.approx(
        (SIGMA, SAMPLE_RATE, STEPS, DELTA))
    expected = mj.privacy.epsilon(noise_multiplier=SIGMA, sample_rate=SAMPLE_RATE, steps=STEPS, delta=DELTA)
    assert math.isfinite(m["epsilon"]) and m["epsilon"] == pytest.approx(expected, rel=1e-4)  # measured 3.727
    assert m["run_epsilon"] == m["epsilon"]  # the first DP training on this data
    assert m["opacus_epsilon"] == pytest.approx(m["epsilon"], rel=0.05)  # Opacus' PRV accountant: 3.736
    assert m["budget_epsilon"] == BUDGET and m["gauge"]["limit"] == BUDGET
    assert f["severity"] == "info" and f["title"].startswith(f"Privacy budget: ε = {m['epsilon']:.3g} of 5 spent")
    assert m["curve_epsilon"][-1] == pytest.approx(m["epsilon"]) and m["curve_epsilon"] == sorted(m["curve_epsilon"])


def test_epsilon_by_hand_matches_the_card(nb):
    card_eps = dp_finding(training_card(nb, "for xb, yb in dp_loader:"))["metrics"]["epsilon"]
    text = stdout(cell_with(nb, "mj.privacy.epsilon(noise_multiplier=SIGMA"))
    steps, rate, eps = re.search(r"(\d+) steps, sampling rate ([\d.]+), noise multiplier 1.5: ε = ([\d.]+)",
                                 text).groups()
    assert int(steps) == STEPS and float(rate) == pytest.approx(SAMPLE_RATE, abs=1e-4)
    assert float(eps) == pytest.approx(card_eps, abs=5e-4)
    opacus = float(re.search(r"Opacus' own accountant: ε = ([\d.]+)", text).group(1))
    assert opacus == pytest.approx(card_eps, rel=0.05)


def test_the_budget_and_the_ledger_are_shown(nb):
    text = stdout(cell_with(nb, "%mlsec budget train_loader eps=5 delta=1e-5"))
    assert "privacy budget of train_loader" in text and "ε = 5 at δ = 1e-05" in text
    assert spent(text) == (0.0, 0, 5.0)
    first, second = (stdout(c) for c in nb.cells
                     if c.cell_type == "code" and c.source.strip() == "%mlsec budget train_loader")
    card_eps = dp_finding(training_card(nb, "for xb, yb in dp_loader:"))["metrics"]["epsilon"]
    eps1, runs1, left1 = spent(first)
    assert runs1 == 1 and eps1 == pytest.approx(card_eps, abs=0.006) and left1 == pytest.approx(BUDGET - eps1, abs=0.01)
    both = mj.privacy.epsilon(noise_multiplier=SIGMA, sample_rate=SAMPLE_RATE, steps=2 * STEPS, delta=DELTA)
    eps2, runs2, left2 = spent(second)
    assert runs2 == 2 and eps2 == pytest.approx(both, abs=0.006) and left2 == 0  # measured 5.39 of 5


def test_a_second_training_is_warned_before_it_runs_and_flagged_after(nb):
    cell = cell_with(nb, "for xb, yb in tuned_loader:")
    warning, card = cards_in(cell)
    both = mj.privacy.epsilon(noise_multiplier=SIGMA, sample_rate=SAMPLE_RATE, steps=2 * STEPS, delta=DELTA)
    assert warning["subject"] == "before this cell runs"
    (w,) = warning["findings"]
    assert w["severity"] == "high" and w["title"].startswith("This training would exceed the privacy budget")
    assert w["metrics"]["planned_epochs"] == 15 and w["metrics"]["epsilon"] == pytest.approx(both, rel=0.05)
    f = dp_finding(card)
    assert f["severity"] == "high" and f["title"].startswith("Privacy budget exceeded")
    assert f["metrics"]["epsilon"] == pytest.approx(both, rel=1e-4) and f["metrics"]["epsilon"] > BUDGET
    assert f["metrics"]["run_epsilon"] == pytest.approx(
        mj.privacy.epsilon(noise_multiplier=SIGMA, sample_rate=SAMPLE_RATE, steps=STEPS, delta=DELTA), rel=1e-4)


def test_the_membership_audit_sees_the_ordinary_network_leak_and_the_dp_one_not(nb):
    ordinary = training_card(nb, "net = mlp()")
    private = training_card(nb, "for xb, yb in dp_loader:")
    auc_ordinary, auc_dp = attack(ordinary)["metrics"]["auc"], attack(private)["metrics"]["auc"]
    assert auc_ordinary >= 0.62 and attack(ordinary)["severity"] in ("medium", "high")  # measured 0.678
    assert auc_dp <= 0.56 and attack(private)["severity"] in ("info", "low")  # measured 0.498
    assert auc_ordinary - auc_dp >= 0.1
    gap = [f for f in findings(ordinary, "privacy.membership") if "accuracy_gap" in f["metrics"]]
    assert gap and gap[0]["metrics"]["train_accuracy"] == 1.0  # it memorised every training row
    (held,) = [f for f in findings(private, "privacy.membership") if "accounted_epsilon" in f["metrics"]]
    card_eps = dp_finding(private)["metrics"]["epsilon"]
    assert held["severity"] == "info" and held["metrics"]["accounted_epsilon"] == pytest.approx(card_eps, rel=1e-6)
    assert held["metrics"]["epsilon_lower_bound"] <= card_eps


def test_the_comparison_table_agrees_with_the_cards(nb):
    text = stdout(cell_with(nb, "def audit(model):"))
    rows = {name: (float(acc) / 100, float(auc), eps) for name, acc, auc, eps in
            re.findall(r"(ordinary|DP-SGD)\s+([\d.]+)%\s+([\d.]+)\s+(\S+)", text)}
    assert set(rows) == {"ordinary", "DP-SGD"}
    assert rows["ordinary"][1] == pytest.approx(attack(training_card(nb, "net = mlp()"))["metrics"]["auc"], abs=5e-4)
    private = training_card(nb, "for xb, yb in dp_loader:")
    assert rows["DP-SGD"][1] == pytest.approx(attack(private)["metrics"]["auc"], abs=5e-4)
    assert rows["ordinary"][2] == "∞" and float(rows["DP-SGD"][2]) == pytest.approx(
        dp_finding(private)["metrics"]["epsilon"], abs=0.006)
    assert rows["DP-SGD"][0] >= 0.75 and rows["ordinary"][0] >= 0.7  # measured 84.5 % and 77.2 %
