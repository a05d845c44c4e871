"""Faults and interrupts in a real kernel (notes/reliability.md R1, R2).

R1: every registered check is replaced by one that raises (a payload in the message or in the exception's
type name, ``SystemExit``, ``KeyboardInterrupt``, ``MemoryError``, an exception whose ``str`` raises…), and a
notebook makes every kind of artifact: data, a fitted model with a held-out set, a model file loaded by a
cell (scanned before it runs, on the main thread), and an Opacus training. Every cell must succeed, no
error or traceback may reach the kernel's channels, and each check's line says "check failed" with the
exception, escaped.

R2: "Run All" of 20 cells, and the stop button pressed while the model-file scan runs on the main thread
before cell 5: cell 5 ends interrupted without running, cells 6-20 are aborted, its card says "cancelled",
and the kernel lives on.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import cards_in
from test_dp_run_all import ENGINE, SETUP, TRAIN
from test_kernel import _card, _interrupt_until_error, _wait_for, kernel  # noqa: F401 - the fixture

pytestmark = pytest.mark.kernel

PAYLOAD_TYPE = "<img src=x onerror=alert(1)>Error"
#: Checks that also run on the main thread before a cell (preflight), where a KeyboardInterrupt always means
#: the user pressed stop (the cell is not run; R2), so they get another fault.
PRE_RUN = {"supply.pickle", "privacy.dp_budget"}

INJECT = f"""
from mlsec_jupyter.checks.registry import all_checks, load_builtin_checks, register_check

class PayloadError(Exception):
    pass
PayloadError.__name__ = PayloadError.__qualname__ = {PAYLOAD_TYPE!r}

class UnprintableError(Exception):
    def __str__(self):
        raise ValueError("str() of this exception fails")

FAULTS = [lambda: RuntimeError("<script>alert(1)</script>"), lambda: PayloadError("payload"), lambda: SystemExit(3),
          lambda: KeyboardInterrupt(), lambda: MemoryError(), lambda: UnprintableError(),
          lambda: RecursionError("maximum recursion depth exceeded")]

def faulty(make):
    def check(*, budget, **inputs):
        raise make()
    return check

load_builtin_checks()
injected = {{}}
for i, spec in enumerate(all_checks()):
    fault = i % len(FAULTS)
    if spec.id in {sorted(PRE_RUN)!r} and fault == 3:  # on the main thread, KeyboardInterrupt is the user's stop
        fault += 1
    register_check(spec.id, applies_to=spec.applies_to, title=spec.title, requires=spec.requires, cost=spec.cost,
                   force=True)(faulty(FAULTS[fault]))
    injected[spec.id] = fault
