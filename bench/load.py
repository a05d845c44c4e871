#!/usr/bin/env python
"""Load benchmark for mlsec-jupyter: the fault and load figures L1–L9 of notes/reliability.md §5.

In real kernels (the same kernel driver as bench/overhead.py):

* **L1, L2, L7**: a 500-cell notebook (20 cells that make a data set, 2 model fits, 1 DataLoader, the
  rest ordinary cells) run once in a kernel without the extension and once with it; the kernel-side
  duration of every cell (``execute_input`` → ``execute_reply``, kernel clocks), and the error messages
  and "Error in callback" lines of the run.
* **L4, L6**: after the run, the cards and cache entries the session holds, how many user objects
  they keep alive, and the counts of timed-out, failed and cancelled checks.
* **L3**: RSS growth after ``del`` + ``gc`` of an 800 MB array the checks read, with and without the
  extension.
* **L5**: interrupt → running check cancelled: from ``interrupt_kernel()`` to the card update that
  says "cancelled" (several trials).
* **L8**: GPU memory: reported as not measurable on a machine without CUDA.
* **L9**: the privacy ledger and the audit log after ``kill -9`` of a writer mid-run (100 trials):
  every file parses, at most the record being written is lost.

Run from the repository root: ``.venv/bin/python bench/load.py`` (``--quick`` for a smoke run). It
prints a markdown report and writes its section of ``bench/RESULTS.md``. Nothing here is a test: a
missed target is reported, never a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import overhead  # bench/ is on sys.path when run as a script
from _results import machine, markdown_table, write_section
from overhead import CARD_MIME, Kernel

REPO = Path(__file__).resolve().parents[1]

TARGETS = {"L1 p50 ms": 1.0, "L1 p99 ms": 10.0, "L2 p99 ms": 50.0, "L3 MB": 20.0, "L5 ms": 500.0}


# -- the 500-cell notebook ---------------------------------------------------------------------
def notebook_cells(n_cells: int) -> list[tuple[str, str]]:
    """``(kind, source)`` for each cell: "plain", "data" (a load), "fit" or "loader"; always the same. The
    first special cell makes data (the fits and the loader use ``X0, y0``)."""
    rng = random.Random(0)
    special = sorted(rng.sample(range(5, n_cells), 23))
    rest = ["data"] * 19 + ["fit", "fit", "loader"]
    rng.shuffle(rest)
    kinds = dict(zip(special, ["data"] + rest))
    cells = [("setup", "import numpy as np\nimport torch\nfrom sklearn.datasets import make_classification\n"
                       "from sklearn.linear_model import LogisticRegression\n"
                       "from sklearn.ensemble import RandomForestClassifier\n"
                       "from torch.utils.data import DataLoader, TensorDataset")]
    made = fits = 0
    for i in range(1, n_cells):
        kind = kinds.get(i, "plain")
        if kind == "data":
            cells.append((kind, f"X{made}, y{made} = make_classification(n_samples={2000 + 100 * made}, "
                                f"n_features=20, random_state={made})"))
            made += 1
        elif kind == "fit":
            model = "LogisticRegression(max_iter=500)" if fits == 0 else "RandomForestClassifier(50, random_state=0)"
            cells.append((kind, f"clf{fits} = {model}.fit(X0, y0)"))
            fits += 1
        elif kind == "loader":
            cells.append((kind, "loader = DataLoader(TensorDataset(torch.tensor(X0, dtype=torch.float32), "
                                "torch.tensor(y0)), batch_size=64, shuffle=True)"))
        else:
            cells.append((kind, rng.choice([
                f"a{i} = {i} * 2", f"s = sum(range({i * 10}))", f"words = ['w{i}'] * 3\nlen(words)",
                f"d = {{'k': {i}}}\nd['k'] + 1", f"t = np.arange({i}).sum()", f"print('cell {i}')",
                f"x = [j * j for j in range({i})]", "import math\nmath.sqrt(2.0)"])))
    return cells


#: Run in the kernel right after ``%load_ext``: wraps the extension's input transformer and its two cell hooks
#: with timers, so each cell's time on the main thread in our code is known apart from the time the cell
#: loses to checks running in the background (CPU and GIL contention).
TIME_HOOKS = textwrap.dedent("""
    import time as _t
    from mlsec_jupyter import extension as _e
    _x, _ip = _e.current(), get_ipython()
    _hook_seconds, _spent, _busy = [], [0.0], [False]

    def _timed(func, last=False):
        def timed(*args, **kwargs):
            _busy[0] = _busy[0] or _x.session.runner.busy > 0  # checks queued or running beside the cell
            start = _t.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                _spent[0] += _t.perf_counter() - start
                if last:
                    _hook_seconds.append((_spent[0], _busy[0]))
                    _spent[0], _busy[0] = 0.0, False
        return timed

    _ip.input_transformers_post[_ip.input_transformers_post.index(_x.gate)] = _timed(_x.gate)
    for _event, _func in (("pre_run_cell", _x.pre_run_cell), ("post_run_cell", _x.post_run_cell)):
        _ip.events.unregister(_event, _func)
        _ip.events.register(_event, _timed(_func, last=_event == "post_run_cell"))
