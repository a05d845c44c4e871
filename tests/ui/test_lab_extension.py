"""The JupyterLab extension in a real JupyterLab and Chromium: the card is drawn by our renderer (not the
HTML fallback), the "ML security" sidebar lists the notebook's findings and scrolls to their cell, the
status item counts them, all of it comes back from the saved outputs after a reload, and a column named
with an HTML/JS payload stays text everywhere (notes/reliability.md S1). A screenshot of the card and the
sidebar is kept in the test's tmp_path (not committed)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from uihelp import CARD_MIME, CHROMIUM, get_json, notebook, open_notebook, run_cell, run_cells_in_order, until

pytestmark = [pytest.mark.ui, pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium")]
sync_api = pytest.importorskip("playwright.sync_api")

PAYLOAD = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
SETUP = "%load_ext mlsec_jupyter"
PLANTED = f'''import numpy as np, pandas as pd
from sklearn.datasets import load_iris
X, y = load_iris(return_X_y=True)
X = np.vstack([X, X[:30]]); y = np.concatenate([y, (y[:30] + 1) % 3])  # duplicates with flipped labels
frame = pd.DataFrame(X, columns=["a", "b", "c", {PAYLOAD!r}]).assign(**{{{PAYLOAD!r}: 1.0}})  # constant: named
'''
SHUT_DOWN_KERNELS = """async () => {
  const xsrf = (document.cookie.split('; ').find(c => c.startsWith('_xsrf=')) || '').slice(6);
  for (const k of await (await fetch('/api/kernels')).json()) {
    await fetch(`/api/kernels/${k.id}`, {method: 'DELETE', headers: {'X-XSRFToken': xsrf}});
  }
}"""
FILLER = "'filler'\n" + "\n" * 30  # tall cells so that the card's cell leaves the screen


def test_lab_extension_is_installed_and_enabled():
    out = subprocess.run([sys.executable, "-m", "jupyterlab.labextensions", "list"], capture_output=True,
                         text=True, check=True)
    text = out.stdout + out.stderr
    assert "mlsec-jupyter" in text and "enabled" in text.split("mlsec-jupyter", 1)[1].splitlines()[0], text


def test_renderer_sidebar_and_status_item(lab, page, tmp_path):
    url, root = lab
    (root / "planted.ipynb").write_text(json.dumps(notebook([SETUP, PLANTED] + [FILLER] * 6)))
    expect = sync_api.expect
    open_notebook(page, url, "planted.ipynb")
    run_cell(page, 0)
    expect(page.locator(".jp-Cell").nth(0).locator(".jp-InputPrompt")).to_contain_text("[1]", timeout=60_000)
    run_cell(page, 1)
    card = page.locator(".jp-Cell").nth(1).locator(".mlsec-RiskCardOutput .mlsec-rc")
    expect(card).to_have_count(1, timeout=60_000)
    expect(page.locator(".mlsec-rc.mlsec-rc-done")).to_have_count(1, timeout=60_000)
    expect(page.locator(".jp-OutputArea-output .mlsec-card")).to_have_count(0)  # not the HTML fallback

    # the payload column name is text: nothing injected, nothing ran
    expect(card).to_contain_text("<img src=x")
    assert card.locator("img, script, [onerror]").count() == 0
    shown = card.locator(".mlsec-finding:not(.mlsec-sev-info)").count()
    assert shown >= 2, "duplicates with flipped labels must give findings"

    # sidebar: one entry per finding at low and above, grouped by severity
    page.locator('.jp-SideBar [data-id="mlsec-risk-sidebar"]').click()
    entries = page.locator("#mlsec-risk-sidebar .mlsec-sb-finding")
    expect(entries).to_have_count(shown)
    assert page.locator("#mlsec-risk-sidebar img, #mlsec-risk-sidebar script").count() == 0

    # status item: the counts by severity
    status = page.locator(".mlsec-status")
    high = card.locator(".mlsec-finding.mlsec-sev-high").count()
    assert high >= 1, "duplicates with flipped labels are high"
    expect(status).to_contain_text(f"{high} high")
    page.screenshot(path=str(tmp_path / "card-and-sidebar.png"))
    page.locator('.jp-SideBar [data-id="mlsec-risk-sidebar"]').click()  # closes the sidebar...
    expect(page.locator("#mlsec-risk-sidebar")).to_be_hidden()
    status.click()  # ...and the status item opens it again
    expect(page.locator("#mlsec-risk-sidebar")).to_be_visible()

    # a click scrolls back to the card's cell
    page.locator(".jp-NotebookPanel .jp-Cell").last.scroll_into_view_if_needed()
    expect(card).not_to_be_in_viewport()
    entries.first.click()
    expect(card).to_be_in_viewport(timeout=10_000)
    expect(page.locator(".jp-Cell.jp-mod-active .mlsec-rc")).to_have_count(1)

    # the filter narrows the list
    page.locator("#mlsec-risk-sidebar .mlsec-sb-filter").fill("no finding has this title")
    expect(entries).to_have_count(0)
    page.locator("#mlsec-risk-sidebar .mlsec-sb-filter").fill("")
    expect(entries).to_have_count(shown)

    # saved, kernel stopped, page reloaded: the sidebar reads the saved outputs
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")

    def saved():
        nb = get_json(f"{url}/api/contents/planted.ipynb")["content"]
        return any(CARD_MIME in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))

    until(saved, 30, "the notebook to be saved with its card")
    page.evaluate(SHUT_DOWN_KERNELS)
    until(lambda: get_json(f"{url}/api/kernels") == [], 30, "the kernel to stop")
    page.reload()  # a fresh kernel: the cards now exist only as saved outputs
    expect(page.locator(".jp-Cell").nth(1).locator(".mlsec-rc")).to_have_count(1, timeout=60_000)
    if not page.locator("#mlsec-risk-sidebar").is_visible():
        page.locator('.jp-SideBar [data-id="mlsec-risk-sidebar"]').click()
    expect(page.locator("#mlsec-risk-sidebar .mlsec-sb-finding")).to_have_count(shown)
    assert page.dialogs == [] and page.errors == [], f"a payload ran or the page failed: {page.dialogs} {page.errors}"


def test_panel_reruns_a_check_with_progress_and_keeps_payloads_as_text(lab, page, tmp_path):
    url, root = lab
    (root / "panel.ipynb").write_text(json.dumps(notebook([SETUP, PLANTED, "%mlsec panel"])))
    expect = sync_api.expect
    open_notebook(page, url, "panel.ipynb")
    run_cells_in_order(page, 3)
    panel = page.locator(".mlsec-panel")
    expect(panel).to_have_count(1, timeout=30_000)
    expect(panel.locator(".mlsec-panel-table")).to_contain_text("Duplicates with conflicting labels")
    panel.locator("select:has(option[value='data.integrity'])").select_option("data.integrity")
    panel.locator("input[placeholder='X y   or   model']").fill("frame")
    panel.locator("button", has_text="Re-run").click()
    expect(panel.locator(".mlsec-panel-status")).to_have_text("done", timeout=60_000)
    expect(panel.locator(".mlsec-panel-result .mlsec-card")).to_contain_text("<img src=x")  # the payload, as text
    assert panel.locator("img, script").count() == 0 and page.dialogs == [] and page.errors == []
    bar = panel.locator(".mlsec-panel-progress .progress-bar")
    expect(bar).to_have_attribute("style", re.compile(r"width: 100%"))  # the progress bar ran to its end
    expect(bar).to_have_class(re.compile("progress-bar-success"))
    page.screenshot(path=str(tmp_path / "panel.png"))


PICTURES = f"""from mlsec_jupyter.checks.registry import register_check
from mlsec_jupyter.findings import Finding
import numpy as np
P = {PAYLOAD!r}
@register_check("demo.pictures", applies_to="dataset", title="pictures", force=True)
def pictures(*, X, budget):
    metrics = {{"eps": [0.0, 0.1, 0.2, 0.3], "acc": [0.9, 0.7, 0.4, 0.1],
               "plot": {{"kind": "line", "x": "eps", "y": "acc", "x_label": P, "y_label": "accuracy"}},
               "gauge": {{"value": 2.5, "limit": 3.0, "label": P}},
               "images": {{"kind": "images", "shape": [4, 4], "pixels": [[i / 15 for i in range(16)]] * 2,
                          "labels": [P, "b"]}},
               "trigger_mask": [[0, 1], [1, 0]], P: P}}
    return [Finding("demo.pictures", "high", "Title " + P, "Summary " + P, metrics=metrics,
                    recommendation="Do " + P, references=[P])]
