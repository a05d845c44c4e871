"""Reports of a session: one self-contained HTML page, JSON in the card schema, SARIF 2.1.0 that validates
against the OASIS schema, with rules carrying the standards ids and results located at notebook cells."""

from __future__ import annotations

import json
from pathlib import Path

import html5lib
import numpy as np
import pytest
from conftest import assert_valid_sarif, card_bundles, run
from IPython.core.error import UsageError
from sklearn.linear_model import LogisticRegression

import mlsec_jupyter as mj
from mlsec_jupyter.findings import CheckStatus, Finding, RiskCard, Severity
from mlsec_jupyter.reports import cards_in_notebook, cell_start_lines, locate, sarif_report
from mlsec_jupyter.standards import STANDARDS

PAYLOAD = "<script>alert(1)</script><img src=x onerror=alert(2)>"
EVIL = b"cos\nsystem\n(S'touch pwned'\ntR."  # os.system("touch pwned"), never loaded


@pytest.fixture(scope="module")
def cards():
    """Real cards: poisoned data, a fitted model, a card with payload strings and an unfinished check."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] > 0).astype(int)
    X, y = np.vstack([X, X[:12]]), np.r_[y, 1 - y[:12]]
    data = mj.scan_data(X, y, name="X_train")
    model = mj.scan_model(LogisticRegression().fit(X, y), X, y, X[:60], y[:60], name="clf")
    odd = RiskCard(PAYLOAD)
    run_ = odd.expect("robustness.evasion", PAYLOAD)
    odd.finish_run(run_, CheckStatus.TIMED_OUT, message="stopped at 30 s")
    odd.add([Finding("data.outliers", Severity.HIGH, PAYLOAD, summary=PAYLOAD, recommendation=PAYLOAD,
                     metrics={PAYLOAD: 1.0, "rows": [1, 2]}, target=PAYLOAD)])
    return [data, model, odd]


def _findings(cards):
    return [f for c in cards for f in c.findings]


def test_html_report_is_one_self_contained_page_with_every_finding(cards, tmp_path):
    path = mj.report(tmp_path / "report.html", cards=cards)
    page = path.read_text(encoding="utf-8")
    doc = html5lib.parse(page, namespaceHTMLElements=False)
    assert doc.findall(".//script") == [] and doc.findall(".//link") == [] and doc.findall(".//iframe") == []
    for element in doc.iter():
        for name, value in element.attrib.items():
            assert not name.lower().startswith("on"), (element.tag, name)
            if name in ("src", "href"):
                assert value.startswith("#") or value.startswith("data:"), (element.tag, value)
    text = "".join(doc.itertext())
    for f in _findings(cards):
        assert f.title in text
    assert PAYLOAD in text  # shown as text, never as markup
    summary_rows = doc.findall(".//table")[0].findall(".//tr")
    assert len(summary_rows) - 1 == sum(f.severity > Severity.INFO for f in _findings(cards))
    assert "did not finish normally" in text  # the timed-out check is not passed off as clean
    assert "AML.T0020" in text and "ML02:2023" in text


def test_json_report_holds_the_cards_in_the_card_schema(cards, tmp_path):
    path = mj.report(tmp_path / "report.json", cards=cards)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["version"] == 1 and data["generator"]["name"] == "mlsec-jupyter"
    assert [c["card_id"] for c in data["cards"]] == [c.card_id for c in cards]
    for saved, card in zip(data["cards"], cards):
        saved.pop("location")
        assert saved == card.to_dict()
        assert RiskCard.from_dict(saved).to_dict() == card.to_dict()
    counts = data["summary"]["by_severity"]
    assert sum(counts.values()) == len(_findings(cards)) == data["summary"]["findings"]
    assert data["summary"]["checks_not_finished"] == 1


def test_sarif_report_validates_with_one_rule_per_check_and_one_result_per_finding(cards, tmp_path):
    path = mj.report(tmp_path / "report.sarif", cards=cards)
    log = json.loads(path.read_text(encoding="utf-8"))
    assert_valid_sarif(log)
    run_ = log["runs"][0]
    rules = {r["id"]: r for r in run_["tool"]["driver"]["rules"]}
    assert set(STANDARDS) <= set(rules)
    for check, std in STANDARDS.items():
        props = rules[check]["properties"]
        assert props["mitre-atlas"] == list(std.atlas) and props["owasp-ml-top10"] == list(std.owasp)
        assert props["nist-ai-rmf"] == list(std.nist) and set(std.ids()) <= set(props["tags"])
    results = run_["results"]
    assert len(results) == len(_findings(cards))
    levels = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "none"}
    for result, f in zip(results, _findings(cards)):
        assert result["ruleId"] == f.check and result["level"] == levels[f.severity.label]
        assert (result.get("kind") == "informational") == (f.severity is Severity.INFO)
        assert f.title in result["message"]["text"]
    assert rules["data.duplicates"]["properties"]["security-severity"] == "8.0"  # its worst finding is high
    assert "security-severity" not in rules["privacy.dp_budget"]["properties"]  # no finding of it here
    (note,) = run_["invocations"][0]["toolExecutionNotifications"]
    assert note["associatedRule"] == {"id": "robustness.evasion", "index": list(rules).index("robustness.evasion")}
    assert "timed out" in note["message"]["text"] and run_["invocations"][0]["executionSuccessful"] is True
    # fingerprints are stable from run to run and distinct between findings
    again = sarif_report(locate(cards, None))["runs"][0]["results"]
    prints = [r["partialFingerprints"]["mlsecFinding/v1"] for r in results]
    assert prints == [r["partialFingerprints"]["mlsecFinding/v1"] for r in again]


@pytest.mark.kernel
def test_sarif_results_point_at_the_cell_line_in_the_saved_notebook(executed_notebook_path, tmp_path, monkeypatch):
    saved = executed_notebook_path("01-quickstart.ipynb")
    monkeypatch.chdir(saved.parent)
    text = saved.read_text(encoding="utf-8")
    nb = json.loads(text)
    entries, problems = cards_in_notebook(nb, text)
    assert problems == [] and len(entries) == 3
    log = sarif_report(entries, saved.name)
    assert_valid_sarif(log)
    lines = text.splitlines()
    starts = cell_start_lines(text)
    for result in log["runs"][0]["results"]:
        (location,) = result["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"] == {"uri": "01-quickstart.ipynb", "uriBaseId": "%SRCROOT%"}
        line = physical["region"]["startLine"]
        index = starts.index(line)
        assert '"cell_type": "code"' in lines[line - 1]
        assert location["logicalLocations"][0]["name"].startswith(f"cell {index + 1}")
        card_ids = [o["data"]["application/vnd.mlsec.riskcard+json"]["card_id"]
                    for o in nb["cells"][index]["outputs"] if "data" in o
                    and "application/vnd.mlsec.riskcard+json" in o["data"]]
        assert result["properties"]["card_id"] in card_ids


def test_report_magic_writes_the_cards_of_each_cells_latest_run(ip, tmp_path):
    load = "import numpy as np\nfrom sklearn.datasets import load_iris\nX, y = load_iris(return_X_y=True)"
    _, outputs, _, _ = run(ip, load, "load")
    (data_card,) = card_bundles(outputs)
    fit = "from sklearn.linear_model import LogisticRegression\nm = LogisticRegression(max_iter=500).fit(X, y)"
    run(ip, fit, "fit")
    run(ip, "X = np.vstack([X, X[:10]]); y = np.r_[y, (y[:10] + 1) % 3]", "poison")
    _, outputs, _, _ = run(ip, fit, "fit")
    (latest,) = card_bundles(outputs)
    _, _, out, _ = run(ip, "%mlsec report session.sarif", "report")
    assert "wrote session.sarif (sarif): 2 card(s)" in out and "high" in out
    log = json.loads(Path("session.sarif").read_text(encoding="utf-8"))
    assert_valid_sarif(log)
    ids = [r["properties"]["card_id"] for r in log["runs"][0]["results"]]
    assert sorted(set(ids), key=ids.index) == [data_card["card_id"], latest["card_id"]]  # not the fit's first run
    _, _, out, _ = run(ip, "%mlsec report", "report")
    assert "wrote mlsec-report.html (html)" in out
    page = Path("mlsec-report.html").read_text(encoding="utf-8")
    assert "Changed since the last run" in page and "Duplicates with conflicting labels" in page
    # the load cell edited so that it loads nothing: its old card leaves the report
    run(ip, "X = X[:100]", "load")
    run(ip, "%mlsec report again.json", "report")
    cards = json.loads(Path("again.json").read_text(encoding="utf-8"))["cards"]
    assert [c["card_id"] for c in cards] == [latest["card_id"]]


def test_a_file_blocked_before_its_cell_ran_is_in_the_report(ip):
    Path("evil.pkl").write_bytes(EVIL)
    ip.run_line_magic("mlsec", "config file_policy=block")
    result, _, _, _ = run(ip, "import pickle\nobj = pickle.load(open('evil.pkl', 'rb'))")
    assert not result.success and not Path("pwned").exists()
    run(ip, "%mlsec report blocked.json")
    data = json.loads(Path("blocked.json").read_text(encoding="utf-8"))
    (card,) = data["cards"]
    (finding,) = [f for f in card["findings"] if f["check"] == "supply.pickle"]
    assert finding["severity"] == "critical" and "os.system" in finding["metrics"]["unsafe_globals"]


def test_report_errors_say_what_to_do(ip, tmp_path):
    with pytest.raises(ValueError, match=r"name the file \.html, \.json or \.sarif"):
        mj.report(tmp_path / "report.txt", cards=[])
    with pytest.raises(ValueError, match="expected one of: html, json, sarif"):
        mj.report(tmp_path / "r.html", format="pdf", cards=[])
    with pytest.raises(ValueError, match="folder .* does not exist"):
        mj.report(tmp_path / "missing" / "r.html", cards=[])
    with pytest.raises(UsageError, match="name the file"):
        ip.run_line_magic("mlsec", "report findings.txt")
    ip.run_line_magic("unload_ext", "mlsec_jupyter")
    with pytest.raises(ValueError, match="load the extension with %load_ext mlsec_jupyter first"):
        mj.report(tmp_path / "r.html")


def test_sarif_uris_of_odd_notebook_names_are_encoded(cards, tmp_path, monkeypatch):
    """Review: a relative path with spaces, # or non-ASCII letters was written as it is (not a URI)."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "odd dir ü"
    folder.mkdir()
    name = Path("odd dir ü") / "my note #1.ipynb"
    log = sarif_report(locate(cards, name), name)
    assert_valid_sarif(log)
    uri = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "odd%20dir%20%C3%BC/my%20note%20%231.ipynb"


