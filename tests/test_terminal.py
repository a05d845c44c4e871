"""Outside a notebook front end (notes/reliability.md R13): terminal IPython shows the text card and exits 0;
a headless ``jupyter nbconvert --execute`` exits 0 and saves finished cards with their text fallback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import cards_in

pytestmark = pytest.mark.kernel

BIN = Path(sys.executable).parent
LINES = ["%load_ext mlsec_jupyter", "from sklearn.datasets import load_iris",
         "from sklearn.linear_model import LogisticRegression",
         "X, y = load_iris(return_X_y=True)", "clf = LogisticRegression(max_iter=300).fit(X, y)"]


def test_terminal_ipython_prints_text_cards_and_exits_cleanly(tmp_path):
    """R13, terminal: one line per statement, as typed at the prompt."""
    done = subprocess.run([str(BIN / "ipython"), "--simple-prompt", "--no-banner", "--colors=NoColor"],
                          input="\n".join(LINES + ["exit()"]) + "\n", capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Risk card: X, y (done" in out and "Risk card: clf (sklearn) fitted on X, y (done" in out, out
    assert "[LOW] data.duplicates: Exact duplicate rows" in out
    for leak in ("<div", "<table", "Traceback", "Error in callback"):
        assert leak not in out + done.stderr, leak


def test_headless_nbconvert_saves_finished_cards_with_a_text_fallback(tmp_path):
    """R13, nbconvert: the saved notebook holds each card finished, as HTML and as text (a headless run ends
    with ``%mlsec wait``, README "Magics": nothing listens to the kernel after the last cell)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(LINES[0]),
                                         nbformat.v4.new_code_cell("\n".join(LINES[1:4])),
                                         nbformat.v4.new_code_cell(LINES[4]),
                                         nbformat.v4.new_code_cell("%mlsec wait")])  # as the README asks
    nbformat.write(nb, tmp_path / "run.ipynb")
    done = subprocess.run([str(BIN / "jupyter-nbconvert"), "--to", "notebook", "--execute", "run.ipynb",
                           "--output", "out.ipynb"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    saved = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    cards = [card for cell in saved.cells for card in cards_in(cell)]
    assert {c["subject"] for c in cards} == {"X, y", "clf (sklearn) fitted on X, y"} and all(c["status"] == "done" for c in cards), cards
    outputs = [o for cell in saved.cells for o in cell.outputs]
    texts = [o.data["text/plain"] for o in outputs if "text/plain" in o.get("data", {})]
    assert any(t.startswith("Risk card: X, y (done") for t in texts), texts
    assert not [o for o in outputs if o.output_type == "error" or "Traceback" in o.get("text", "")]
