"""Fixtures of the browser tests: a real JupyterLab server and Debian's Chromium (notes/packaging.md,
recipe A)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from uihelp import ARGS, CHROMIUM, free_port, get_json, until


def _server(tmp_path: Path, app: str, extra: list[str]):
    """Start ``python -m APP`` (jupyterlab or notebook) on a free port; yields (url, root folder); stops it by
    its own PID."""
    root, settings = tmp_path / "nb", tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    root.mkdir()
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    port = free_port()
    log = open(tmp_path / f"{app}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", app, "--no-browser", "--allow-root", "--ServerApp.token=",
         "--ServerApp.password=", f"--port={port}", "--ip=127.0.0.1", "--ServerApp.port_retries=0",
         f"--ServerApp.root_dir={root}", *extra],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return get_json(f"{url}/api/status")
        except OSError:
            return None

    try:
        until(up, 60, "the Jupyter server")
        yield url, root
    finally:
        proc.terminate()  # this server only (its own PID); kernels it started get the signal from it
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


@pytest.fixture
def lab(tmp_path: Path):
    """A JupyterLab server on a free port and its root folder."""
    yield from _server(tmp_path, "jupyterlab", [
        f"--LabApp.user_settings_dir={tmp_path / 'settings'}", f"--LabApp.workspaces_dir={tmp_path / 'ws'}",
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"])


@pytest.fixture
def notebook7(tmp_path: Path):
    """A Notebook 7 server on a free port and its root folder (skipped where the package is missing)."""
    pytest.importorskip("notebook")
    yield from _server(tmp_path, "notebook", [])


@pytest.fixture
def page():
    """A Chromium page; ``page.dialogs`` collects any alert/confirm/prompt, ``page.errors`` page errors."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        pg = browser.new_page(viewport={"width": 1300, "height": 900})
        pg.dialogs, pg.errors = [], []
        pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
        pg.on("pageerror", lambda e: pg.errors.append(str(e)))
        yield pg
        browser.close()