def test_reports_of_an_incomplete_scan_say_so_in_every_format(cards, tmp_path):
    from mlsec_jupyter.reports import write_report

    problem = "cell 4 raised <ValueError>: broken; the cells after it were not run."
    entries = locate(cards, None)
    page = write_report(tmp_path / "r.html", entries, problem=problem).read_text(encoding="utf-8")
    assert "The scan did not complete:" in page and "&lt;ValueError&gt;" in page
    data = json.loads(write_report(tmp_path / "r.json", entries, problem=problem).read_text(encoding="utf-8"))
    assert data["complete"] is False and data["problem"] == problem
    log = json.loads(write_report(tmp_path / "r.sarif", entries, problem=problem).read_text(encoding="utf-8"))
    assert_valid_sarif(log)
    invocation = log["runs"][0]["invocations"][0]
    assert invocation["executionSuccessful"] is False
    assert invocation["toolExecutionNotifications"][0]["message"]["text"] == problem


def test_malformed_saved_cards_are_read_safely_or_named(tmp_path):
    """Review: odd values in a saved card (an untrusted notebook) crashed the reports."""
    good = {"check": "data.outliers", "severity": "high", "title": "T", "metrics": {}}
    cards = [
        {"card_id": "a", "subject": "s", "status": "done", "execution_count": float("nan"),
         "findings": [{**good, "title": 5, "target": None, "summary": None, "references": "x"}],
         "changes": {"heading": "h", "new": [{"check": "x"}], "metrics": [{"metric": "m"}], "lines": 3},
         "checks": [{"check": "data.outliers", "status": "done", "seconds": "fast", "progress": float("inf")}]},
        {"card_id": "b", "subject": "s", "status": "done", "findings": [{**good, "check": 7}]},
        {"card_id": "c", "subject": "s", "findings": "none"},
        {"card_id": "d", "subject": "s", "findings": [{"title": "no check"}]},
        {"card_id": "e", "subject": "s", "findings": ["a string, not a finding"]},
        {"card_id": "f", "subject": "s", "findings": [{**good, "indices": [float("inf")]}]},
    ]
    nb = {"cells": [{"cell_type": "code", "source": "", "metadata": {}, "execution_count": 1,
                     "outputs": [{"output_type": "display_data", "metadata": {},
                                  "data": {"application/vnd.mlsec.riskcard+json": c}}]} for c in cards]}
    entries, problems = cards_in_notebook(nb)
    assert [e.card.card_id for e in entries] == ["a", "b"]
    assert len(problems) == 4 and all("could not be read" in p for p in problems)
    a = entries[0].card
    assert a.execution_count is None and a.findings[0].title == "5" and a.findings[0].target == ""
    assert a.changes.new == [] and a.changes.metrics == [] and a.runs[0].seconds is None
    assert entries[1].card.findings[0].check == "7"
    from mlsec_jupyter.reports import render

    for kind in ("html", "json", "sarif"):
        assert render(entries, kind)
    assert_valid_sarif(json.loads(render(entries, "sarif")))


def test_without_cell_ids_the_report_keeps_the_latest_run_of_each_cell_source(ip):
    """Review: a front end that sends no cell ids (terminal IPython, nbclient) got every re-run reported."""
    load = "from sklearn.datasets import load_iris\nX, y = load_iris(return_X_y=True)"
    for _ in range(3):
        _, outputs, _, _ = run(ip, load)
    (last,) = card_bundles(outputs)
    assert "changes" not in last  # runs are compared only by cell id
    run(ip, "%mlsec report plain.json")
    cards = json.loads(Path("plain.json").read_text(encoding="utf-8"))["cards"]
    assert [c["card_id"] for c in cards] == [last["card_id"]]
