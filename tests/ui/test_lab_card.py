"""In a real JupyterLab in real Chromium: the card appears under the cell at once, fills in while a
later cell runs, and the saved notebook keeps the finished card (notes/packaging.md, recipe A)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.ui, pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium")]
sync_api = pytest.importorskip("playwright.sync_api")

CARD_MIME = "application/vnd.mlsec.riskcard+json"
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
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _until(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def lab(tmp_path: Path):
    root, settings = tmp_path / "nb", tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    root.mkdir()
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    empty = {"cells": [{"cell_type": "code", "source": "", "metadata": {}, "outputs": [],
                        "execution_count": None}],
             "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
             "nbformat": 4, "nbformat_minor": 5}
    (root / "card.ipynb").write_text(json.dumps(empty))
    port = _free_port()
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.token=",
         "--ServerApp.password=", f"--port={port}", "--ip=127.0.0.1", "--ServerApp.port_retries=0",
         f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
         f"--LabApp.workspaces_dir={tmp_path / 'ws'}", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return _get(f"{url}/api/status")
        except OSError:
            return None

    try:
        _until(up, 60, "the Jupyter server")
        yield url, root
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_card_updates_in_place_in_jupyterlab_and_is_saved_finished(lab, tmp_path):
    url, root = lab
    expect = sync_api.expect
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        page.goto(f"{url}/lab/tree/card.ipynb?reset")
        # the kernel is connected once the status bar names it idle; earlier, Shift+Enter is dropped
        expect(page.locator(".jp-StatusBar-Widget")).to_contain_text("Python 3 (ipykernel) | Idle",
                                                                     timeout=60_000)
        prompts = page.locator(".jp-NotebookPanel .jp-Cell .jp-InputPrompt")

        def run(code: str) -> None:
            page.locator(".jp-NotebookPanel .jp-Cell .cm-content").last.click()
            page.keyboard.insert_text(code)  # not .type(): CodeMirror would auto-close brackets
            page.keyboard.press("Shift+Enter")

        run(SETUP)
        expect(prompts.nth(0)).to_contain_text("[1]", timeout=60_000)
        run("X, y = load_iris(return_X_y=True)")
        card = page.locator(".jp-OutputArea-output .mlsec-card")
        expect(card).to_have_count(1, timeout=30_000)
        expect(page.locator(".mlsec-card.mlsec-status-running")).to_have_count(1)  # the cell did not wait
        run("time.sleep(5); 'a later cell'")
        expect(page.locator(".mlsec-card.mlsec-status-done")).to_have_count(1, timeout=30_000)
        expect(card).to_contain_text("Slow demo check finished")
        expect(card).to_contain_text("data.duplicates")
        page.screenshot(path=str(tmp_path / "lab-card.png"))
        page.keyboard.press("Escape")
        page.keyboard.press("Control+s")

        def saved_card():
            nb = _get(f"{url}/api/contents/card.ipynb")["content"]
            cards = [o["data"][CARD_MIME] for c in nb["cells"] for o in c.get("outputs", [])
                     if CARD_MIME in o.get("data", {})]
            return cards if cards and cards[0]["status"] == "done" else None

        (saved,) = _until(saved_card, 30, "the saved notebook to hold the finished card")
        assert {f["check"] for f in saved["findings"]} >= {"demo.slow", "data.integrity", "data.duplicates"}
        browser.close()