""")


def hook_seconds(kernel: Kernel) -> list[list]:
    """``[seconds, checks were running]`` for each cell since :data:`TIME_HOOKS` ran: its time in our hooks."""
    out = kernel.execute("import json as _j\nprint(_j.dumps(_hook_seconds))")["stdout"]
    return json.loads(out.strip().splitlines()[-1])


def run_notebook(kernel: Kernel, cells: list[tuple[str, str]]) -> dict[str, Any]:
    """Run the cells in order; kernel-side seconds per cell, error messages and callback errors."""
    durations, errors, callback_errors = [], 0, 0
    for _, source in cells:
        r = kernel.execute(source)
        durations.append(r["kernel"])
        errors += len(r["errors"]) + (r["status"] != "ok")
        callback_errors += r["stdout"].count("Error in callback")
    for _, m in kernel.iopub:
        if m["msg_type"] == "stream" and "Error in callback" in m["content"].get("text", ""):
            callback_errors += 1
    return {"durations": durations, "errors": errors, "callback_errors": callback_errors}


def quantiles_ms(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return 1000 * statistics.median(ordered), 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def session_state(kernel: Kernel) -> dict[str, Any]:
    """L4 and L6: cards and cache entries held, user objects they keep alive, check outcome counts."""
    code = textwrap.dedent("""
        import gc as _g, json as _j, weakref as _w
        from mlsec_jupyter import extension as _e
        _s = _e.current().session
        get_ipython().run_line_magic("mlsec", "wait 300")
        _refs = [_w.ref(v) for k, v in list(globals().items()) if k[:1] in "Xy" and k[1:].isdigit()]
        for _k in [k for k in list(globals()) if k[:1] in "Xy" and k[1:].isdigit()]:
            del globals()[_k]
        _g.collect()
        print(_j.dumps({"cards": len(_s.cards), "cache": len(getattr(_s.runner.cache, "_items", {}) or {}),
                        "counters": _s.runner.counters, "tracked": len(_refs),
                        "alive_after_del": sum(r() is not None for r in _refs)}))
    """)
    out = kernel.execute(code, timeout=400)["stdout"]
    return json.loads(out.strip().splitlines()[-1])


# -- L3: memory after del ------------------------------------------------------------------------
MEMORY_CELLS = [
    "import gc, os, psutil, numpy as np\nrss = lambda: psutil.Process().memory_info().rss / 2**20",
    "def make_big(rows):\n    return np.random.default_rng(0).normal(size=(rows, 50))",
    # a first, small data set: the checks import their libraries (scikit-learn, scipy) before r0
    "Xsmall = make_big(20000)",
    "get_ipython().run_line_magic('mlsec', 'wait 300') if 'mlsec' in get_ipython().magics_manager.magics['line'] else None",
    "from sklearn.neighbors import NearestNeighbors\nfrom sklearn.ensemble import IsolationForest\n"
    "from sklearn.discriminant_analysis import LinearDiscriminantAnalysis\ndel Xsmall\ngc.collect(); r0 = rss()",
    "Xbig = make_big({rows})",
    "get_ipython().run_line_magic('mlsec', 'wait 300') if 'mlsec' in get_ipython().magics_manager.magics['line'] else None",
    "del Xbig\ngc.collect(); import json; print(json.dumps({{'growth_mb': rss() - r0}}))",
]


def memory_growth(kernel: Kernel, rows: int) -> float:
    for source in MEMORY_CELLS[:-1]:
        kernel.execute(source.format(rows=rows), timeout=400)
    out = kernel.execute(MEMORY_CELLS[-1].format(rows=rows))["stdout"]
    return float(json.loads(out.strip().splitlines()[-1])["growth_mb"])


# -- L5: interrupt → cancelled --------------------------------------------------------------------
SLOW_CHECK = ("from sklearn.datasets import make_classification\nfrom sklearn.ensemble import RandomForestClassifier\n"
              "from sklearn.model_selection import train_test_split\n"
              "Xs, ys = make_classification(n_samples=20000, n_features=30, random_state={seed})\n"
              "Xs_train, Xs_test, ys_train, ys_test = train_test_split(Xs, ys, random_state=0)\n"
              "forest = RandomForestClassifier(200, random_state=0).fit(Xs_train, ys_train)")


def cancellation_latency(kernel: Kernel, seed: int) -> float | None:
    """Seconds from the interrupt (sent while a later cell runs) to the card update saying "cancelled"."""
    forest = kernel.execute(SLOW_CHECK.format(seed=seed), timeout=300)["msg_id"]
    ids = {(_card_of(m) or {}).get("card_id") for _, m in kernel.for_parent(forest)} - {None}
    msg_id = kernel.kc.execute("import time\ntime.sleep(30)")
    kernel.wait(lambda: any(m["msg_type"] == "execute_input" for _, m in kernel.for_parent(msg_id)), 30)
    time.sleep(1.0)  # the checks of the forest's card are running now
    seen = len(kernel.iopub)
    sent = time.perf_counter()
    kernel.km.interrupt_kernel()

    def cancelled() -> list[float]:
        return [t for t, m in kernel.iopub[seen:] if m["msg_type"] in ("update_display_data", "display_data")
                and (_card_of(m) or {}).get("card_id") in ids
                and any(c.get("status") == "cancelled" for c in (_card_of(m) or {}).get("checks", []))]

    if not ids or not kernel.wait(lambda: bool(cancelled()), 30):
        return None
    kernel.wait(lambda: msg_id in kernel.replies, 30)
    return cancelled()[0] - sent


def _card_of(msg: dict[str, Any]) -> dict[str, Any] | None:
    return (msg.get("content", {}).get("data") or {}).get(CARD_MIME)


# -- L9: kill -9 mid-write -----------------------------------------------------------------------
WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from mlsec_jupyter.audit import AuditLog
    from mlsec_jupyter.findings import Finding, RiskCard
    from mlsec_jupyter.privacy.ledger import Ledger
    ledger, audit = Ledger({folder!r}), AuditLog({folder!r})
    prefix = sys.argv[1]
    for i in range(10**9):
        ledger.record({key!r}, run_id=f"{{prefix}}-{{i}}", history=[(1.0 + i / 1000, 0.01, i + 1)], label="x" * 2000)
        card = RiskCard(f"{{prefix}}-{{i}}")
        card.add([Finding("data.integrity", "info", "t" * 500, "s" * 2000)])
        audit.append_card(card)
        if i == 0:
            print("ready", flush=True)
""")
KEY = "3f9a" * 16


