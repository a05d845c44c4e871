"""Run diffs: a cell run again gets a card that says what changed against its previous run."""

from __future__ import annotations

from conftest import card_bundles, run

from mlsec_jupyter.changes import compare
from mlsec_jupyter.findings import CARD_MIME, CheckStatus, Finding, RiskCard, Severity

SETUP = ("import numpy as np\nrng = np.random.default_rng(0)\nbase = rng.normal(size=(300, 4))\n"
         "lab = (base[:, 0] > 0).astype(int)\n")
FIT = ("X = np.vstack([base, base[:k]]); y = np.r_[lab, 1 - lab[:k]]\n"
       "from sklearn.linear_model import LogisticRegression\nm = LogisticRegression().fit(X, y)")


def _shown(ip, code, cell_id="fit-cell") -> dict:
    """The one card output a cell (named ``cell_id`` by the front end) shows: its whole bundle."""
    _, outputs, _, _ = run(ip, code, cell_id)
    (shown,) = [o.data for o in outputs if card_bundles([o])]
    return shown


def _card(ip, code, cell_id="fit-cell"):
    return _shown(ip, code, cell_id)[CARD_MIME]


def test_rerun_cell_card_lists_new_counts_and_severity_changes(ip):
    run(ip, SETUP + "k = 5")
    first = _card(ip, FIT)
    assert "changes" not in first  # a first run has nothing to compare with
    run(ip, "k = 25")
    shown = _shown(ip, FIT)
    second = shown[CARD_MIME]
    changes = second["changes"]
    assert changes["previous_card_id"] == first["card_id"]
    assert changes["heading"].startswith("Changed since the last run")
    lines = changes["lines"]
    assert "exact duplicates 5 → 25 (+20) (X, y (train))" in lines
    assert "duplicates with conflicting labels 10 → 50 (+40) (X, y (train))" in lines
    assert "rows 305 → 325 (+20) (X, y (train))" in lines
    flips = [m for m in changes["metrics"] if m["metric"] == "estimated_flip_rate"]
    assert flips and flips[0]["after"] > flips[0]["before"]
    # a model check's row count is its data's: said once, for the data
    assert sum(line.startswith("rows ") for line in lines) == 1
    # what the user sees: the card's HTML and text say it too
    html, text = shown["text/html"], shown["text/plain"]
    assert "Changed since the last run" in html and "exact duplicates 5 → 25 (+20)" in html
    assert "Changed since the last run" in text and "exact duplicates 5 → 25 (+20)" in text


def test_rerun_without_changes_says_so_and_a_fix_is_resolved(ip):
    run(ip, SETUP + "k = 20")
    _card(ip, FIT)
    same = _card(ip, FIT)
    assert same["changes"]["heading"].startswith("Same findings as the last run")
    assert same["changes"]["lines"] == []
    run(ip, "k = 0")
    fixed = _card(ip, FIT)
    resolved = {(r["check"], r["title"]) for r in fixed["changes"]["resolved"]}
    assert ("data.duplicates", "Duplicates with conflicting labels") in resolved
    assert ("data.duplicates", "Exact duplicate rows") in resolved
    assert fixed["changes"]["new"] == []
    assert any(line.startswith("Resolved: high Duplicates with conflicting labels") for line in fixed["changes"]["lines"])


def test_cards_of_other_cells_are_not_compared_even_with_the_same_source(ip):
    """Review: cells were matched by their source when the front end sent no cell id (nbclient never does)."""
    run(ip, SETUP + "k = 5")
    _card(ip, FIT, "cell-a")
    assert "changes" not in _card(ip, FIT, "cell-b")  # another cell with the same text
    assert "changes" not in _card(ip, FIT, None)  # no cell id: never compared
    assert "changes" not in _card(ip, FIT, None)


