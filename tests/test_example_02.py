"""example-notebooks/02-poisoned-images.ipynb, executed in a real kernel: the cards find the planted
backdoor and the flipped labels, and dropping the rows the findings point at removes the backdoor.

The ground truth (which rows the notebook poisoned) comes from running the notebook's own two data
cells again here (plain numpy / scikit-learn, seeded); the cards never see it.
"""

from __future__ import annotations

import re

import pytest
from conftest import cards_in, cell_with

pytestmark = pytest.mark.kernel

NAME = "02-poisoned-images.ipynb"
TRIGGER_PIXELS = [54, 55, 62, 63]  # the 2×2 bottom-right square of an 8×8 image, as flat features


@pytest.fixture(scope="module")
def nb(executed_notebook):
    return executed_notebook(NAME)


@pytest.fixture(scope="module")
def planted(nb):
    """``poisoned`` and ``flipped`` row numbers, from the notebook's own load and plant cells."""
    ns: dict = {}
    for text in ("load_digits(return_X_y=True)", "TARGET = 7"):  # plain, seeded numpy: no magics, no I/O
        exec(cell_with(nb, text).source, ns)  # noqa: S102 - the notebook's own cell, to know what it planted
    return {"poisoned": set(ns["poisoned"].tolist()), "flipped": set(ns["flipped"].tolist()),
            "n": int(ns["n"]), "target": ns["TARGET"]}


def only_card(nb, text: str) -> dict:
    (card,) = cards_in(cell_with(nb, text))
    return card


def findings(card: dict, check: str) -> list[dict]:
    return [f for f in card["findings"] if f["check"] == check]


def stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream"
                   and o.get("name") == "stdout")


def recall_precision(indices, truth: set) -> tuple[float, float]:
    hit = len(set(indices) & truth)
    return hit / len(truth), hit / max(len(indices), 1)


def percent(text: str, label: str) -> list[float]:
    return [float(v) / 100 for v in re.findall(re.escape(label) + r":\s*([\d.]+)%", text)]


def test_the_notebook_writes_nothing_beside_itself(executed_notebook_path):
    path = executed_notebook_path(NAME)
    assert sorted(p.name for p in path.parent.iterdir()) == [NAME]  # no .mlsec/, no images, no models


def test_no_cell_writes_to_stderr(nb):
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert not (out.get("output_type") == "stream" and out.get("name") == "stderr"), out.get("text", "")[:300]


def test_the_clean_digits_card_finds_no_backdoor_and_few_flips(nb):
    card = only_card(nb, "load_digits(return_X_y=True)")
    backdoor = findings(card, "data.backdoor")
    assert len(backdoor) == 3  # X, y and both parts of the split
    assert all(f["metrics"]["n_suspects"] == 0 and f["severity"] == "info" for f in backdoor)
    rates = [f["metrics"]["estimated_flip_rate"] for f in findings(card, "data.label_flips")]
    assert len(rates) == 3 and max(rates) < 0.03  # measured: 1.1 % (train), 0.3 %, 0.3 %


def test_the_loader_card_finds_the_backdoor_before_any_training(nb, planted):
    card = only_card(nb, "train_loader = DataLoader")
    (f,) = findings(card, "data.backdoor")
    m = f["metrics"]
    assert f["severity"] == "high"
    assert m["target_class"] == str(planted["target"])
    assert m["trigger_features"] == TRIGGER_PIXELS and m["trigger_value"] == 1.0  # 16 / 16
    assert f["n_indices"] == m["n_suspects"] == len(f["indices"])
    recall, precision = recall_precision(f["indices"], planted["poisoned"])
    assert recall >= 0.95 and precision >= 0.95  # measured: 67 of 67 planted rows, nothing else


