"""``privacy.dp_budget`` end to end: real Opacus training in a real IPython shell, the ledger across
cells, re-runs and a restarted session, ``%mlsec budget``, and the card's gauge and curve."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import card_bundles, run
from mlsec_jupyter.checks.privacy.dp_budget import default_delta, epsilon_curve
from mlsec_jupyter.privacy.accounting import epsilon_of_history

pytest.importorskip("opacus")

SETUP = """
import warnings, torch
from torch.utils.data import TensorDataset, DataLoader
from opacus import PrivacyEngine
warnings.filterwarnings("ignore")
gen = torch.Generator().manual_seed(0)
X_all = torch.randn(512, 10, generator=gen)
y_all = (X_all[:, 0] > 0).long()
train_ds = TensorDataset(X_all, y_all)
"""

MAKE_PRIVATE = """
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(10, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.1)
engine = PrivacyEngine()
net, opt, train_loader = engine.make_private(module=net, optimizer=opt,
    data_loader=DataLoader(train_ds, batch_size=64), noise_multiplier=1.1, max_grad_norm=1.0)
"""

TRAIN = """
for epoch in range(2):
    for xb, yb in train_loader:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xb), yb).backward()
        opt.step()
"""


def dp_finding(outputs):
    card = card_bundles(outputs)[-1]  # the card of what the cell did (a pre-run warning may come first)
    found = [f for f in card["findings"] if f["check"] == "privacy.dp_budget"]
    assert len(found) == 1, [f["check"] for f in card["findings"]]
    return found[0], card


@pytest.fixture
def dp_shell(ip):
    run(ip, SETUP)
    run(ip, MAKE_PRIVATE)
    return ip


def test_a_dp_training_cell_shows_tight_epsilon_next_to_opacus(dp_shell):
    result, outputs, _, err = run(dp_shell, TRAIN)
    assert result.success and not err
    f, card = dp_finding(outputs)
    history = dp_shell.user_ns["engine"].accountant.history
    m = f["metrics"]
    assert m["steps"] == sum(t for _, _, t in history) and m["noise_multiplier"] == 1.1
    assert m["delta"] == default_delta(512) == 1e-5
    assert m["epsilon"] == pytest.approx(epsilon_of_history(history, delta=1e-5), rel=1e-6)
    opacus_eps = dp_shell.user_ns["engine"].get_epsilon(1e-5)
    assert m["opacus_epsilon"] == pytest.approx(opacus_eps, rel=1e-6)
    assert m["epsilon"] <= opacus_eps  # tight accounting never reports more than Opacus' RDP bound
    assert m["curve_epsilon"] == sorted(m["curve_epsilon"]) and m["curve_epsilon"][-1] == pytest.approx(m["epsilon"])
    page = card_html_of(outputs)
    assert 'class="mlsec-plot"' in page and "steps" in page


def test_budget_magic_then_training_fills_the_gauge_and_flags_an_overrun(dp_shell, in_tmp):
    _, _, out, _ = run(dp_shell, "%mlsec budget train_loader eps=0.5 delta=1e-5")
    assert "ε = 0.5 at δ = 1e-05" in out and "spent ε = 0" in out
    _, outputs, _, _ = run(dp_shell, TRAIN)
    warning, card = card_bundles(outputs)
    assert warning["subject"] == "before this cell runs"
    (w,) = warning["findings"]
    assert w["title"].startswith("This training would exceed the privacy budget") and w["severity"] == "high"
    assert w["metrics"]["planned_epochs"] == 2
    f, _ = dp_finding(outputs)
    assert f["metrics"]["budget_epsilon"] == 0.5 and f["severity"] == "high"
    # the warning's estimate (2 epochs of 1/q expected steps) matches what the training then spent
    assert w["metrics"]["epsilon"] == pytest.approx(f["metrics"]["epsilon"], rel=0.05)
    assert f["title"].startswith("Privacy budget exceeded")
    assert 'class="mlsec-gauge"' in card_html_of(outputs)
    _, _, out, _ = run(dp_shell, "%mlsec budget X_all")  # the same data, reached through the tensor
    assert f"spent ε = {f['metrics']['epsilon']:.3g}" in out and "1 DP training" in out
    assert oct((in_tmp / ".mlsec" / "privacy").stat().st_mode & 0o777) == "0o700"


def test_block_policy_stops_the_cell_before_it_trains(dp_shell):
    run(dp_shell, "%mlsec budget train_loader eps=0.5 delta=1e-5")
    run(dp_shell, "%mlsec config budget_policy=block")
    weights = dp_shell.user_ns["net"]._module[0].weight.detach().clone()
    result, outputs, out, err = run(dp_shell, TRAIN)
    assert not result.success and "blocked this cell" in str(result.error_in_exec)
    assert "budget_policy=warn" in str(result.error_in_exec)
    (warning,) = card_bundles(outputs)
    assert "The cell was not run" in warning["findings"][0]["summary"]
    assert dp_shell.user_ns["engine"].accountant.history == []  # not a single step was taken
    assert dp_shell.user_ns["net"]._module[0].weight.equal(weights)
    _, _, out, _ = run(dp_shell, "%mlsec budget train_loader eps=50 delta=1e-5")
    result, outputs, _, _ = run(dp_shell, TRAIN)  # within the raised budget it runs
    assert result.success and len(card_bundles(outputs)) == 1


def test_cells_without_a_budget_get_no_pre_run_card(dp_shell):
    _, outputs, _, _ = run(dp_shell, TRAIN)
    assert len(card_bundles(outputs)) == 1


def test_rerunning_the_same_training_replaces_a_new_engine_composes(dp_shell):
    _, outputs, _, _ = run(dp_shell, TRAIN)
    first, _ = dp_finding(outputs)
    _, outputs, _, _ = run(dp_shell, TRAIN)  # same engine, two more epochs: its history has grown
    again, _ = dp_finding(outputs)
    assert again["metrics"]["run_epsilon"] > first["metrics"]["run_epsilon"]
    assert again["metrics"]["epsilon"] == again["metrics"]["run_epsilon"], "one engine is never counted twice"
    run(dp_shell, MAKE_PRIVATE)  # a fresh engine on the same data: a second release
    _, outputs, _, _ = run(dp_shell, TRAIN)
    third, _ = dp_finding(outputs)
    composed = epsilon_of_history([tuple(h) for h in again["metrics"]["history"]]
                                  + [tuple(h) for h in third["metrics"]["history"]], delta=1e-5)
    assert third["metrics"]["epsilon"] == pytest.approx(composed, rel=1e-6)
    assert "earlier DP trainings" in third["summary"]


def test_the_ledger_survives_a_new_session(dp_shell, in_tmp):
    _, outputs, _, _ = run(dp_shell, TRAIN)
    first, _ = dp_finding(outputs)
    dp_shell.run_line_magic("reload_ext", "mlsec_jupyter")  # a new session, as after a kernel restart
    _, _, out, _ = run(dp_shell, "%mlsec budget train_loader")
    assert f"spent ε = {first['metrics']['epsilon']:.3g}" in out
    files = list((in_tmp / ".mlsec" / "privacy").glob("*.json"))
    assert files and all(oct(p.stat().st_mode & 0o777) == "0o600" for p in files)
    json.loads(files[0].read_text())  # JSON, never pickle


def test_budget_magic_says_what_is_wrong(dp_shell):
    from IPython.core.error import UsageError

    for line, message in [("%mlsec budget net eps=1 delta=1e-5", "is not data"),
                          ("%mlsec budget X_all eps=1", "give both eps=E and delta=D"),
                          ("%mlsec budget X_all eps=-1 delta=1e-5", "eps"),
                          ("%mlsec budget X_all frobnicate", "unexpected 'frobnicate'")]:
        with pytest.raises(UsageError, match=message):
            dp_shell.run_line_magic("mlsec", line.split(" ", 1)[1])


def test_epsilon_curve_is_the_prefix_composition():
    history = [(1.1, 0.01, 100), (0.9, 0.02, 50)]
    steps, eps = epsilon_curve(history, 1e-5, points=3)
    assert steps == [50, 100, 150]
    assert eps[1] == pytest.approx(epsilon_of_history([(1.1, 0.01, 100)], delta=1e-5), rel=1e-6)
    assert eps[2] == pytest.approx(epsilon_of_history(history, delta=1e-5), rel=1e-6)


def test_default_delta_stays_below_one_over_n():
    assert default_delta(None) == 1e-5 and default_delta(60_000) == 1e-5
    assert default_delta(250_000) == 1e-6 and default_delta(3_000_000) == 1e-7


def card_html_of(outputs) -> str:
    return next(o.data["text/html"] for o in outputs if "text/html" in o.data)


TRAIN_AND_EVALUATE = """
test_loader = DataLoader(TensorDataset(torch.randn(128, 10, generator=gen), torch.zeros(128).long()), batch_size=64)
for epoch in range(2):
    for xb, yb in train_loader:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xb), yb).backward()
        opt.step()
    with torch.no_grad():
        for xb, yb in test_loader:
            net(xb)
