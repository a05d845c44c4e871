"""example-notebooks/05-robustness-and-theft.ipynb, run by nbclient: the robustness and theft numbers a user reads."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest
from conftest import cards_in, cell_with

pytestmark = pytest.mark.kernel

NB = "05-robustness-and-theft.ipynb"
#: PGD has a random start: a larger ε may score a hair above a smaller one on a few rows.
PGD_SLACK = 0.02


def _text(cell) -> str:
    return "".join(o["text"] for o in cell.get("outputs", []) if o["output_type"] == "stream" and o["name"] == "stdout")


def _card(nb, source: str, subject: str) -> dict:
    (card,) = [c for c in cards_in(cell_with(nb, source)) if c["subject"].startswith(subject)]
    assert card["status"] == "done"
    return card


def _finding(card: dict, check: str, title: str = "") -> dict:
    (finding,) = [f for f in card["findings"] if f["check"] == check and f["title"].startswith(title)]
    return finding


def _falls(values: list[float], slack: float = 0.0) -> bool:
    return all(b <= a + slack for a, b in pairwise(values))


def _sweep(finding: dict, slack: float) -> dict:
    """An evasion finding whose robust accuracy falls with ε and is below the clean accuracy."""
    m = finding["metrics"]
    eps, acc, clean = m["eps"], m["robust_accuracy"], m["clean_accuracy"]
    assert len(eps) == len(acc) >= 4 and eps == sorted(eps)
    assert _falls(acc, slack), acc
    assert all(a <= clean for a in acc) and acc[-1] < clean - 0.5, (clean, acc)
    return m


def test_linear_model_card_evasion_is_exact_and_falls_with_eps(executed_notebook):
    card = _card(executed_notebook(NB), "clf.fit(X_train, y_train)", "clf (sklearn) fitted on X_train, y_train")
    m = _sweep(_finding(card, "robustness.evasion"), slack=0.0)  # exact: no attack noise at all
    assert m["attack"] == "exact" and m["rows"] == "held-out" and m["n_rows"] == 143
    assert m["eps_unit"] == "feature standard deviations"
    assert 0.93 <= m["clean_accuracy"] <= 0.99
    assert m["robust_accuracy_at_small_eps"] < m["clean_accuracy"] - 0.03  # the "0.96 → 0.87" of the title


def test_linear_model_card_noise_barely_moves(executed_notebook):
    card = _card(executed_notebook(NB), "clf.fit(X_train, y_train)", "clf (sklearn)")
    m = _finding(card, "robustness.noise")["metrics"]
    assert len(m["sigma"]) == len(m["accuracy"]) >= 4 and m["sigma"] == sorted(m["sigma"])
    assert all(abs(a - m["clean_accuracy"]) <= 0.05 for s, a in zip(m["sigma"], m["accuracy"]) if s <= 0.2)


def test_linear_model_card_extraction_solves_the_weights_and_rounding_hurts(executed_notebook):
    card = _card(executed_notebook(NB), "clf.fit(X_train, y_train)", "clf (sklearn)")
    exact = _finding(card, "model.extraction", "Probabilities expose the model")
    m = exact["metrics"]
    assert exact["severity"] == "critical"
    assert m["exact_recovery_queries"] == m["n_features"] + 1 == 31
    assert m["max_relative_error"] < 1e-9
    assert m["rounded_decimals"] == 2 and m["rounded_max_relative_error"] > 1e-2
    assert m["exact_fidelity"] == 1.0
    copy = _finding(card, "model.extraction", "If served")
    q, fid = copy["metrics"]["queries"], copy["metrics"]["fidelity"]
    assert len(q) == len(fid) >= 5 and q == sorted(q)
    assert all(0.0 <= f <= 1.0 for f in fid) and min(fid) > copy["metrics"]["baseline_fidelity"] + 0.2
    assert fid[-1] >= 0.95


def test_linear_model_card_inversion_points_at_both_classes(executed_notebook):
    card = _card(executed_notebook(NB), "clf.fit(X_train, y_train)", "clf (sklearn)")
    m = _finding(card, "model.inversion")["metrics"]
    assert set(m["similarity"]) == {"0", "1"}
    assert all(-1.0 <= s <= 1.0 for s in m["similarity"].values())
    assert m["identified"] == 1.0 and m["mean_similarity"] > m["member_similarity"]


def test_probe_of_the_linear_model_uses_the_given_eps(executed_notebook):
    card = _card(executed_notebook(NB), "%mlsec probe clf X_test y_test", "clf: full evasion sweep")
    assert [c["check"] for c in card["checks"]] == ["robustness.evasion"]
    m = _sweep(_finding(card, "robustness.evasion"), slack=0.0)
    assert m["eps"] == [0.05, 0.1, 0.2, 0.3, 0.5, 1.0]
    assert m["attack"] == "exact" and m["n_rows"] == 143
    assert m["robust_accuracy"][1] > 0.85 and m["robust_accuracy"][-1] < 0.2


def test_hand_written_extraction_recovers_the_weights(executed_notebook):
    out = _text(cell_with(executed_notebook(NB), "np.linalg.solve("))
    exact = re.search(r"exact probabilities\s*: 31 queries, weight error (\S+), copy agrees on (\S+)%", out)
    rounded = re.search(r"rounded to 2 decimals: 31 queries, weight error (\S+), copy agrees on (\S+)%", out)
    assert exact and rounded, out
    assert float(exact.group(1)) < 1e-9 and float(exact.group(2)) == 100.0
    assert float(rounded.group(1)) > 1e-2 and float(rounded.group(2)) >= 95.0


def test_torch_model_card_pgd_noise_extraction_inversion(executed_notebook):
    card = _card(executed_notebook(NB), "net = build_net()", "net (torch) fitted on train_loader.dataset")
    evasion = _finding(card, "robustness.evasion")
    m = _sweep(evasion, slack=PGD_SLACK)
    assert m["attack"] == "pgd" and m["rows"] == "held-out" and m["n_rows"] == 450
    assert m["eps_unit"] == "data units" and m["data_range"] == [0.0, 1.0]
    assert m["masking_flags"] == []
    assert len(m["fgsm_robust_accuracy"]) == len(m["eps"])
    assert all(p <= f + PGD_SLACK for p, f in zip(m["robust_accuracy"], m["fgsm_robust_accuracy"]))  # PGD ≥ FGSM
    assert evasion["severity"] in ("medium", "high")
    assert m["robust_accuracy_at_small_eps"] < m["clean_accuracy"] - 0.1

    noise = _finding(card, "robustness.noise")["metrics"]
    assert all(abs(a - noise["clean_accuracy"]) <= 0.05 for s, a in zip(noise["sigma"], noise["accuracy"]) if s <= 0.1)

    copy = _finding(card, "model.extraction")["metrics"]
    assert copy["surrogate"].startswith("extra-trees")
    assert "exact_recovery_queries" not in copy  # no closed form for a network
    fid = copy["fidelity"]
    assert len(copy["queries"]) == len(fid) and fid[0] < 0.85 < max(fid)  # the copy improves with queries
    assert min(fid) > copy["baseline_fidelity"] + 0.3

    inv = _finding(card, "model.inversion")["metrics"]
    assert set(inv["similarity"]) == {str(d) for d in range(10)}
    assert inv["mean_similarity"] > inv["member_similarity"] > 0.3
    assert inv["identified"] >= 0.9 and inv["chance_identified"] == 0.1
    assert inv["images"]["shape"] == [8, 8]  # the reconstructed digits are drawn on the card


def test_adversarial_training_raises_robust_accuracy(executed_notebook):
    nb = executed_notebook(NB)
    plain = _sweep(_finding(_card(nb, "%mlsec probe net --attack pgd", "net: full evasion sweep"),
                            "robustness.evasion"), slack=PGD_SLACK)
    robust = _sweep(_finding(_card(nb, "%mlsec probe net_robust --attack pgd", "net_robust: full evasion sweep"),
                             "robustness.evasion"), slack=PGD_SLACK)
    assert plain["eps"] == robust["eps"] == [0.02, 0.05, 0.1, 0.2]
    assert plain["attack"] == robust["attack"] == "pgd" and plain["n_rows"] == robust["n_rows"] == 450
    at = plain["eps"].index(0.1)  # the ε it was trained for
    assert robust["robust_accuracy"][at] > plain["robust_accuracy"][at] + 0.1
    assert abs(robust["clean_accuracy"] - plain["clean_accuracy"]) < 0.05  # at a small cost in clean accuracy
    # the side-by-side table printed by mj.run_check says the same
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]]
            for line in _text(cell_with(nb, 'mj.run_check("robustness.evasion"')).splitlines()
            if line.startswith("net")}
    assert set(rows) == {"net", "net_robust"} and all(len(v) == 5 for v in rows.values())
    assert rows["net_robust"][3] > rows["net"][3] + 0.1
    # the notebook's closing remark: the robust network is easier to invert (Santurkar et al. 2019)
    similarity = {name: _finding(_card(nb, source, f"{name} (torch)"), "model.inversion")["metrics"]["mean_similarity"]
                  for name, source in (("net", "net = build_net()"), ("net_robust", "net_robust = build_net()"))}
    assert similarity["net_robust"] > similarity["net"] + 0.02
