"""``mlsec-jupyter scan NOTEBOOK.ipynb``: executes the notebook with the extension loaded, writes reports,
exits 1 on findings at or above --fail-on and 2 when the scan cannot be completed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import html5lib
import nbformat
import pytest
from conftest import NOTEBOOKS, assert_valid_sarif, cards_in

from mlsec_jupyter.cli import main

pytestmark = pytest.mark.kernel
COMMAND = Path(sys.executable).with_name("mlsec-jupyter")


def _saved_findings(path: Path) -> list[dict]:
    nb = nbformat.read(path, as_version=4)
    seen, found = set(), []
    for cell in nb.cells:
        for card in cards_in(cell) if cell.cell_type == "code" else []:
            if card["card_id"] not in seen:
                seen.add(card["card_id"])
                found += card["findings"]
    return found


def _scan(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(COMMAND), "scan", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_scan_executes_the_quickstart_writes_reports_and_fails_on_high(tmp_path):
    notebook = tmp_path / "01-quickstart.ipynb"
    notebook.write_bytes((NOTEBOOKS / "01-quickstart.ipynb").read_bytes())
    done = _scan(notebook.name, "--sarif", "out.sarif", "--html", "out.html", "--json", "out.json",
                 "--output", "ran.ipynb", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    progress = [line for line in done.stderr.splitlines() if re.match(r"\[\d+/\d+\] ", line)]
    assert len(progress) == 7 and progress[0].startswith("[1/7] cell 2:")
    assert "card(s): clf (sklearn) fitted on X_train, y_train" in done.stderr
    assert "finding(s) at or above high: exit 1" in done.stdout
    findings = _saved_findings(tmp_path / "ran.ipynb")
    assert any(f["severity"] == "high" for f in findings)
    log = json.loads((tmp_path / "out.sarif").read_text(encoding="utf-8"))
    assert_valid_sarif(log)
    results = log["runs"][0]["results"]
    assert len(results) == len(findings)
    assert {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results} == {notebook.name}
    source_lines = notebook.read_text(encoding="utf-8").splitlines()
    fit_line = next(r for r in results if r["properties"]["subject"].startswith("clf"))
    start = fit_line["locations"][0]["physicalLocation"]["region"]["startLine"]
    # the line in the notebook file as committed (no outputs), at the fit cell
    following = "\n".join(source_lines[start - 1:start + 12])
    assert '"cell_type": "code"' in source_lines[start - 1] and "clf.fit(X_train, y_train)" in following
    text = "".join(html5lib.parse((tmp_path / "out.html").read_text(encoding="utf-8"),
                                  namespaceHTMLElements=False).itertext())
    assert all(f["title"] in text for f in findings)
    data = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert sum(len(c["findings"]) for c in data["cards"]) == len(findings)
    # the saved cards, read back without running anything, give the same verdicts
    for threshold, code in (("high", 1), ("critical", 0), ("never", 0), ("info", 1)):
        assert main(["scan", str(tmp_path / "ran.ipynb"), "--no-execute", "--fail-on", threshold]) == code


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_no_execute_reports_every_saved_finding_of_each_example(name, executed_notebook_path, tmp_path, capsys):
    saved = executed_notebook_path(name)
    findings = _saved_findings(saved)
    worst = max(("info", "low", "medium", "high", "critical").index(f["severity"]) for f in findings)
    code = main(["scan", str(saved), "--no-execute", "--sarif", str(tmp_path / "r.sarif"),
                 "--html", str(tmp_path / "r.html"), "--fail-on", "medium"])
    assert code == (1 if worst >= 2 else 0)
    log = json.loads((tmp_path / "r.sarif").read_text(encoding="utf-8"))
    assert_valid_sarif(log)
    assert len(log["runs"][0]["results"]) == len(findings)
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    text = "".join(html5lib.parse(page, namespaceHTMLElements=False).itertext())
    assert all(f["title"] in text for f in findings)
    assert "<script" not in page.lower()
    out = capsys.readouterr().out
    assert f"{saved.name}: " in out and "card(s)" in out


def test_a_cell_that_raises_stops_the_scan_with_exit_2_and_keeps_what_was_found(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from sklearn.datasets import load_iris\nX, y = load_iris(return_X_y=True)"),
                nbformat.v4.new_code_cell("raise ValueError('broken on purpose')"),
                nbformat.v4.new_code_cell("never_run = 1")]
    nbformat.write(nb, tmp_path / "broken.ipynb")
    done = _scan("broken.ipynb", "--json", "partial.json", "--fail-on", "never", cwd=tmp_path)
    assert done.returncode == 2
    assert "cell 2 raised ValueError: broken on purpose; the cells after it were not run." in done.stderr
    data = json.loads((tmp_path / "partial.json").read_text(encoding="utf-8"))
    (card,) = data["cards"]
    assert card["subject"].startswith("X, y") and card["status"] == "done"
    assert card["location"]["cell_index"] == 0


def test_bad_input_exits_2_with_a_clear_message(tmp_path, capsys):
    assert main(["scan", str(tmp_path / "missing.ipynb")]) == 2
    assert "is not a file" in capsys.readouterr().err
    (tmp_path / "bad.ipynb").write_text("{not json", encoding="utf-8")
    assert main(["scan", str(tmp_path / "bad.ipynb"), "--no-execute"]) == 2
    assert "is not a notebook: its JSON does not parse" in capsys.readouterr().err
    assert main(["scan", str(tmp_path / "bad.ipynb"), "--config", "time_budget"]) == 2
    assert "--config takes KEY=VALUE" in capsys.readouterr().err
    empty = nbformat.v4.new_notebook()
    nbformat.write(empty, tmp_path / "empty.ipynb")
    assert main(["scan", str(tmp_path / "empty.ipynb"), "--no-execute"]) == 0
    assert "holds no saved risk cards" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["scan", str(tmp_path / "empty.ipynb"), "--fail-on", "severe"])


def test_a_bad_setting_stops_before_any_cell_runs_and_a_good_one_runs_every_cell(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("open('first', 'w').close()"),
                nbformat.v4.new_code_cell("open('last', 'w').close()"), nbformat.v4.new_markdown_cell("# the end")]
    nbformat.write(nb, tmp_path / "n.ipynb")
    done = _scan("n.ipynb", "--config", "time_budget=soon", cwd=tmp_path)
    assert done.returncode == 2 and "time_budget must be a number, got 'soon'" in done.stderr
    assert not (tmp_path / "first").exists()
    # review: the setup cell once replaced the notebook's last cell, which then never ran
    done = _scan("n.ipynb", "--config", "time_budget=20", "--output", "ran.ipynb", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "first").exists() and (tmp_path / "last").exists()
    assert "[2/2] cell 2:" in done.stderr and "[3/" not in done.stderr
    ran = nbformat.read(tmp_path / "ran.ipynb", as_version=4)
    assert [c.source for c in ran.cells] == [c.source for c in nb.cells]
    assert [c.get("execution_count") for c in ran.cells] == [1, 2, None]  # the setup cells are not counted


def test_a_missing_kernel_and_a_cell_timeout_exit_2_with_what_was_found(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "no-such-kernel-here", "display_name": "x", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, tmp_path / "k.ipynb")
    done = _scan("k.ipynb", "--sarif", "k.sarif", cwd=tmp_path)
    assert done.returncode == 2 and "there is no 'no-such-kernel-here' kernel" in done.stderr
    assert "Traceback" not in done.stderr
    log = json.loads((tmp_path / "k.sarif").read_text(encoding="utf-8"))  # a CI upload step still finds it
    assert_valid_sarif(log)
    assert log["runs"][0]["invocations"][0]["executionSuccessful"] is False and log["runs"][0]["results"] == []
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from sklearn.datasets import load_iris\nX, y = load_iris(return_X_y=True)"),
                nbformat.v4.new_code_cell("import time\ntime.sleep(60)"), nbformat.v4.new_code_cell("after = 1")]
    nbformat.write(nb, tmp_path / "slow.ipynb")
    done = _scan("slow.ipynb", "--timeout", "8", "--json", "partial.json", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "cell 2 ran longer than --timeout 8 s and was interrupted" in done.stderr
    data = json.loads((tmp_path / "partial.json").read_text(encoding="utf-8"))
    assert data["complete"] is False and [c["subject"] for c in data["cards"]] == ["X, y"]
    assert data["cards"][0]["status"] == "done"


SLOW_CHECK = """import time
from mlsec_jupyter.checks.registry import register_check
from mlsec_jupyter.findings import Finding

@register_check("test.slow", applies_to="dataset", title="Slow", force=True)
def slow(*, X, budget):
    end = time.monotonic() + 20
    while time.monotonic() < end:
        budget.checkpoint()
        time.sleep(0.05)
    return [Finding("test.slow", "info", "slow done")]"""


def test_checks_still_running_after_the_final_wait_make_the_scan_incomplete(tmp_path):
    """Review: the scan said "complete" and exited 0 while a card was still running."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SLOW_CHECK),
                nbformat.v4.new_code_cell("from sklearn.datasets import load_iris\nX, y = load_iris(return_X_y=True)")]
    nbformat.write(nb, tmp_path / "slow.ipynb")
    done = _scan("slow.ipynb", "--timeout", "3", "--json", "r.json", "--fail-on", "never", cwd=tmp_path)
    assert done.returncode == 2 and "still running after the final wait of 3 s" in done.stderr, done.stderr
    data = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert data["complete"] is False and data["summary"]["cards_still_running"] == 1