def kill_trials(n_trials: int, folder: Path) -> dict[str, Any]:
    from mlsec_jupyter.audit import read_audit
    from mlsec_jupyter.privacy.ledger import Ledger

    code = WRITER.format(root=str(REPO), folder=str(folder), key=KEY)
    rng = random.Random(0)
    parse_failures, bad_prefix, gaps, written = 0, 0, [], 0
    for trial in range(n_trials):
        proc = subprocess.Popen([sys.executable, "-c", code, f"t{trial}"], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.2))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
        try:
            ledger_runs = sorted(int(e.run_id.split("-")[1]) for e in Ledger(folder).entries(KEY)
                                 if e.run_id.startswith(f"t{trial}-"))
        except Exception:
            parse_failures += 1
            continue
        audit_runs = sorted({int(r["subject"].split("-")[1]) for r in read_audit(folder / "audit.jsonl")
                             if str(r.get("subject", "")).startswith(f"t{trial}-")})
        # each step writes ledger record i, then audit record i: a kill loses at most the one in flight
        bad_prefix += ledger_runs != list(range(len(ledger_runs))) or audit_runs != list(range(len(audit_runs)))
        gaps.append(len(ledger_runs) - len(audit_runs))
        written += len(ledger_runs)
    torn = sum(1 for line in (folder / "audit.jsonl").read_bytes().splitlines() if not _parses(line))
    return {"trials": n_trials, "ledger_parse_failures": parse_failures, "records": written,
            "not_a_prefix": bad_prefix, "max_lost_per_trial": max(gaps) if gaps else None,
            "torn_audit_lines": torn}


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
        return True
    except ValueError:
        return False


