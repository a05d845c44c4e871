"""Security rows of notes/reliability.md through the real paths.

* S1: injection payloads in the user's own objects (column and index names, class labels, a model's class
  name and repr, a model file's path), through a real cell, into the card: html5lib finds no script, event
  handler, commandlinker attribute, form or URL, and the payload is shown as text. (tests/test_render.py
  puts the whole corpus into every field of a card; tests/test_faults.py puts it into exception text.)
* S2: the lab extension never writes HTML from strings (no ``innerHTML`` and kin in its sources).
* S4: canary values in the rows never reach the saved notebook (widget state included), reports, the
  ledger, the audit log or any other file: only aggregates, hashes and names do.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import card_bundles, run
from test_render import assert_safe, text_of

ROOT = Path(__file__).resolve().parents[1]

PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a data-commandlinker-command="notebook:run-all">x</a>',
    "</td></tr></table><script>x</script>",
    "<svg onload=alert(1)>\u202eevil\u200b",
    "<" * 50_000 + "x" * 50_000,  # 100 KB
]
#: payloads that can be a file name (no "/", short)
PATH_PAYLOADS = ["<img src=x onerror=alert(1)>", '<a data-commandlinker-command="notebook:run-all">x<a>',
                 "<svg onload=alert(1)>\u202eevil\u200b"]

DATA = "import numpy as np, pandas as pd\nrng = np.random.default_rng(0)\n"
#: where the payload ``P`` goes, and whether the card shows it (an index name is not shown)
SOURCES = {
    "column name": (DATA + "frame = pd.DataFrame(rng.normal(size=(300, 3)), columns=['a', P, 'c'])\n"
                    "frame.iloc[:40, 1] = np.nan\nX = pd.read_csv(pd.io.common.StringIO(frame.to_csv(index=False)))",
                    True),
    "index name": (DATA + "frame = pd.DataFrame(rng.normal(size=(300, 3)), index=pd.Index(range(300), name=P))\n"
                   "X = pd.read_csv(pd.io.common.StringIO(frame.to_csv()), index_col=0)", False),
    "class label": (DATA + "from sklearn.datasets import load_iris\nfrom sklearn.linear_model import LogisticRegression\n"
                    "X, y0 = load_iris(return_X_y=True)\ny = np.where(y0 == 0, P, 'other').astype(object)\n"
                    "y[:2] = 'rare ' + P\nclf = LogisticRegression(max_iter=300).fit(X, y)", True),
    "model class and repr": ("from sklearn.datasets import load_iris\nfrom sklearn.linear_model import LogisticRegression\n"
                             "X, y = load_iris(return_X_y=True)\n"
                             "Odd = type(P, (LogisticRegression,), {'__repr__': lambda self: P})\n"
                             "clf = Odd(max_iter=300).fit(X, y)", True),
}


def _check_cards(outputs, payload: str, shown: bool) -> None:
    cards = card_bundles(outputs)
    assert cards and all(c["status"] == "done" for c in cards)
    pages = [o.data["text/html"] for o in outputs if "text/html" in o.data]
    assert len(pages) == len(cards)
    visible = ""
    for page in pages:
        root = assert_safe(page)  # no script/on*/data-*/form/href/src; one scoped style; no bidi characters
        lowered = page.lower()
        assert "<script" not in lowered and "<img" not in lowered and "<svg" not in lowered and "<a " not in lowered
        visible += text_of(root)
    if shown:  # the payload did reach the card, as visible text
        head = re.sub(r"[\u200b\u202e]", "", payload)[:20]
        assert head in visible, head


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: repr(p[:12]))
@pytest.mark.parametrize("source", list(SOURCES))
def test_payloads_in_the_users_objects_stay_text_on_the_card(ip, source, payload):
    """S1, through a real cell."""
    code, shown = SOURCES[source]
    ip.run_line_magic("mlsec", "config time_budget=8")
    ip.user_ns["P"] = payload
    result, outputs, out, err = run(ip, code)
    assert result.success, err
    _check_cards(outputs, payload, shown)


@pytest.mark.parametrize("payload", PATH_PAYLOADS, ids=lambda p: repr(p[:12]))
def test_payloads_in_a_model_files_path_stay_text_on_the_card(ip, payload):
    """S1: the path is scanned before the cell runs (it is a literal in the cell), then loaded."""
    ip.user_ns["P"] = payload
    result, *_ = run(ip, "import joblib\nfrom sklearn.linear_model import LogisticRegression\n"
                         "joblib.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), P + '.joblib');")
    assert result.success
    result, outputs, out, err = run(ip, f"m = joblib.load({payload + '.joblib'!r})")
    assert result.success, err
    _check_cards(outputs, payload, True)
    assert any(payload[:10] in json.dumps(c, ensure_ascii=False) for c in card_bundles(outputs))


# -- S2 ----------------------------------------------------------------------------------------------------

HTML_SINKS = re.compile(r"\b(innerHTML|outerHTML|insertAdjacentHTML|dangerouslySetInnerHTML|srcdoc|document\.write"
                        r"|createContextualFragment|DOMParser|eval\s*\(|new\s+Function\s*\(|setAttribute\s*\(\s*['\"]on)")


def _code_only(source: str) -> str:
    """TypeScript without its comments (they may name the sinks they avoid)."""
    source = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    return re.sub(r"(?m)(^|[^:'\"])//.*$", r"\1", source)


def test_lab_extension_never_writes_html_from_strings():
    """S2: every string reaches the page through textContent and element creation. The lab extension opens
    no comm (it reads card JSON from outputs; crafted cards are drawn safely: tests/ui); the panel's
    ipywidgets HTML values are escaped (tests/test_panel.py)."""
    sources = sorted((ROOT / "labextension" / "src").glob("*.ts*"))
    assert len(sources) >= 3
    found = {path.name: HTML_SINKS.findall(_code_only(path.read_text())) for path in sources}
    assert not any(found.values()), found
    assert not [p.name for p in sources if re.search(r"registerCommTarget|createComm", p.read_text())]
    assert "textContent" in _code_only((ROOT / "labextension" / "src" / "card.ts").read_text())


# -- S4 ----------------------------------------------------------------------------------------------------

CANARY_TEXT = "CANARY-7f3a9c"
CANARY_NUMBER = 918273.645
CANARY_CELLS = [
    "%load_ext mlsec_jupyter",
    "import numpy as np, pandas as pd, torch\nfrom sklearn.linear_model import LogisticRegression\n"
    "from sklearn.model_selection import train_test_split\nrng = np.random.default_rng(0)\n"
    "frame = pd.DataFrame(rng.normal(size=(400, 4)), columns=['a', 'b', 'c', 'd'])\n"
    "frame.loc[:5, 'a'] = 918000 + 273.645  # canary rows (built here, so the source holds no canary)\n"
    "frame['note'] = ['CANARY-' + '7f3a9c-' + str(i) for i in range(400)]\n"
    "labels = (frame['b'] > 0).astype(int)\n"
    "X = pd.read_csv(pd.io.common.StringIO(frame.to_csv(index=False)))",
    "X_tr, X_te, y_tr, y_te = train_test_split(X[['a', 'b', 'c', 'd']], labels, random_state=0)\n"
    "clf = LogisticRegression(max_iter=300).fit(X_tr, y_tr)",
    "T = torch.tensor(X[['a', 'b', 'c', 'd']].to_numpy(), dtype=torch.float32)\n"
    "%mlsec budget T eps=3 delta=1e-5\n%mlsec sign X\n%mlsec scan X labels",
    "%mlsec wait",
    "%mlsec panel",
    "%mlsec report report.html\n%mlsec report report.json\n%mlsec report report.sarif",
]


def test_canary_rows_never_leave_the_kernel(tmp_path):
    """S4: after cards with findings on the canary rows, a budget, a signed manifest, the panel and
    three reports, no file in the folder (the saved notebook and its widget state included) holds a
    canary value; the findings about those rows are there (as counts and row indices)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CANARY_CELLS])
    NotebookClient(nb, timeout=300, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.write(nb, tmp_path / "saved.ipynb")

    saved = (tmp_path / "saved.ipynb").read_text()
    assert "application/vnd.jupyter.widget-state+json" in saved, "the panel's widget state was saved"
    assert '"check": "data.outliers"' in saved or "data.outliers" in saved
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.relative_to(tmp_path).as_posix() for p in files}
    assert {"saved.ipynb", "report.html", "report.json", "report.sarif"} <= names, names
    assert any(n.startswith(".mlsec/") for n in names), names  # ledger, audit log, manifest
    number_forms = {f"{CANARY_NUMBER}", f"{CANARY_NUMBER:.1f}", f"{CANARY_NUMBER:.2f}", f"{CANARY_NUMBER:g}",
                    f"{CANARY_NUMBER:,.1f}", f"{CANARY_NUMBER:.3g}", f"{CANARY_NUMBER:.4g}", "918,274", "9.18e+05",
                    "9.183e+05", "918273.6", "918274"}
    for path in files:
        text = path.read_bytes().decode("utf-8", "replace")
        assert CANARY_TEXT not in text, path.name
        leaked = [form for form in number_forms if form in text]
        assert not leaked, (path.name, leaked)
    report = json.loads((tmp_path / "report.json").read_text())
    assert "outlying rows" in json.dumps(report)  # the canary rows were found, and only described
