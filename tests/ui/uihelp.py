"""Helpers of the browser tests: JSON over HTTP, waiting for a state, notebooks, running a cell."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CARD_MIME = "application/vnd.mlsec.riskcard+json"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def until(predicate, timeout: float, what: str):
    """Poll ``predicate`` (a state, never a fixed sleep) until it returns something truthy."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def notebook(cells: list[str]) -> dict:
    return {"cells": [{"cell_type": "code", "source": c, "metadata": {}, "outputs": [], "execution_count": None}
                      for c in cells],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def open_notebook(page, url: str, name: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{url}/lab/tree/{name}?reset")
    # the kernel is connected once the status bar names it idle; earlier, Shift+Enter is dropped
    expect(page.locator(".jp-StatusBar-Widget").first).to_contain_text("Idle", timeout=60_000)


def run_cell(page, index: int, code: str | None = None) -> None:
    """Type ``code`` into cell ``index`` (or keep its source) and run it with Shift+Enter."""
    cell = page.locator(".jp-NotebookPanel .jp-Cell").nth(index)
    cell.locator(".cm-content").click()
    if code is not None:
        page.keyboard.insert_text(code)  # not .type(): CodeMirror would auto-close brackets
    page.keyboard.press("Shift+Enter")


def run_cells_in_order(page, n: int) -> None:
    """Run the first ``n`` cells one after the other, each once the previous one has finished."""
    from playwright.sync_api import expect

    for i in range(n):
        run_cell(page, i)
        expect(page.locator(".jp-Cell").nth(i).locator(".jp-InputPrompt")).to_contain_text(f"[{i + 1}]",
                                                                                          timeout=60_000)