def test_the_loader_card_finds_the_flipped_labels(nb, planted):
    card = only_card(nb, "train_loader = DataLoader")
    (f,) = findings(card, "data.label_flips")
    assert f["severity"] == "high"
    planted_rate = len(planted["flipped"]) / planted["n"]  # 108 of 1,347: 8.0 %
    assert f["metrics"]["estimated_flip_rate"] == pytest.approx(planted_rate, abs=0.025)  # measured 8.2 %
    recall, precision = recall_precision(f["indices"], planted["flipped"])
    assert recall >= 0.85 and precision >= 0.85  # measured: 111 flagged, recall 0.935, precision 0.910


def test_the_training_card_says_the_model_obeys_the_trigger(nb, planted):
    card = only_card(nb, "net = small_cnn()")
    assert card["subject"].startswith("net (torch) fitted on train_loader.dataset")
    (f,) = findings(card, "data.backdoor")
    m = f["metrics"]
    assert f["severity"] == "critical" and f["title"].startswith("Backdoored model")
    assert m["target_class"] == m["model_target"] == str(planted["target"])
    assert m["attack_success_rate"] >= 0.9 and m["control_success_rate"] <= 0.1  # measured 0.994 / 0.025
    assert recall_precision(f["indices"], planted["poisoned"]) == (1.0, 1.0)
    assert findings(card, "data.label_flips")[0]["severity"] == "high"


def test_the_attack_works_while_clean_accuracy_looks_fine(nb):
    text = stdout(cell_with(nb, "before = scores(net)"))
    (clean,), (success,) = percent(text, "clean test accuracy"), percent(text, "attack success rate")
    assert clean >= 0.93 and success >= 0.9  # measured 98.0 % and 99.8 %


def test_the_python_api_findings_recover_the_planted_rows(nb):
    text = stdout(cell_with(nb, "mj.scan_data(X_train, y_train"))
    graded = re.findall(r"(\d+) rows flagged, (\d+) of (\d+) planted rows found \(recall (\d+)%, precision (\d+)%\)",
                        text)
    (_, bd_hit, bd_planted, _, bd_precision), (_, _, fl_planted, fl_recall, fl_precision) = graded
    assert (int(bd_hit), int(bd_planted)) == (67, 67) and int(bd_precision) >= 95  # measured 100 % / 100 %
    assert int(fl_planted) == 108 and int(fl_recall) >= 85 and int(fl_precision) >= 85  # measured 93 % / 91 %
    dropped, planted_among = map(int, re.search(r"Dropping (\d+) of 1347 training rows; (\d+) of them were planted",
                                                text).groups())
    assert planted_among / dropped >= 0.9  # measured 167 of 176


def test_the_cleaned_data_and_the_retrained_model_are_clean(nb):
    loader_card = only_card(nb, "clean_loader = DataLoader")
    model_card = only_card(nb, "clean_net = small_cnn()")
    for card in (loader_card, model_card):
        backdoor = findings(card, "data.backdoor")
        assert backdoor and all(f["severity"] == "info" and f["metrics"]["n_suspects"] == 0 for f in backdoor)
        (flips,) = findings(card, "data.label_flips")
        assert flips["metrics"]["estimated_flip_rate"] <= 0.02  # measured 0 %, from 8.2 %
    assert "critical" not in {f["severity"] for f in model_card["findings"]}


def before_after(text: str, label: str) -> tuple[float, float]:
    found = re.search(re.escape(label) + r":\s*([\d.]+)% \(poisoned data\)\s*→\s*([\d.]+)% \(cleaned data\)", text)
    assert found, text
    return float(found.group(1)) / 100, float(found.group(2)) / 100


def test_retraining_on_the_cleaned_data_removes_the_backdoor(nb):
    text = stdout(cell_with(nb, "after = scores(clean_net)"))
    asr_before, asr_after = before_after(text, "attack success rate")
    acc_before, acc_after = before_after(text, "clean test accuracy")
    assert asr_before >= 0.9 and asr_after <= 0.05  # measured 99.8 % → 0.0 %
    assert acc_after >= 0.93 and acc_after >= acc_before - 0.03  # measured 98.0 % → 96.9 %
