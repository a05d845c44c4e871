"""Runtime rows of notes/reliability.md §1 that the other files do not cover, in a real in-process
IPython shell: the shell's own bookkeeping is untouched (R12), nested cells get one card (R3), unload
leaves nothing behind (R5) and torch's global settings are unchanged (R9)."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest
from conftest import card_bundles, run

LOAD_CELL = "from sklearn.datasets import load_breast_cancer\nX, y = load_breast_cancer(return_X_y=True)"
FIT_CELL = "from sklearn.linear_model import LogisticRegression\nclf = LogisticRegression(max_iter=3000).fit(X, y)"


def _bookkeeping(ip) -> dict:
    history = ip.history_manager
    return {"count": ip.execution_count, "In": list(ip.user_ns["In"]), "Out": dict(ip.user_ns["Out"]),
            "names": set(ip.user_ns), "session_lines": len(history.input_hist_parsed)}


def test_checks_never_run_cells_or_add_names(ip):
    """R12: a load and a fit with cards advance the execution count by one each, add one entry each to
    ``In`` and the history, and bind only the names the cells bind (``shell.run_cell`` is never called)."""
    before = _bookkeeping(ip)
    for source in (LOAD_CELL, FIT_CELL):
        _, outputs, _, _ = run(ip, source)
        assert len(card_bundles(outputs)) == 1
    after = _bookkeeping(ip)
    assert after["count"] == before["count"] + 2
    assert after["In"][len(before["In"]):] == [LOAD_CELL, FIT_CELL]
    assert after["session_lines"] == before["session_lines"] + 2
    assert after["Out"] == before["Out"]
    added = after["names"] - before["names"] - {"X", "y", "LogisticRegression", "clf", "load_breast_cancer"}
    assert all(re.fullmatch(r"_(i{1,3}|i\d+|\d+|_{0,2})", n) for n in added), sorted(added)  # IPython's own


def test_a_cell_that_runs_a_cell_gets_one_card(ip):
    """R3: ``get_ipython().run_cell`` inside a cell nests pre/pre/post/post; the outer cell owns one card."""
    run(ip, "from sklearn.datasets import load_iris")
    result, outputs, out, err = run(ip, "get_ipython().run_cell('Xi, yi = load_iris(return_X_y=True)')")
    assert result.success and "Error in callback" not in out + err
    cards = card_bundles(outputs)
    assert len(cards) == 1 and cards[0]["subject"].startswith("Xi, yi")


def test_unload_leaves_no_hook_transformer_thread_or_magic(shell):
    """R5: after a session that made cards, a scan and a panel, unloading removes every callback, the input
    transformer, the magics and the worker threads, and a reload starts clean."""
    from mlsec_jupyter import extension

    transformers = list(shell.input_transformers_post)
    callbacks = {e: list(shell.events.callbacks[e]) for e in ("pre_run_cell", "post_run_cell")}
    shell.run_line_magic("load_ext", "mlsec_jupyter")
    run(shell, LOAD_CELL)
    run(shell, "%mlsec scan X y")
    shell.run_line_magic("unload_ext", "mlsec_jupyter")
    assert shell.input_transformers_post == transformers
    assert {e: list(shell.events.callbacks[e]) for e in callbacks} == callbacks
    assert "mlsec" not in shell.magics_manager.magics["line"] and "mlsec" not in shell.magics_manager.magics["cell"]
    assert not [t.name for t in threading.enumerate() if t.name.startswith("mlsec-") and t.is_alive()]
    assert extension.current() is None
    shell.run_line_magic("load_ext", "mlsec_jupyter")
    _, outputs, _, _ = run(shell, LOAD_CELL)
    assert len(card_bundles(outputs)) == 1


def test_torch_global_settings_are_unchanged_by_a_model_card(ip):
    """R9: threads, determinism flags, default dtype, grad mode and the RNG of torch, and numpy's error
    settings, are the same after a torch model's card as before it."""
    torch = pytest.importorskip("torch")
    run(ip, "import torch\nfrom sklearn.datasets import load_digits\nXd, yd = load_digits(return_X_y=True)\n"
            "Xt = torch.tensor(Xd[:600] / 16, dtype=torch.float32); yt = torch.tensor(yd[:600])\n"
            "net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))\n"
            "opt = torch.optim.SGD(net.parameters(), lr=0.1)\n"
            "loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(Xt, yt), batch_size=100)")

    def settings() -> tuple:
        return (torch.get_num_threads(), torch.get_num_interop_threads(),
                torch.are_deterministic_algorithms_enabled(), torch.get_default_dtype(), torch.is_grad_enabled(),
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, np.geterr())

    before = settings()
    _, outputs, _, _ = run(ip, "for xb, yb in loader:\n    opt.zero_grad()\n"
                               "    loss = torch.nn.functional.cross_entropy(net(xb), yb)\n"
                               "    loss.backward()\n    opt.step()\n_state = torch.get_rng_state()")
    (card,) = card_bundles(outputs)
    assert any(f["check"] == "robustness.evasion" for f in card["findings"]), card["checks"]
    assert settings() == before
    assert torch.equal(torch.get_rng_state(), ip.user_ns["_state"])


def test_rng_states_a_check_moves_are_put_back_but_a_cells_draws_never_rewound():
    """R9: the runner's gate restores the global RNGs that checks moved (a library's first import draws
    from ``random``), only when no cell started since its snapshot; overlapping checks restore once, at
    the end of the last; a closed gate (the runner shut down) restores nothing."""
    import random

    from mlsec_jupyter.runner import MainThreadGate

    gate = MainThreadGate()
    start = random.getstate()
    gate.check_started()
    random.random()  # what an import inside the check does
    gate.check_finished()
    assert random.getstate() == start

    gate.check_started()  # A
    random.random()
    gate.check_started()  # B overlaps: no second snapshot
    gate.check_finished()  # A ends while B runs: nothing yet
    assert random.getstate() != start
    gate.check_finished()  # B ends: back to before A
    assert random.getstate() == start

    gate.check_started()
    gate.cell_started()
    random.random()  # the user's cell draws while the check runs
    gate.cell_finished()
    after_cell = random.getstate()
    gate.check_finished()
    assert random.getstate() == after_cell

    gate.cell_started()
    gate.check_started()  # started while a cell runs: no snapshot at all
    gate.cell_finished()
    random.random()
    moved = random.getstate()
    gate.check_finished()
    assert random.getstate() == moved

    gate.check_started()
    random.random()
    gate.close()
    closed = random.getstate()
    gate.check_finished()
    assert random.getstate() == closed