# -- report --------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer cells and trials")
    args = parser.parse_args()
    n_cells, big_rows, trials, cancels = (60, 200_000, 5, 1) if args.quick else (500, 2_000_000, 100, 5)
    overhead._TMP = Path(tempfile.mkdtemp(prefix="mlsec-load-"))
    try:
        report = measure(n_cells, big_rows, trials, cancels)
    finally:
        shutil.rmtree(overhead._TMP, ignore_errors=True)
    print(report)
    if not args.quick:
        write_section(REPO / "bench" / "RESULTS.md", "load", report)


def measure(n_cells: int, big_rows: int, trials: int, cancels: int) -> str:
    cells = notebook_cells(n_cells)
    runs: dict[str, dict[str, Any]] = {}
    growth: dict[str, float] = {}
    state: dict[str, Any] = {}
    latencies: list[float | None] = []
    for mode in ("plain", "mlsec"):
        kernel = Kernel(f"notebook-{mode}")
        try:
            if mode == "mlsec":
                kernel.execute("%load_ext mlsec_jupyter")
                kernel.execute(TIME_HOOKS)
            runs[mode] = run_notebook(kernel, cells)
            if mode == "mlsec":
                # the first entry is the TIME_HOOKS cell's own post_run_cell (its timer was in place by then)
                runs[mode]["hooks"] = hook_seconds(kernel)[1:len(cells) + 1]
                state = session_state(kernel)
        finally:
            kernel.close()
        kernel = Kernel(f"memory-{mode}")
        try:
            if mode == "mlsec":
                kernel.execute("%load_ext mlsec_jupyter")
            growth[mode] = memory_growth(kernel, big_rows)
        finally:
            kernel.close()
    kernel = Kernel("cancel")
    try:
        kernel.execute("%load_ext mlsec_jupyter")
        latencies = [cancellation_latency(kernel, seed) for seed in range(cancels)]
    finally:
        kernel.close()
    kill = kill_trials(trials, overhead._TMP / "ledger")
    return render(cells, runs, state, growth, latencies, kill, big_rows)


