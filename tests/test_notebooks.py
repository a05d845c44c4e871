"""The example notebooks, executed by nbclient in a real kernel: the saved cards are complete."""

from __future__ import annotations

import json

import nbformat
import pytest
from conftest import NOTEBOOKS, cards_in, cell_with

from mlsec_jupyter.findings import CARD_MIME

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_every_example_notebook_runs_and_saves_only_finished_cards(name, executed_notebook):
    nb = executed_notebook(name)
    cards = [card for cell in nb.cells if cell.cell_type == "code" for card in cards_in(cell)]
    assert cards, "the notebook shows no risk card"
    for card in cards:
        assert card["status"] == "done", card["subject"]
        assert all(run["status"] in ("done", "skipped") for run in card["checks"]), card["checks"]
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", out
            if CARD_MIME in out.get("data", {}):
                html = out["data"]["text/html"]
                assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
                json.dumps(out["data"][CARD_MIME])


def test_quickstart_cards_show_the_planted_problems(executed_notebook):
    nb = executed_notebook("01-quickstart.ipynb")
    assert len(cards_in(cell_with(nb, "load_breast_cancer(return_X_y=True)"))) == 1
    assert len(cards_in(cell_with(nb, "train_test_split(X, y"))) == 1
    assert cards_in(cell_with(nb, "X_train[:5, 0] = np.nan")) == []  # builds arrays only: no card
    (card,) = cards_in(cell_with(nb, "clf.fit(X_train, y_train)"))
    assert card["subject"].startswith("clf (sklearn) fitted on X_train, y_train")
    by_check: dict[str, dict] = {}
    for f in card["findings"]:
        for key, value in f["metrics"].items():
            by_check.setdefault(f["check"], {}).setdefault(key, value)
    assert by_check["data.integrity"]["nan_count"] == 5
    assert by_check["data.duplicates"]["train_test_overlap"] == 8
    assert by_check["data.duplicates"]["conflicting_label_duplicates"] >= 10
    severities = {f["severity"] for f in card["findings"]}
    assert severities & {"medium", "high"}
    # the cell's own output (the fitted model's repr) is still there
    fit_cell = cell_with(nb, "clf.fit(X_train, y_train)")
    assert any(o.get("output_type") == "execute_result" for o in fit_cell.outputs)


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_every_example_notebook_is_saved_clean_and_starts_and_ends_as_documented(name):
    raw = nbformat.read(NOTEBOOKS / name, as_version=nbformat.NO_CONVERT)
    nbformat.validate(raw)
    assert (raw.nbformat, raw.nbformat_minor) == (4, 5) and raw.metadata.kernelspec.name == "python3"
    ids = [c.id for c in raw.cells]
    assert len(set(ids)) == len(ids)
    code = [c for c in raw.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert code[0].source.strip().splitlines()[-1] == "%load_ext mlsec_jupyter"
    assert code[-1].source.strip() == "%mlsec wait"  # headless runs save complete cards


LOOPBACK = ("'127.0.0.1'", "'::1'", "'localhost'")


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_example_notebooks_make_no_network_connection(name, executed_notebook_path):
    """S3: the kernel that ran the notebook recorded every network audit event (socket connect/send, name
    lookups, urllib, http.client): none leaves the machine. Only notebook 06 talks to its own local Dask
    cluster, on the loopback address, because the user started one. The guard sees the kernel process
    only, not the processes it starts (joblib/loky or Dask workers)."""
    executed_notebook_path(name)
    log = executed_notebook_path.network_log(name)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert events and events[0]["event"] == "guard installed", "the socket guard did not run in the kernel"
    network = events[1:]
    outside = [e for e in network if not e["address"].lstrip("(").startswith(LOOPBACK)]  # host or (host, port)
    assert not outside, outside
    if not name.startswith("06-"):
        assert not network, network