import json
print(json.dumps(injected))
"""

#: What each fault's line on the card says after "check failed: " (in the order of FAULTS above).
SAYS = ["RuntimeError: <script>alert(1)</script>", f"{PAYLOAD_TYPE}: payload", "SystemExit: 3", "KeyboardInterrupt",
        "MemoryError", "UnprintableError", "RecursionError: maximum recursion depth exceeded"]

CELLS = [
    "%load_ext mlsec_jupyter\n" + INJECT,
    "from sklearn.datasets import load_iris\nX, y = load_iris(return_X_y=True)",
    "from sklearn.model_selection import train_test_split\nfrom sklearn.linear_model import LogisticRegression\n"
    "X_tr, X_te, y_tr, y_te = train_test_split(X, y, random_state=0)\n"
    "clf = LogisticRegression(max_iter=500).fit(X_tr, y_tr)",
    "import joblib\njoblib.dump(clf, 'clf.joblib');",
    "clf2 = joblib.load('clf.joblib')",
    SETUP, ENGINE.format(i=1), TRAIN.format(i=1),
    "%mlsec wait",
    "print('kernel alive', clf2.score(X_te, y_te) > 0.8)",
]


def test_every_check_that_raises_becomes_a_failed_line_and_no_cell_breaks(tmp_path):
    """R1."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = [o for cell in nb.cells for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"], "a cell failed or our hooks raised"
    streams = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    for leak in ("Traceback", "Error in callback", "Exception in thread", "SystemExit", "KeyboardInterrupt"):
        assert leak not in streams, streams
    assert "kernel alive True" in streams

    injected = json.loads(next(o.text for o in nb.cells[0].outputs if o.output_type == "stream").strip())
    assert len(injected) >= 13 and set(injected.values()) == set(range(len(SAYS)))
    cards = [card for cell in nb.cells for card in cards_in(cell)]
    assert cards and all(c["status"] == "done" for c in cards)
    runs = [(r["check"], r["status"], r["message"]) for c in cards for r in c["checks"]]
    for check, fault in injected.items():
        said = {(status, message) for name, status, message in runs if name == check}
        assert ("failed", SAYS[fault]) in said, (check, said)
    # every check that ran, failed; the others were skipped for what their artifact lacks
    assert all(status == "failed" or (status == "skipped" and message.startswith("needs "))
               for _, status, message in runs), runs
    # the model file scanned before its cell ran (main thread) says what broke, as a finding
    pre_run = [f for c in cards for f in c["findings"] if f["title"] == "The model file scan before this cell failed"]
    assert pre_run and pre_run[0]["summary"].startswith(SAYS[injected["supply.pickle"]] + ". The cell ran unchecked.")

    pages = "".join(o.data["text/html"] for o in outputs if "text/html" in o.get("data", {}))
    assert "<script>alert" not in pages and "<img src=x" not in pages
    assert html.escape(PAYLOAD_TYPE, quote=False) in pages and "&lt;script&gt;alert(1)&lt;/script&gt;" in pages


SLOW_SCAN = """
import time, joblib
from sklearn.linear_model import LogisticRegression
from mlsec_jupyter.checks.registry import register_check, get_check, load_builtin_checks
load_builtin_checks()
spec = get_check("supply.pickle")

@register_check("supply.pickle", applies_to="model_file", title=spec.title, force=True)
def slow_scan(*, path, budget, loader=None):
    print("scanning", flush=True)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        time.sleep(0.02)
    return []

joblib.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), "clf.joblib")
n = 0
"""


def _reply(kc, msg_id: str, timeout: float = 60.0) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        msg = kc.get_shell_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg
    raise AssertionError(f"no reply to {msg_id} in {timeout} s")


def test_stop_during_a_scan_before_a_cell_stops_run_all_and_says_cancelled(kernel):
    """R2."""
    kc = kernel
    setup = kc.execute("%load_ext mlsec_jupyter\n" + SLOW_SCAN)
    assert _reply(kc, setup)["content"]["status"] == "ok"
    cells = ["n += 1"] * 4 + ["m = joblib.load('clf.joblib')"] + ["n += 1"] * 15  # "Run All" queues all 20
    ids = [kc.execute(code) for code in cells]
    _wait_for(kc, lambda m: m["msg_type"] == "stream" and "scanning" in m["content"]["text"]
              and m["parent_header"].get("msg_id") == ids[4])
    messages = _interrupt_until_error(kc, ids[4])
    replies = [_reply(kc, i)["content"]["status"] for i in ids]
    assert replies[:4] == ["ok"] * 4 and replies[4] == "error"
    assert set(replies[5:]) == {"aborted"}, replies  # later cells did not run
    errors = [m for m in messages if m["msg_type"] == "error" and m["parent_header"].get("msg_id") == ids[4]]
    assert [e["content"]["ename"] for e in errors] == ["KeyboardInterrupt"]
    assert "the cell did not run" in errors[0]["content"]["evalue"], errors[0]["content"]
    cell5 = [m for m in messages if m["parent_header"].get("msg_id") == ids[4]]
    (card,) = [_card(m) for m in cell5 if _card(m)]
    assert [(r["check"], r["status"]) for r in card["checks"]] == [("supply.pickle", "cancelled")]

    alive = kc.execute("print(n, 'm' in globals())")  # the kernel lives; cells 1-4 ran, 5 did not bind m
    out = _wait_for(kc, lambda m: m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == alive)
    assert out[-1]["content"]["text"].strip() == "4 False"