def render(cells, runs, state, growth, latencies, kill, big_rows) -> str:
    rows = []
    for label, kinds in (("L1: cells that make nothing", {"plain"}), ("L2: cells that make data or a model",
                                                                        {"data", "fit", "loader"})):
        idx = [i for i, (k, _) in enumerate(cells) if k in kinds]
        plain = quantiles_ms([runs["plain"]["durations"][i] for i in idx])
        ours = quantiles_ms([runs["mlsec"]["durations"][i] for i in idx])
        added = quantiles_ms([runs["mlsec"]["durations"][i] - runs["plain"]["durations"][i] for i in idx])
        hooks = quantiles_ms([runs["mlsec"]["hooks"][i][0] for i in idx])
        rows.append({"cells": label, "n": len(idx), "p50 without (ms)": plain[0], "p50 with (ms)": ours[0],
                     "p99 without (ms)": plain[1], "p99 with (ms)": ours[1],
                     "added p50 (ms)": added[0], "added p99 (ms)": added[1],
                     "in our hooks p50 (ms)": hooks[0], "in our hooks p99 (ms)": hooks[1]})
    done = [x for x in latencies if x is not None]
    plain_cells = [i for i, (k, _) in enumerate(cells) if k == "plain"]
    quiet = [runs["mlsec"]["hooks"][i][0] for i in plain_cells if not runs["mlsec"]["hooks"][i][1]]
    beside = [runs["mlsec"]["hooks"][i][0] for i in plain_cells if runs["mlsec"]["hooks"][i][1]]
    split = " and ".join(f"{len(v)} cells {what}: p50 {quantiles_ms(v)[0]:.3f} ms, p99 {quantiles_ms(v)[1]:.3f} ms"
                         for what, v in (("with no check running", quiet), ("while checks ran", beside)) if v)
    lines = [
        "## Load and faults (L1–L9)",
        "",
        f"Machine: {machine()}.",
        "",
        f"A {len(cells)}-cell notebook in a real kernel, run once without and once with `%load_ext "
        f"mlsec_jupyter` (20 data sets, 2 fits, 1 DataLoader; kernel-side time per cell, paired by cell):",
        "",
        markdown_table(rows, list(rows[0])),
        "",
        f"- Targets: L1 p50 ≤ {TARGETS['L1 p50 ms']:g} ms and p99 ≤ {TARGETS['L1 p99 ms']:g} ms added; "
        f"L2 p99 ≤ {TARGETS['L2 p99 ms']:g} ms added.",
        "- \"Added\" is the cell's kernel-side time with the extension minus without it: our hooks on the main "
        "thread plus what the cell loses to checks running beside it (CPU and GIL). \"In our hooks\" is the "
        "main thread's time in the extension's input transformer and cell hooks alone, timed inside the kernel.",
        f"- L1 time in our hooks, {split}. The rest of the added time is the cell's own code running beside "
        "the checks (the CPU and the GIL are shared), which the hook timing leaves out.",
        f"- L7: error messages in the run with the extension: {runs['mlsec']['errors']} (without: "
        f"{runs['plain']['errors']}); \"Error in callback\": {runs['mlsec']['callback_errors']}.",
        f"- L4: after the run the session holds {state.get('cards')} cards and {state.get('cache')} cache "
        f"entries; of the {state.get('tracked')} data arrays the notebook made, "
        f"{state.get('alive_after_del')} stay alive after `del` + `gc.collect()` (target 0).",
        f"- L6: check outcomes over the run: {json.dumps(state.get('counters', {}))}.",
        f"- L3: RSS growth after `del` + `gc.collect()` (measured after a first small card, so library imports "
    f"are not counted) of a {big_rows:,} × 50 float64 array "
        f"({big_rows * 50 * 8 / 2**20:,.0f} MB) that the checks read: {growth['mlsec']:+.1f} MB with the "
        f"extension, {growth['plain']:+.1f} MB without (target ≤ {TARGETS['L3 MB']:g} MB).",
        f"- L5: interrupt → running check cancelled: " + (
            f"median {1000 * statistics.median(done):.0f} ms, max {1000 * max(done):.0f} ms over "
            f"{len(done)} of {len(latencies)} trials" if done else "no cancellation seen")
        + f" (target ≤ {TARGETS['L5 ms']:g} ms).",
        "- L8: GPU memory: not measurable here (no CUDA device on this machine).",
        f"- L9: `kill -9` of a process writing the privacy ledger and the audit log, {kill['trials']} "
        f"trials: ledger parse failures {kill['ledger_parse_failures']}, ledger records kept {kill['records']:,}, "
        f"trials whose records are not a gap-free prefix {kill['not_a_prefix']}, audit records behind the "
        f"ledger at most {kill['max_lost_per_trial']} (the one in flight), torn audit lines "
        f"{kill['torn_audit_lines']} (readers skip them).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
