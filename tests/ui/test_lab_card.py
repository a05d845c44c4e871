"""In a real JupyterLab in real Chromium: the card appears under the cell at once, fills in while a
later cell runs, and the saved notebook keeps the finished card (notes/packaging.md, recipe A)."""

from __future__ import annotations

import json

import pytest
from uihelp import CARD_MIME, CHROMIUM, get_json, notebook, open_notebook, run_cell, until

pytestmark = [pytest.mark.ui, pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium")]
sync_api = pytest.importorskip("playwright.sync_api")
SETUP = '''%load_ext mlsec_jupyter
import time
from sklearn.datasets import load_iris
from mlsec_jupyter.checks.registry import register_check
from mlsec_jupyter.findings import Finding

@register_check("demo.slow", applies_to="dataset", title="slow demo", force=True)
def slow(*, X, budget):
    end = time.monotonic() + 2
    while time.monotonic() < end:
        budget.checkpoint()
        time.sleep(0.05)
    return [Finding("demo.slow", "medium", "Slow demo check finished", "took 2 s")]
'''
def test_card_updates_in_place_in_jupyterlab_and_is_saved_finished(lab, page, tmp_path):
    url, root = lab
    (root / "card.ipynb").write_text(json.dumps(notebook([""])))
    expect = sync_api.expect
    open_notebook(page, url, "card.ipynb")
    prompts = page.locator(".jp-NotebookPanel .jp-Cell .jp-InputPrompt")
    run_cell(page, 0, SETUP)
    expect(prompts.nth(0)).to_contain_text("[1]", timeout=60_000)
    run_cell(page, 1, "X, y = load_iris(return_X_y=True)")
    card = page.locator(".jp-OutputArea-output .mlsec-rc")
    expect(card).to_have_count(1, timeout=30_000)
    expect(page.locator(".mlsec-rc.mlsec-rc-running")).to_have_count(1)  # the cell did not wait
    expect(page.locator(".mlsec-progress-bar")).to_have_count(1)
    run_cell(page, 2, "time.sleep(5); 'a later cell'")
    expect(page.locator(".mlsec-rc.mlsec-rc-done")).to_have_count(1, timeout=30_000)
    expect(card).to_contain_text("Slow demo check finished")
    expect(card).to_contain_text("data.duplicates")
    expect(page.locator(".jp-OutputArea-output .mlsec-card")).to_have_count(0)  # our renderer, not the HTML
    page.screenshot(path=str(tmp_path / "lab-card.png"))
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")

    def saved_card():
        nb = get_json(f"{url}/api/contents/card.ipynb")["content"]
        cards = [o["data"][CARD_MIME] for c in nb["cells"] for o in c.get("outputs", [])
                 if CARD_MIME in o.get("data", {})]
        return cards if cards and cards[0]["status"] == "done" else None

    (saved,) = until(saved_card, 30, "the saved notebook to hold the finished card")
    assert {f["check"] for f in saved["findings"]} >= {"demo.slow", "data.integrity", "data.duplicates"}