def test_two_cards_of_one_run_are_both_kept_and_not_compared_with_each_other(ip):
    """Review: a fit card and a %mlsec scan card with the same subject in one run compared with each other."""
    run(ip, SETUP + "k = 5")
    code = FIT + "\nget_ipython().run_line_magic('mlsec', 'scan m')"
    _, outputs, _, _ = run(ip, code, "cell-c")
    first = card_bundles(outputs)
    assert len(first) == 2 and all("changes" not in c for c in first)
    _, outputs, _, _ = run(ip, code, "cell-c")
    again = card_bundles(outputs)
    assert [c["changes"]["previous_card_id"] for c in again] == [c["card_id"] for c in first]
    from mlsec_jupyter.extension import current

    kept = [c.card_id for c in current().session.report_cards()]
    assert kept == [c["card_id"] for c in again]  # the first run's cards left the report


def _finding(check, severity, title, **metrics):
    return Finding(check, severity, title, metrics=metrics, target="X")


def _done_card(findings, statuses):
    card = RiskCard("X")
    for check, status in statuses.items():
        card.finish_run(card.expect(check, "X"), status)
    card.add(findings)
    return card


def test_a_check_that_did_not_finish_neither_resolves_nor_adds_findings():
    before = _done_card([_finding("data.label_flips", Severity.HIGH, "About 5% of labels look flipped",
                                  estimated_flip_rate=0.05),
                         _finding("data.duplicates", Severity.MEDIUM, "Exact duplicate rows", exact_duplicates=8)],
                        {"data.label_flips": CheckStatus.DONE, "data.duplicates": CheckStatus.DONE})
    after = _done_card([_finding("data.duplicates", Severity.MEDIUM, "Exact duplicate rows", exact_duplicates=3)],
                       {"data.label_flips": CheckStatus.TIMED_OUT, "data.duplicates": CheckStatus.DONE})
    changes = compare(before, after)
    assert changes.resolved == [] and changes.new == []
    assert [m["text"] for m in changes.metrics] == ["exact duplicates 8 → 3 (−5)"]


def test_numbers_in_titles_do_not_make_a_finding_new_and_small_rate_moves_are_noise():
    before = _done_card([_finding("data.label_flips", Severity.MEDIUM, "About 5.1% of labels look flipped",
                                  estimated_flip_rate=0.0510, n_rows=1000)], {"data.label_flips": CheckStatus.DONE})
    after = _done_card([_finding("data.label_flips", Severity.MEDIUM, "About 5.2% of labels look flipped",
                                 estimated_flip_rate=0.0515, n_rows=1000)], {"data.label_flips": CheckStatus.DONE})
    changes = compare(before, after)
    assert changes.empty and changes.heading() == "Same findings as the last run"


def test_list_metrics_compare_at_the_same_epsilon_only():
    def evasion(eps, robust):
        return _done_card([_finding("robustness.evasion", Severity.HIGH, "Fragile", eps=eps, robust_accuracy=robust)],
                          {"robustness.evasion": CheckStatus.DONE})
    changes = compare(evasion([0.1, 0.3], [0.8, 0.5]), evasion([0.1, 0.3], [0.8, 0.2]))
    assert [m["text"] for m in changes.metrics] == ["robust accuracy at ε = 0.3 0.5 → 0.2"]
    assert compare(evasion([0.1, 0.3], [0.8, 0.5]), evasion([0.1, 0.4], [0.8, 0.2])).metrics == []


def test_changes_survive_the_card_json_and_user_strings_are_escaped():
    payload = "<img src=x onerror=alert(1)>"
    before = _done_card([], {"data.duplicates": CheckStatus.DONE})
    after = _done_card([Finding("data.duplicates", Severity.HIGH, payload, target="X")],
                       {"data.duplicates": CheckStatus.DONE})
    after.changes = compare(before, after)
    again = RiskCard.from_dict(after.to_dict())
    assert again.changes.lines() == after.changes.lines() == [f"New: high {payload} (X)"]
    html = again._repr_mimebundle_()["text/html"]
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
