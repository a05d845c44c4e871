"""example-notebooks/06-big-data-and-clusters.ipynb, run by nbclient: a 2,000,000-row memmap, a Dask array and
a membership audit whose shadow models run on a Dask LocalCluster."""

from __future__ import annotations

import pytest
from conftest import cards_in, cell_with

pytestmark = pytest.mark.kernel

NB = "06-big-data-and-clusters.ipynb"


def _metrics(card: dict, check: str) -> dict:
    return next(f["metrics"] for f in card["findings"] if f["check"] == check)


def _run(card: dict, check: str) -> dict:
    return next(r for r in card["checks"] if r["check"] == check)


def test_the_memmap_card_samples_within_the_memory_budget_and_states_the_duplicate_share(executed_notebook):
    nb = executed_notebook(NB)
    (card,) = cards_in(cell_with(nb, 'np.load("big.npy", mmap_mode="r")'))
    assert card["status"] == "done"
    dup = _metrics(card, "data.duplicates")
    assert dup["total_rows"] == 2_000_000 and dup["sample"] == "by content"
    assert dup["exact_duplicates_total"] == 20_000 and dup["exact_duplicate_rate"] == 0.01  # counted, all rows
    integrity = _run(card, "data.integrity")
    assert "sampled 200,000 of 2,000,000 rows" in integrity["sampled"]  # 20 features: 200,000 × 20 cells


def test_the_dask_array_is_read_from_a_few_partitions(executed_notebook):
    nb = executed_notebook(NB)
    (card,) = cards_in(cell_with(nb, "%mlsec scan Xd yd"))
    assert card["status"] == "done"
    for run in card["checks"]:
        if run["check"] != "data.provenance":
            assert run["status"] == "done" and "of 20 partitions" in run["sampled"], run
    assert "not" not in _metrics(card, "data.integrity").get("labels", "")  # labels read from the same rows


def test_the_membership_audit_ran_its_shadow_models_on_the_cluster(executed_notebook):
    nb = executed_notebook(NB)
    config = cell_with(nb, "%mlsec config backend=dask")
    text = "".join(o.get("text", "") for o in config.outputs if o["output_type"] == "stream")
    assert "Heavy sweeps (shadow models, ε values) now run on: dask scheduler" in text and "2 workers" in text
    (card,) = cards_in(cell_with(nb, "forest = RandomForestClassifier"))
    membership = _metrics(card, "privacy.membership")
    assert membership["attacks"]["shadow (LiRA offline)"]["shadow_models"] >= 2
    assert card["status"] == "done"
