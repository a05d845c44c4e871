"""Run All in a real kernel: a DP training is counted in the privacy ledger before the next training's budget
check, although its card's checks run in the background (found writing example notebook 03)."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.kernel

SETUP = """import warnings, torch
warnings.filterwarnings("ignore")
from torch.utils.data import TensorDataset, DataLoader
from opacus import PrivacyEngine
gen = torch.Generator().manual_seed(0)
X_all = torch.randn(512, 10, generator=gen); y_all = (X_all[:, 0] > 0).long()
train_loader = DataLoader(TensorDataset(X_all, y_all), batch_size=64)"""
ENGINE = """torch.manual_seed(0)
net{i} = torch.nn.Sequential(torch.nn.Linear(10, 2))
engine{i} = PrivacyEngine()
net{i}, opt{i}, loader{i} = engine{i}.make_private(module=net{i}, optimizer=torch.optim.SGD(net{i}.parameters(),
    lr=0.1), data_loader=train_loader, noise_multiplier=1.0, max_grad_norm=1.0)"""
TRAIN = """for epoch in range(3):
    for xb, yb in loader{i}:
        opt{i}.zero_grad(); torch.nn.functional.cross_entropy(net{i}(xb), yb).backward(); opt{i}.step()
trained{i} = True"""


def test_a_second_training_right_after_the_first_is_checked_against_what_the_first_spent(tmp_path):
    cells = ["%load_ext mlsec_jupyter", SETUP,
             "%mlsec budget train_loader eps=6 delta=1e-5\n%mlsec config budget_policy=block",
             ENGINE.format(i=1), TRAIN.format(i=1), "%mlsec budget train_loader", ENGINE.format(i=2),
             TRAIN.format(i=2), "print('trained2' in globals())"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    def text(index: int) -> str:
        return "".join(o.get("text", "") + o.get("evalue", "") for o in nb.cells[index].outputs)

    shown = {i: text(i) for i in range(len(cells))}
    assert "spent ε = 4.68 over 1 DP training(s); remaining 1.32" in shown[5], shown  # counted while checks run
    assert "would spend ε ≈ 6.27, over the budget of 6" in shown[7], shown  # the second training was blocked
    assert shown[8].strip() == "False", shown