"""


def test_the_budget_follows_the_loader_that_trains_not_the_one_that_evaluates(dp_shell):
    run(dp_shell, "%mlsec budget train_loader eps=0.5 delta=1e-5")
    run(dp_shell, "%mlsec config budget_policy=block")
    result, outputs, _, _ = run(dp_shell, TRAIN_AND_EVALUATE)
    assert not result.success and "blocked this cell" in str(result.error_in_exec)
    run(dp_shell, "%mlsec config budget_policy=warn")
    result, outputs, _, _ = run(dp_shell, TRAIN_AND_EVALUATE)
    f, card = dp_finding(outputs)
    assert card["subject"].startswith("net (torch) fitted on train_loader") or "train_loader" in card["subject"]
    assert f["metrics"]["budget_epsilon"] == 0.5
    _, _, out, _ = run(dp_shell, "%mlsec budget test_loader")
    assert "spent ε = 0 " in out


def test_another_engine_in_the_namespace_is_not_charged_to_this_data(dp_shell):
    run(dp_shell, TRAIN)  # engine A trains on train_ds
    run(dp_shell, "engine_a, opt_a = engine, opt\n" + MAKE_PRIVATE.replace("train_ds", "other_ds")
        .replace("torch.manual_seed(0)", "other_ds = TensorDataset(torch.randn(256, 10, generator=gen), "
                 "torch.zeros(256).long())\ntorch.manual_seed(0)"))
    _, outputs, _, _ = run(dp_shell, TRAIN)  # engine B (now `engine`, `opt`) trains on other_ds
    cards = card_bundles(outputs)
    dp = [f for c in cards for f in c["findings"] if f["check"] == "privacy.dp_budget"]
    assert len(dp) == 1, "only the accountant this cell steps is reported"
    _, _, out, _ = run(dp_shell, "%mlsec budget X_all")
    assert "over 1 DP training(s)" in out, out


def test_nested_and_wrapped_epoch_loops_are_counted(dp_shell):
    from mlsec_jupyter.preflight import planned_epochs
    from mlsec_jupyter.watch.cell import parse_cell

    cell = ("for r in range(3):\n    for e in enumerate(range(1, EPOCHS + 1)):\n        for xb, yb in train_loader:\n"
            "            opt.zero_grad(); net(xb).sum().backward(); opt.step()")
    assert planned_epochs(parse_cell(cell), {"EPOCHS": 10}) == (30, True)
    assert planned_epochs(parse_cell(cell), {}) == (3, False)
    unknown = "for e in schedule:\n    for xb, yb in train_loader:\n        net(xb).sum().backward(); opt.step()"
    assert planned_epochs(parse_cell(unknown), {}) == (1, False)


def test_a_cell_that_only_defines_a_training_function_is_not_a_training_cell():
    from mlsec_jupyter.watch.cell import parse_cell

    intent = parse_cell("def train_one_epoch():\n    for xb, yb in train_loader:\n"
                        "        opt.zero_grad(); net(xb).sum().backward(); opt.step()")
    assert not intent.torch_training


def test_training_through_a_function_called_from_another_cell_is_still_counted(ip):
    """Opacus' tutorials define train() in one cell and call it in another: the AST sees no training
    loop in either, so the accountant itself is watched."""
    run(ip, SETUP)
    run(ip, MAKE_PRIVATE)
    _, outputs, _, _ = run(ip, "def train_one_epoch():\n" + "\n".join("    " + line for line in
                                                                    TRAIN.strip().splitlines()[1:]))
    assert card_bundles(outputs) == []  # a definition trains nothing
    _, outputs, _, _ = run(ip, "for _ in range(2):\n    train_one_epoch()")
    f, card = dp_finding(outputs)
    history = ip.user_ns["engine"].accountant.history
    assert f["metrics"]["steps"] == sum(t for _, _, t in history) > 0
    assert f["metrics"]["dataset_key"]  # the engine's data set was found, so the ledger counts it
    _, outputs, _, _ = run(ip, "x = 1 + 1")
    assert card_bundles(outputs) == []  # no new steps, no card
    _, _, out, _ = run(ip, "%mlsec budget X_all")
    assert "over 1 DP training(s)" in out


def test_a_dp_model_with_a_held_out_loader_gets_its_leakage_held_against_its_epsilon(dp_shell):
    run(dp_shell, "test_loader = DataLoader(TensorDataset(torch.randn(256, 10, generator=gen), "
                  "(torch.randn(256, 10, generator=gen)[:, 0] > 0).long()), batch_size=64)")
    _, outputs, _, _ = run(dp_shell, TRAIN_AND_EVALUATE.split("\n", 2)[2])  # keep the test_loader made above
    card = card_bundles(outputs)[-1]
    membership = [f for f in card["findings"] if f["check"] == "privacy.membership"]
    dp = [f for f in membership if "accounted_epsilon" in f["metrics"]]
    assert dp, [f["title"] for f in membership]
    accounted = epsilon_of_history(dp_shell.user_ns["engine"].accountant.history, delta=1e-5)
    assert dp[0]["metrics"]["accounted_epsilon"] == pytest.approx(accounted, rel=1e-6)
    assert dp[0]["severity"] == "info"  # a real DP-SGD training never exceeds its own accounting