"""

LOAD = "from sklearn.datasets import load_iris\nX, y = load_iris(return_X_y=True)"


def test_renderer_draws_plots_and_keeps_every_string_as_text(lab, page, tmp_path):
    url, root = lab
    (root / "pictures.ipynb").write_text(json.dumps(notebook([SETUP, PICTURES, LOAD])))
    expect = sync_api.expect
    open_notebook(page, url, "pictures.ipynb")
    run_cells_in_order(page, 3)
    card = page.locator(".jp-Cell").nth(2).locator(".mlsec-rc")
    finding = card.locator(".mlsec-finding.mlsec-sev-high")
    expect(finding).to_have_count(1, timeout=60_000)
    finding.locator("summary").click()
    expect(finding.locator(".mlsec-plot svg polyline")).to_have_count(1)
    expect(finding.locator(".mlsec-gauge-fill")).to_have_count(1)
    expect(finding.locator(".mlsec-images canvas")).to_have_count(2)
    expect(finding.locator(".mlsec-trigger canvas")).to_have_count(1)
    expect(finding).to_contain_text("Title " + PAYLOAD)
    expect(finding).to_contain_text("Do " + PAYLOAD)
    page.locator('.jp-SideBar [data-id="mlsec-risk-sidebar"]').click()
    expect(page.locator("#mlsec-risk-sidebar .mlsec-sb-finding", has_text="Title <img")).to_have_count(1)
    for where in (card, page.locator("#mlsec-risk-sidebar"), page.locator(".mlsec-status")):
        assert where.locator("img, script, [onerror]").count() == 0
    assert page.dialogs == [] and page.errors == [], f"a payload ran or the page failed: {page.dialogs} {page.errors}"
    page.screenshot(path=str(tmp_path / "pictures.png"))


def _output(card) -> dict:
    return {"output_type": "display_data", "metadata": {}, "data": {CARD_MIME: card, "text/plain": "card"}}


def test_crafted_cards_in_a_saved_notebook_are_drawn_safely(lab, page):
    """The renderer is registered as safe, so a notebook from anywhere reaches it: unknown severity words
    (a class-name injection, found in review), malformed check lists, odd progress, too many findings."""
    base = {"version": 1, "subject": "s", "status": "done", "findings": []}
    finding = {"check": "c", "title": "T", "summary": "S", "metrics": {}}
    cards = [
        {**base, "card_id": "a", "min_severity": "zzz",
         "findings": [{**finding, "severity": "x jp-Dialog jp-ThemedContainer"}]},
        {**base, "card_id": "b", "status": "running", "progress": -3, "checks": "x",
         "findings": [{**finding, "severity": "high"}]},
        {**base, "card_id": "c", "status": "running", "checks": [None, {"check": "k", "status": "running",
                                                                      "progress": "50%", "message": 7}]},
        {**base, "card_id": "d", "findings": [{**finding, "severity": "medium", "title": f"T{i}"} for i in range(500)]},
        {**base, "card_id": "e", "changes": {"heading": "Changed since the last run [3]",
                                             "lines": ["New: high <img src=x onerror=alert(1)>", 7,
                                                       "exact duplicates 5 → 25 (+20)"]}},
        {**base, "card_id": "f", "changes": {"heading": ["x"], "lines": "<b>x</b>"}},
        "not a card",
    ]
    nb = notebook([f"# card {i}" for i in range(len(cards))])
    for cell, card in zip(nb["cells"], cards):
        cell["outputs"] = [_output(card)]
    (lab[1] / "crafted.ipynb").write_text(json.dumps(nb))
    expect = sync_api.expect
    page.goto(f"{lab[0]}/lab/tree/crafted.ipynb?reset")
    outputs = page.locator(".mlsec-RiskCardOutput")
    expect(outputs).to_have_count(len(cards), timeout=60_000)
    assert page.locator(".jp-OutputArea .jp-Dialog, .jp-OutputArea .jp-ThemedContainer").count() == 0
    expect(outputs.nth(0).locator(".mlsec-rc.mlsec-sev-info")).to_have_count(1)  # the unknown word became "info"
    expect(outputs.nth(1).locator(".mlsec-progress-bar")).to_have_count(1)
    expect(outputs.nth(2)).to_contain_text("Still running: k")
    expect(outputs.nth(3).locator(".mlsec-finding")).to_have_count(60)
    expect(outputs.nth(3)).to_contain_text("+440 more findings")
    changes = outputs.nth(4).locator(".mlsec-changes")
    expect(changes).to_contain_text("Changed since the last run [3]")
    expect(changes.locator("li")).to_have_count(2)  # the number 7 is not a line
    expect(changes.locator("li").first).to_have_text("New: high <img src=x onerror=alert(1)>")
    expect(outputs.nth(5).locator(".mlsec-changes")).to_have_count(0)  # malformed: not drawn
    expect(outputs.nth(6)).to_contain_text("could not be read")
    assert page.locator(".jp-OutputArea img").count() == 0
    page.locator('.jp-SideBar [data-id="mlsec-risk-sidebar"]').click()
    expect(page.locator("#mlsec-risk-sidebar .mlsec-sb-finding")).to_have_count(501)  # high + 500 medium
    page.locator("#mlsec-risk-sidebar .mlsec-sb-filter").fill("T499")
    expect(page.locator("#mlsec-risk-sidebar .mlsec-sb-finding")).to_have_count(1)
    assert page.errors == [], page.errors
