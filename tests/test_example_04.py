"""example-notebooks/04-model-files.ipynb, run by nbclient: what a user sees when a model file would run code."""

from __future__ import annotations

import pytest
from conftest import cards_in, cell_with

from mlsec_jupyter.findings import CARD_MIME

pytestmark = pytest.mark.kernel

NB = "04-model-files.ipynb"
#: ``os.system`` as the unpickler would import it: ``posix.system`` on Linux/macOS, ``nt.system`` on Windows.
SYSTEM = {"posix.system", "nt.system", "os.system"}
PRE_RUN = "model file(s) scanned before this cell runs: "


def _text(cell, name: str = "stdout") -> str:
    return "".join(o["text"] for o in cell.get("outputs", []) if o["output_type"] == "stream" and o["name"] == name)


def _pickle_finding(cell) -> tuple[dict, dict]:
    """The one card of ``cell`` and its one supply.pickle finding."""
    (card,) = cards_in(cell)
    (finding,) = card["findings"]
    assert finding["check"] == "supply.pickle"
    assert card["status"] == "done"
    return card, finding


def _assert_names_os_system(finding: dict) -> str:
    unsafe = finding["metrics"]["unsafe_globals"]
    assert len(unsafe) == 1 and unsafe[0] in SYSTEM, unsafe
    assert finding["severity"] == "critical"
    assert finding["metrics"]["verdict"] == "unsafe"
    assert unsafe[0] in finding["title"]
    return unsafe[0]


def test_the_honest_model_file_is_scanned_before_loading_and_called_safe(executed_notebook):
    cell = cell_with(executed_notebook(NB), "clf_loaded = joblib.load(clf_path)")
    card, finding = _pickle_finding(cell)
    assert card["subject"].startswith(PRE_RUN) and card["subject"].endswith("clf.joblib")
    assert finding["severity"] == "info"
    assert finding["metrics"]["verdict"] == "safe"
    assert finding["metrics"]["unsafe_globals"] == [] and finding["metrics"]["custom_globals"] == []
    assert "sklearn.linear_model._logistic.LogisticRegression" in finding["metrics"]["globals"]
    assert finding["title"].startswith("Model file is safe to load")
    assert "same predictions as the original: True" in _text(cell)


def test_the_payload_file_is_written_without_running_and_its_imports_listed(executed_notebook):
    nb = executed_notebook(NB)
    assert "marker exists so far: False" in _text(cell_with(nb, "class Payload:"))
    imports = _text(cell_with(nb, "pickletools.genops"))
    assert "imports posix.system" in imports or "imports nt.system" in imports
    assert "imports sklearn.linear_model._logistic.LogisticRegression" in imports


def test_the_poisoned_load_is_shown_a_critical_card_first_and_does_not_run(executed_notebook):
    nb = executed_notebook(NB)
    cell = cell_with(nb, "clf_v2 = joblib.load(evil_path)")
    assert "raises-exception" in cell.metadata.get("tags", [])
    card, finding = _pickle_finding(cell)
    assert card["subject"].startswith(PRE_RUN) and card["subject"].endswith("clf_v2.pkl")
    _assert_names_os_system(finding)
    assert "Do not load this file" in finding["recommendation"]
    # the card comes first, then the error that replaced the cell; the cell's own result never appears
    kinds = ["card" if CARD_MIME in o.get("data", {}) else o["output_type"] for o in cell.outputs]
    stderr = _text(cell, "stderr")
    assert kinds.index("card") < kinds.index("stream")
    assert "mlsec-jupyter blocked this cell before it ran" in stderr
    assert "file_policy=warn" in stderr  # how to override, said where the user looks
    assert "execute_result" not in kinds


def test_the_payload_never_ran(executed_notebook):
    nb = executed_notebook(NB)
    proof = _text(cell_with(nb, "payload_ran = os.path.exists(marker)"))
    assert "payload ran (marker file exists): False" in proof
    assert "clf_v2 defined: False" in proof
    # ... nor later, when torch's restricted unpickler was handed the same file
    torch_cell = cell_with(nb, "torch.load(evil_path)")
    assert "torch refused to load it (UnpicklingError)" in _text(torch_cell)
    assert "payload ran (marker file exists): False" in _text(torch_cell)


def test_plain_pickle_load_of_the_file_is_blocked_too(executed_notebook):
    cell = cell_with(executed_notebook(NB), 'bundle = pickle.load(open(evil_path, "rb"))')
    assert "raises-exception" in cell.metadata.get("tags", [])
    _, finding = _pickle_finding(cell)
    _assert_names_os_system(finding)
    assert "mlsec-jupyter blocked this cell before it ran" in _text(cell, "stderr")


def test_weights_only_torch_load_is_scanned_but_not_blocked(executed_notebook):
    cell = cell_with(executed_notebook(NB), "torch.load(evil_path)")
    card, finding = _pickle_finding(cell)
    assert card["subject"].startswith(PRE_RUN)
    _assert_names_os_system(finding)
    assert "blocked" not in _text(cell, "stderr")
    assert "GLOBAL" in _text(cell)  # torch's own refusal, printed by the cell


def test_scanfile_magic_and_scan_file_api_agree(executed_notebook):
    nb = executed_notebook(NB)
    card, finding = _pickle_finding(cell_with(nb, "%mlsec scanfile $evil_path"))
    assert card["subject"].startswith("model file ") and card["subject"].endswith("clf_v2.pkl")
    name = _assert_names_os_system(finding)
    out = _text(cell_with(nb, "card = mj.scan_file(evil_path)"))
    assert f"critical | Unsafe model file: it calls {name} when loaded" in out
    assert f"unsafe globals: ['{name}']" in out


def test_the_scan_table_separates_weights_from_pickled_objects(executed_notebook):
    out = _text(cell_with(executed_notebook(NB), "torch.save(net.state_dict(), weights_path)"))
    # one line a file: f"{name:18} {verdict:12} {severity:9} {title}"
    rows = {line[:18].strip(): (line[19:31].strip(), line[32:41].strip(), line[42:])
            for line in out.splitlines() if line.strip()}
    assert rows["clf.joblib"][:2] == ("safe", "info")
    assert rows["clf_v2.pkl"][:2] == ("unsafe", "critical")
    assert rows["tiny_weights.pt"][:2] == ("safe", "info")
    # a whole pickled module needs its class's code: never "safe"
    verdict, severity, title = rows["tiny_module.pt"]
    assert verdict in ("unsafe", "custom code") and severity in ("medium", "high", "critical")
    assert "__main__.TinyNet" in title


def test_loading_weights_only_gets_a_safe_card_and_works(executed_notebook):
    cell = cell_with(executed_notebook(NB), "state = torch.load(weights_path, weights_only=True)")
    card, finding = _pickle_finding(cell)
    assert card["subject"].startswith(PRE_RUN) and card["subject"].endswith("tiny_weights.pt")
    assert finding["severity"] == "info" and finding["metrics"]["verdict"] == "safe"
    assert finding["metrics"]["format"] == "torch zip checkpoint"
    assert "weights identical: True" in _text(cell)


def test_no_file_is_written_next_to_the_notebook(executed_notebook):
    nb = executed_notebook(NB)
    folder = _text(cell_with(nb, "workdir = tempfile.mkdtemp(")).split("scratch folder:", 1)[1].strip()
    for cell in nb.cells:
        if cell.cell_type == "code":
            for card in cards_in(cell):
                if card["subject"].startswith((PRE_RUN, "model file ")):
                    assert folder in card["subject"]
