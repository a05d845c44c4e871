"""A real ipykernel: the card appears at once and is updated in place in the cell that made it (R6).

The checks here are slow on purpose (a registered test check that takes ~1.5 s), so the cell that
made the data has long finished, and another cell is running, when the updates arrive.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel

SLOW_CHECK = """
import time
from mlsec_jupyter.checks.registry import register_check
from mlsec_jupyter.findings import Finding

@register_check("test.slow", applies_to="dataset", title="slow test check", force=True)
def slow(*, X, budget):
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        budget.checkpoint()
        time.sleep(0.02)
    return [Finding("test.slow", "medium", "Slow check finished", "took 1.5 s")]
"""


#: ipykernel 6.29 beside the venv's 7.x (``make test`` installs it there with ``pip --target``), for R6
IPYKERNEL6 = Path(sys.prefix) / "ipykernel6"


def _start(cwd: Path, **env: str):
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(cwd), env={**os.environ, **env})
    kc.km = km  # tests that interrupt the kernel need its manager
    return km, kc


@pytest.fixture
def kernel(tmp_path: Path):
    km, kc = _start(tmp_path)
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.fixture
def kernel6(tmp_path: Path):
    """A kernel running ipykernel 6.29 (R6)."""
    if not (IPYKERNEL6 / "ipykernel").is_dir():
        pytest.skip(f"ipykernel 6.29 is not installed in {IPYKERNEL6}; `make test` installs it")
    km, kc = _start(tmp_path, PYTHONPATH=str(IPYKERNEL6))
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _execute(kc, code: str) -> str:
    msg_id = kc.execute(code)
    reply = kc.get_shell_msg(timeout=60)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=60)
    assert reply["content"]["status"] == "ok", reply["content"]
    return msg_id


def _wait_for(kc, predicate, timeout: float = 30.0, into: list[dict] | None = None) -> list[dict]:
    """Collect IOPub messages until one satisfies ``predicate`` (no fixed sleeps); ``into`` also keeps
    what a wait that timed out received."""
    messages, end = ([] if into is None else into), time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            msg = kc.get_iopub_msg(timeout=0.5)
        except Exception:
            continue
        messages.append(msg)
        if predicate(msg):
            return messages
    raise AssertionError(f"no matching IOPub message in {timeout} s; got {[m['msg_type'] for m in messages]}")


def _interrupt_until_error(kc, msg_id: str, timeout: float = 60.0) -> list[dict]:
    """Press "stop" until the cell ``msg_id`` ends with an error (ipykernel drops a SIGINT that lands
    before the cell's code runs); bounded by time, not by a count of tries, so a loaded machine passes."""
    messages: list[dict] = []
    end = time.monotonic() + timeout
    while True:
        kc.km.interrupt_kernel()
        try:
            return _wait_for(kc, lambda m: m["msg_type"] == "error" and m["parent_header"].get("msg_id") == msg_id,
                             timeout=5, into=messages)
        except AssertionError:
            if time.monotonic() > end:
                seen = [(m["msg_type"], m["content"].get("text") or m["content"].get("execution_state") or "")
                        for m in messages if m["parent_header"].get("msg_id") == msg_id]
                raise AssertionError(f"the cell was not interrupted within {timeout} s; its messages: {seen}") from None


def _card(msg: dict) -> dict | None:
    data = msg.get("content", {}).get("data", {})
    return data.get("application/vnd.mlsec.riskcard+json")


def test_card_frame_comes_at_once_and_updates_reach_the_originating_cell(kernel):
    """R6 in ipykernel 7: the card's frame is shown while its cell runs, and its final update is sent under
    that cell (and a copy under the running one), with no stream or error output in either."""
    assert_card_updates_reach_the_originating_cell(kernel)


def test_with_ipykernel_6_29_updates_reach_the_originating_cell_too(kernel6):
    """R6: the same in ipykernel 6.29, whose output routing from threads differs from 7.x."""
    version = kernel6.execute("import ipykernel; print(ipykernel.__version__)")
    out = _wait_for(kernel6, lambda m: m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == version)
    assert out[-1]["content"]["text"].strip() == "6.29.5"
    assert_card_updates_reach_the_originating_cell(kernel6)


def assert_card_updates_reach_the_originating_cell(kc) -> None:
    _execute(kc, "%load_ext mlsec_jupyter\nfrom sklearn.datasets import load_iris\n" + SLOW_CHECK)
    cell = kc.execute("X, y = load_iris(return_X_y=True)")
    messages = _wait_for(kc, lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                         and m["parent_header"].get("msg_id") == cell)
    frames = [m for m in messages if m["msg_type"] == "display_data" and _card(m)]
    assert len(frames) == 1, "one card frame, shown while the cell ran"
    assert _card(frames[0])["status"] == "running", "the cell waited for the checks"
    card_id = _card(frames[0])["card_id"]
    assert frames[0]["content"]["transient"]["display_id"] == card_id

    other = kc.execute("import time; time.sleep(2.5); 'other cell done'")  # a later cell is running
    messages = _wait_for(kc, lambda m: m["msg_type"] == "update_display_data"
                         and (_card(m) or {}).get("status") == "done"
                         and m["parent_header"].get("msg_id") == cell)
    done = messages[-1]
    card = _card(done)
    assert card["card_id"] == card_id and done["content"]["transient"]["display_id"] == card_id
    assert {f["check"] for f in card["findings"]} >= {"data.integrity", "data.duplicates", "test.slow"}
    assert "text/html" in done["content"]["data"] and "text/plain" in done["content"]["data"]
    # a copy also goes to the running cell, for clients that only follow the running cell (nbclient)
    messages += _wait_for(kc, lambda m: m["msg_type"] == "update_display_data"
                          and (_card(m) or {}).get("status") == "done"
                          and m["parent_header"].get("msg_id") == other)
    # and nothing leaked into either cell as stream or error output
    leaked = [m for m in messages if m["msg_type"] in ("stream", "error")
              and m["parent_header"].get("msg_id") in (cell, other)]
    assert not leaked, leaked


def test_hooks_add_no_error_output_and_interrupting_a_cell_cancels_checks(kernel):
    kc = kernel
    _execute(kc, "%load_ext mlsec_jupyter\n" + SLOW_CHECK)
    cell = kc.execute("from sklearn.datasets import load_iris\nX, y = load_iris(return_X_y=True)\n"
                      "raise KeyboardInterrupt")
    msgs = _wait_for(kc, lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                     and m["parent_header"].get("msg_id") == cell)
    errors = [m for m in msgs if m["msg_type"] == "error"]
    assert [e["content"]["ename"] for e in errors] == ["KeyboardInterrupt"]  # the user's own, unchanged
    assert not [m for m in msgs if _card(m)]
    status_id = kc.execute("%mlsec status")
    out = _wait_for(kc, lambda m: m["msg_type"] == "stream" and "mlsec-jupyter" in m["content"]["text"]
                    and m["parent_header"].get("msg_id") == status_id)
    assert "Error in callback" not in "".join(m["content"].get("text", "") for m in out)


def test_a_card_finished_between_cells_is_sent_again_with_the_next_cell(kernel):
    """nbclient and papermill only listen to the running cell: the next cell carries the final card."""
    kc = kernel
    _execute(kc, "%load_ext mlsec_jupyter\nfrom sklearn.datasets import load_iris\n" + SLOW_CHECK)
    cell = kc.execute("X, y = load_iris(return_X_y=True)")
    _wait_for(kc, lambda m: m["msg_type"] == "update_display_data" and (_card(m) or {}).get("status") == "done"
              and m["parent_header"].get("msg_id") == cell)  # finished while no cell was running
    nxt = kc.execute("1 + 1")
    msgs = _wait_for(kc, lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                     and m["parent_header"].get("msg_id") == nxt)
    resent = [m for m in msgs if m["msg_type"] == "update_display_data" and m["parent_header"].get("msg_id") == nxt]
    assert len(resent) == 1 and _card(resent[0])["status"] == "done"
    again = kc.execute("2 + 2")  # sent once, not with every later cell
    msgs = _wait_for(kc, lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                     and m["parent_header"].get("msg_id") == again)
    assert not [m for m in msgs if m["msg_type"] == "update_display_data"]


def test_interrupting_a_later_cell_cancels_running_checks_and_says_so(kernel):
    """A real SIGINT (the stop button) while an earlier card's checks still run."""
    kc = kernel
    _execute(kc, "%load_ext mlsec_jupyter\nfrom sklearn.datasets import load_iris\n"
                 + SLOW_CHECK.replace("1.5", "30"))
    cell = kc.execute("X, y = load_iris(return_X_y=True)")
    _wait_for(kc, lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
              and m["parent_header"].get("msg_id") == cell)
    sleeper = kc.execute("import time; print('sleeping', flush=True); time.sleep(30)")
    _wait_for(kc, lambda m: m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == sleeper)
    msgs = _interrupt_until_error(kc, sleeper)
    # the card finishes as "cancelled" instead of running its 30 s check (latency is measured in bench/, not here)
    msgs += _wait_for(kc, lambda m: m["msg_type"] == "update_display_data" and (_card(m) or {}).get("status") == "done"
                      and m["parent_header"].get("msg_id") == cell, timeout=20)
    runs = {r["check"]: r["status"] for r in _card(msgs[-1])["checks"]}
    assert runs["test.slow"] == "cancelled" and runs["data.integrity"] == "done"
    errors = [m for m in msgs if m["msg_type"] == "error"]
    assert [e["content"]["ename"] for e in errors] == ["KeyboardInterrupt"]  # the user's cell, as usual


def _execute_in(kc, code: str, subshell_id: str) -> str:
    """An execute request to a kernel subshell (JEP 91), as JupyterLab sends for a console beside a notebook."""
    msg = kc.session.msg("execute_request", {"code": code, "silent": False, "store_history": True,
                                             "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
    msg["header"]["subshell_id"] = subshell_id
    kc.shell_channel.send(msg)
    return msg["header"]["msg_id"]


def test_a_cell_in_a_subshell_gets_its_card_while_the_main_shell_runs_a_cell(kernel, tmp_path):
    """R7: the subshell's cell runs our hooks in its own thread, at the same time as the main shell's
    cell; each cell gets its own card, and neither breaks the other."""
    kc = kernel
    if "kernel subshells" not in kc.kernel_info(reply=True)["content"].get("supported_features", []):
        pytest.skip("this ipykernel has no subshells")
    request = kc.session.msg("create_subshell_request", {})
    kc.control_channel.send(request)
    reply = kc.control_channel.get_msg(timeout=30)
    assert reply["content"]["status"] == "ok", reply["content"]
    _execute(kc, "%load_ext mlsec_jupyter\nimport time\nfrom sklearn.datasets import load_iris")

    main = kc.execute("X, y = load_iris(return_X_y=True)\nimport os\n"  # runs until the test says so
                      "while not os.path.exists('go'):\n    time.sleep(0.05)")
    messages = _wait_for(kc, lambda m: m["msg_type"] == "execute_input" and m["parent_header"].get("msg_id") == main)
    sub = _execute_in(kc, "X2, y2 = load_iris(return_X_y=True)", reply["content"]["subshell_id"])
    messages += _wait_for(kc, lambda m: (_card(m) or {}).get("status") == "done"
                          and m["parent_header"].get("msg_id") == sub)
    assert _card(messages[-1])["subject"] == "X2, y2"
    assert not [m for m in messages if m["parent_header"].get("msg_id") == main and _card(m)], \
        "the subshell's card came before the main cell ended (it ran beside it)"
    (tmp_path / "go").touch()  # the main cell may end now
    messages += _wait_for(kc, lambda m: (_card(m) or {}).get("status") == "done"
                          and m["parent_header"].get("msg_id") == main)
    assert _card(messages[-1])["subject"] == "X, y"  # the main cell has ended (its card comes after it)
    assert not [m for m in messages if m["msg_type"] in ("error", "stream")
                and m["parent_header"].get("msg_id") in (main, sub)], "no error or stray output in either cell"


GIGABYTE_CELLS = """
import gc, weakref, numpy as np, psutil
rows, cols = 1_000_000, 128  # 1.02 GB of float64
out = np.lib.format.open_memmap("big.npy", mode="w+", dtype=np.float64, shape=(rows, cols))
for start in range(0, rows, 100_000):
    out[start:start + 100_000] = np.random.default_rng(start).standard_normal((100_000, cols))
out.flush(); del out
"""


def test_a_checked_gigabyte_array_is_freed_after_del(kernel):
    """R8: after its card, ``del`` of a 1 GB array frees it: no reference is kept by us (caches, cards,
    closures, tracebacks), and the kernel's resident memory drops by about its size."""
    kc = kernel
    _execute(kc, "%load_ext mlsec_jupyter\n%mlsec config time_budget=10\n" + GIGABYTE_CELLS)
    _execute(kc, "X = np.load('big.npy')\ny = (X[:, 0] > 0).astype(int)")
    probe = kc.execute("%mlsec wait\nref = weakref.ref(X)\nrss = psutil.Process().memory_info().rss\n"
                       "del X, y; gc.collect()\n"
                       "print(ref() is None, round((rss - psutil.Process().memory_info().rss) / 2**20))")
    line = re.compile(r"^(True|False) (-?\d+)$", re.M)
    out = _wait_for(kc, lambda m: m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == probe
                    and line.search(m["content"]["text"]) is not None, timeout=180)
    freed, dropped_mb = line.search(out[-1]["content"]["text"]).groups()
    assert freed == "True", "something still holds the array"
    assert int(dropped_mb) >= 900, f"resident memory dropped by only {dropped_mb} MB"
