"""``%mlsec panel`` in a real IPython shell with real ipywidgets: the findings table and its filters, a
re-run with its parameters whose progress arrives through widget state from the worker thread, cancel,
privacy budgets, exports, and escaping of user strings (notes/reliability.md S1)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from conftest import run

PAYLOAD = '<img src=x onerror="alert(1)">'
DATA = f'''import numpy as np, pandas as pd
from sklearn.datasets import load_iris
X, y = load_iris(return_X_y=True)
X = np.vstack([X, X[:30]]); y = np.concatenate([y, (y[:30] + 1) % 3])
frame = pd.DataFrame(X, columns=["a", "b", "c", {PAYLOAD!r}]).assign(**{{{PAYLOAD!r}: 1.0}})
'''


@pytest.fixture
def panel(ip):
    run(ip, DATA)
    ip.run_line_magic("mlsec", "wait 60")
    widget = ip.run_line_magic("mlsec", "panel")
    from mlsec_jupyter.extension import _STATE

    (p,) = _STATE.panels
    assert p.widget is widget
    return p


def _wait_for(predicate, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_the_table_lists_the_session_findings_and_filters_them(panel):
    assert "Duplicates with conflicting labels" in panel.table.value
    assert "high" in panel.summary.value
    panel.text.value = "conflicting"
    assert [f.title for _, f in panel.rows_shown()] == ["Duplicates with conflicting labels"]
    panel.text.value = ""
    panel.minimum.value = "critical"
    assert panel.rows_shown() == [] and "No findings at this level" in panel.table.value
    panel.minimum.value = "info"
    assert len(panel.rows_shown()) > 5


def test_user_strings_are_escaped_everywhere_in_the_panel(panel):
    panel.minimum.value = "info"
    panel.text.value = ""
    values = [panel.table.value, panel.summary.value]
    panel.target.value = "frame"
    panel.check.value = "data.integrity"
    card = panel.rerun()
    _wait_for(lambda: card.status == "done")
    values.append(panel.result.value)
    assert any("&lt;img src=x" in v for v in values), "the payload column is shown, as text"
    assert not any("<img" in v or "<script" in v for v in values)


def test_rerun_with_parameters_shows_progress_from_the_worker_thread(panel, ip):
    threads = set()
    original = panel._show

    def spy(card):
        threads.add(threading.current_thread().name)
        original(card)

    panel._show = spy
    panel.check.value = "data.duplicates"
    panel.target.value = "X y"
    panel.rows.value = 100
    card = panel.rerun()
    assert card is not None and panel.run_button.disabled and not panel.cancel_button.disabled
    _wait_for(lambda: panel.progress.value == 1.0)  # set last by the update
    assert card.status == "done" and panel.status.value == "done" and panel.progress.bar_style == "success"
    assert "Duplicates with conflicting labels" in panel.result.value
    assert card in list(panel.session.cards)
    assert any(name != "MainThread" for name in threads), "updates came from the worker, through widget state"
    (run_,) = card.runs
    assert run_.sampled and "100" in run_.sampled, "the row budget of the re-run was used"


def test_rerun_parameters_are_checked(panel):
    panel.check.value = "robustness.evasion"
    assert panel.eps.layout.display == "" and panel.shadows.layout.display == "none"
    panel.eps.value = "0.1, -2"
    panel.target.value = "X y"
    assert panel.rerun() is None and "ε values must be positive" in panel.status.value
    panel.check.value = "privacy.membership"
    assert panel.shadows.layout.display == "" and panel.eps.layout.display == "none"
    panel.shadows.value = 3
    assert panel.parameters_for("privacy.membership") == {"n_shadow": 3}
    panel.target.value = "no_such_variable"
    assert panel.rerun() is None and "no_such_variable" in panel.status.value


def test_cancel_stops_only_this_panels_rerun(panel, ip):
    from mlsec_jupyter.checks.registry import register_check, unregister_check
    from mlsec_jupyter.panel import Panel

    @register_check("demo.forever", applies_to="dataset", title="never ends", force=True)
    def forever(*, X, budget):
        while True:
            budget.checkpoint()
            time.sleep(0.02)

    try:
        ours, other = (Panel(panel.session, panel.evaluate) for _ in range(2))  # made after the registration
        cards = []
        for p in (ours, other):
            p.check.value, p.target.value, p.seconds.value = "demo.forever", "X y", 60
            cards.append(p.rerun())
        _wait_for(lambda: cards[0].runs[0].status.value == "running", 10)  # one worker: the other one queues
        assert ours.rerun() is None and "still going" in ours.status.value, "one re-run at a time"
        assert ours.cancel() == 1 and ours.run_button.disabled, "Run comes back when the card finishes"
        _wait_for(lambda: cards[0].status == "done", 10)
        _wait_for(lambda: not ours.run_button.disabled, 10)
        assert ours.status.value == "cancelled" and [r.status.value for r in cards[0].runs] == ["cancelled"]
        _wait_for(lambda: cards[1].runs[0].status.value == "running", 10)  # not cancelled: it runs next
        assert other.cancel() == 1
        _wait_for(lambda: cards[1].status == "done", 10)
    finally:
        unregister_check("demo.forever")
        panel.session.runner.cancel_all()


def test_progress_is_clamped_and_finite():
    from mlsec_jupyter.checks.budget import Budget

    seen = []
    budget = Budget(seconds=10, on_progress=lambda share, text: seen.append(share))
    for value in (float("nan"), -0.5, 3.0, float("inf"), 0.25):
        budget.progress(value)
    assert seen == [0.0, 0.0, 1.0, 0.0, 0.25]


def test_a_corrupt_ledger_record_does_not_break_the_panel(panel, ip, in_tmp):
    ip.run_line_magic("mlsec", "budget X eps=3 delta=1e-5")
    for record in (in_tmp / ".mlsec" / "privacy").glob("*.json"):
        record.write_text("{ not json")
    panel.refresh()
    assert "cannot be read" in panel.budgets.value


def test_privacy_budgets_are_drawn_as_gauges(panel, ip):
    ip.run_line_magic("mlsec", "budget X eps=3 delta=1e-5")
    panel.refresh()
    assert "ε spent at δ = 1e-05" in panel.budgets.value and "0 / 3" in panel.budgets.value


def test_export_writes_every_card(panel, in_tmp):
    json_path = panel.export("json")
    doc = json.loads(json_path.read_text())
    assert doc["cards"] and all("findings" in c for c in doc["cards"])
    html_path = panel.export("html")
    text = html_path.read_text()
    assert text.startswith("<!DOCTYPE html>") and "Duplicates with conflicting labels" in text
    assert "<script" not in text and "<img" not in text and "http" not in text.split("<body>", 1)[1]
    assert str(html_path.resolve()) in panel.exported.value


def test_unload_closes_the_panel(panel, ip):
    ip.run_line_magic("unload_ext", "mlsec_jupyter")
    assert panel.widget.comm is None and panel.table.comm is None and panel.run_button.comm is None
