#!/usr/bin/env python
"""Overhead benchmark for mlsec-jupyter: what the extension costs the user (DESIGN.md, performance budget).

Measures, prints a markdown table and writes ``bench/RESULTS.md``:

1. ``%load_ext mlsec_jupyter`` in a fresh kernel (one kernel per run), which heavy modules are in
   ``sys.modules`` before and after, and ``python -X importtime -c "import mlsec_jupyter.extension"``;
2. main-thread time the hooks add per ordinary cell, in-process, with 1,000 live variables
   (interleaved with/without blocks; plus the hooks timed alone and profiled);
3. in a real kernel: a 100,000 x 50 ``make_classification`` cell, from its ``execute_reply`` to the
   card frame and to the finished card, and the cell's own duration with and without the extension.

Run from the repository root: ``make bench`` or ``.venv/bin/python bench/overhead.py``
(``--quick`` for a smoke run). Nothing here is a test: it reports, it never fails on a missed goal.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as _dt
import gc
import io
import json
import math
import os
import platform
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from _results import demote, write_section  # bench/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CARD_MIME = "application/vnd.mlsec.riskcard+json"

# Goals (DESIGN.md performance budget, tightened for this bench by the issue).
GOAL_LOAD_S = 0.3
GOAL_CELL_P50_MS = 0.3
GOAL_CELL_P99_MS = 2.0
GOAL_CARD_DONE_S = 3.0

_T0 = time.monotonic()
_TMP = Path(tempfile.gettempdir())  # main() replaces it with a private folder it removes at the end


def progress(text: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {text}", flush=True)


# -- statistics ------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    """Percentile with linear interpolation (numpy's default); NaN for no values."""
    s = sorted(v for v in values if v is not None and not math.isnan(v))
    if not s:
        return float("nan")
    k = (len(s) - 1) * q / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def med(values: list[float]) -> float:
    return pct(values, 50)


def fmt(value: float, unit: str = "ms", digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f} {unit}"


# -- machine -----------------------------------------------------------------------------------------
def machine_info() -> dict[str, str]:
    info: dict[str, str] = {}
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info["CPU"] = model
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    info["cores"] = f"{os.cpu_count()} logical ({usable} usable by this process)"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                info["RAM"] = f"{kib / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        info["RAM"] = "unknown"
    info["OS"] = f"{platform.system()} {platform.release()}"
    info["Python"] = platform.python_version()
    from importlib.metadata import PackageNotFoundError, version

    for label, dist in (("IPython", "ipython"), ("ipykernel", "ipykernel"), ("jupyter_client", "jupyter_client"),
                        ("numpy", "numpy"), ("scikit-learn", "scikit-learn"), ("torch", "torch")):
        try:
            info[label] = version(dist)
        except PackageNotFoundError:
            info[label] = "not installed"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "mlsec_jupyter"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        info["commit"] = (commit or "unknown") + (" (+ uncommitted changes in mlsec_jupyter/)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        info["commit"] = "unknown"
    try:
        info["load average at start"] = " ".join(f"{v:.2f}" for v in os.getloadavg()) + " (1, 5, 15 min)"
    except OSError:
        pass
    info["date"] = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return info


def registered_checks() -> list[str]:
    """Check ids registered in this process (the kernel sees the same files)."""
    from mlsec_jupyter.checks.registry import all_checks

    return [f"{s.id} ({s.applies_to})" for s in all_checks()]


# -- a real kernel, driven like tests/test_kernel.py ---------------------------------------------
#: How child processes find compiled bytecode. "as-is": this environment unchanged (where
#: PYTHONDONTWRITEBYTECODE is set and the source tree has no __pycache__, every import of
#: mlsec_jupyter compiles it from source). "cached": bytecode written to and read from a private
#: PYTHONPYCACHEPREFIX, warmed up first, like an installed wheel (pip compiles on install).
MODES = ("cached", "as-is")


def child_env(mode: str = "as-is") -> dict[str, str]:
    env = dict(os.environ)
    ipydir = _TMP / "ipython"
    ipydir.mkdir(exist_ok=True)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["IPYTHONDIR"] = str(ipydir)  # no user profile, startup files or extensions
    if mode == "cached":
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(_TMP / "pycache")
    return env


def _stamp(msg: dict[str, Any]) -> float:
    """Kernel-side send time of a message (header date), as a POSIX timestamp."""
    date = msg["header"].get("date")
    if isinstance(date, str):
        date = _dt.datetime.fromisoformat(date.replace("Z", "+00:00"))
    return date.timestamp()


class Kernel:
    """A fresh kernel; one thread polls the shell and IOPub sockets and stamps arrival times."""

    def __init__(self, name: str, mode: str = "as-is") -> None:
        import zmq
        from jupyter_client.manager import start_new_kernel

        self.cwd = _TMP / name
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.log = open(self.cwd / "kernel.log", "w")  # the kernel's own stderr (TCP warning etc.)
        t0 = time.perf_counter()
        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(self.cwd), stderr=self.log,
                                            env=child_env(mode), startup_timeout=120)
        self.start_seconds = time.perf_counter() - t0
        self.poller = zmq.Poller()
        self.poller.register(self.kc.shell_channel.socket, zmq.POLLIN)
        self.poller.register(self.kc.iopub_channel.socket, zmq.POLLIN)
        self.iopub: list[tuple[float, dict[str, Any]]] = []  # (client receive time, message)
        self.replies: dict[str, tuple[float, dict[str, Any]]] = {}

    def close(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            self.km.shutdown_kernel(now=True)
            self.log.close()

    def pump(self, timeout: float) -> None:
        """Receive whatever arrives within ``timeout`` seconds (returns after the first batch)."""
        events = dict(self.poller.poll(int(timeout * 1000)))
        now = time.perf_counter()
        if self.kc.shell_channel.socket in events:
            for msg in _ready(self.kc.shell_channel):
                self.replies[msg["parent_header"].get("msg_id", "")] = (now, msg)
        if self.kc.iopub_channel.socket in events:
            for msg in _ready(self.kc.iopub_channel):
                self.iopub.append((now, msg))

    def wait(self, done: Callable[[], bool], timeout: float) -> bool:
        end = time.perf_counter() + timeout
        while not done():
            left = end - time.perf_counter()
            if left <= 0:
                return False
            self.pump(min(left, 0.05))
        return True

    def for_parent(self, msg_id: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.iopub if m["parent_header"].get("msg_id") == msg_id]

    def _idle(self, msg_id: str) -> bool:
        return any(m["msg_type"] == "status" and m["content"].get("execution_state") == "idle"
                   for _, m in self.for_parent(msg_id))

    def execute(self, code: str, timeout: float = 180.0) -> dict[str, Any]:
        """Run ``code``; return timings (client round trip, kernel-side duration), stdout and the reply."""
        t0 = time.perf_counter()
        msg_id = self.kc.execute(code)
        if not self.wait(lambda: msg_id in self.replies and self._idle(msg_id), timeout):
            raise TimeoutError(f"no reply within {timeout} s for {code[:60]!r}")
        recv, reply = self.replies[msg_id]
        mine = self.for_parent(msg_id)
        started = [m for _, m in mine if m["msg_type"] == "execute_input"]
        kernel_s = _stamp(reply) - _stamp(started[0]) if started else float("nan")
        stdout = "".join(m["content"]["text"] for _, m in mine
                         if m["msg_type"] == "stream" and m["content"].get("name") == "stdout")
        errors = [m["content"] for _, m in mine if m["msg_type"] == "error"]
        return {"msg_id": msg_id, "roundtrip": recv - t0, "kernel": kernel_s, "reply": reply,
                "reply_recv": recv, "stdout": stdout, "status": reply["content"].get("status"), "errors": errors}


def _ready(channel: Any) -> list[dict[str, Any]]:
    """Every message already waiting on ``channel`` (``get_msgs()`` would block: it polls forever)."""
    import queue

    out = []
    while True:
        try:
            out.append(channel.get_msg(timeout=0))
        except queue.Empty:
            return out


def _card(msg: dict[str, Any]) -> dict[str, Any] | None:
    return (msg.get("content", {}).get("data") or {}).get(CARD_MIME)


# -- part 1: loading ---------------------------------------------------------------------------------
_MODULES_CELL = (
    "import sys as _mlsec_bench_sys, json as _mlsec_bench_json\n"
    "print(_mlsec_bench_json.dumps({'sklearn': 'sklearn' in _mlsec_bench_sys.modules,"
    " 'torch': 'torch' in _mlsec_bench_sys.modules, 'numpy': 'numpy' in _mlsec_bench_sys.modules,"
    " 'modules': sorted(_mlsec_bench_sys.modules)}))"
)


def bench_load(runs: int, mode: str) -> dict[str, Any]:
    progress(f"part 1 [{mode} bytecode]: %load_ext in {runs} fresh kernels")
    if mode == "cached":  # compile everything the kernel and the extension import, once
        warm = Kernel("load-warmup", mode)
        try:
            warm.execute("%load_ext mlsec_jupyter")
        finally:
            warm.close()
    out: dict[str, Any] = {"load_roundtrip": [], "load_kernel": [], "pass_roundtrip": [], "kernel_start": [],
                           "before": None, "after": None, "new_modules": [], "errors": []}
    for i in range(runs):
        k = Kernel(f"load-{mode}-{i}", mode)
        try:
            out["kernel_start"].append(k.start_seconds)
            before = json.loads(k.execute(_MODULES_CELL)["stdout"])
            for _ in range(2):
                baseline = k.execute("pass")
            out["pass_roundtrip"].append(baseline["roundtrip"])
            res = k.execute("%load_ext mlsec_jupyter")
            if res["status"] != "ok" or res["errors"]:
                out["errors"].append(res["errors"] or res["reply"]["content"])
            out["load_roundtrip"].append(res["roundtrip"])
            out["load_kernel"].append(res["kernel"])
            after = json.loads(k.execute(_MODULES_CELL)["stdout"])
        finally:
            k.close()
        new = sorted(set(after["modules"]) - set(before["modules"]))
        if i == 0:
            out["before"], out["after"] = before, after
            out["new_modules"] = new
        progress(f"  run {i + 1}/{runs}: %load_ext {res['roundtrip'] * 1000:.1f} ms round trip "
                 f"({res['kernel'] * 1000:.1f} ms in kernel); sklearn/torch before "
                 f"{before['sklearn']}/{before['torch']}, after {after['sklearn']}/{after['torch']}; "
                 f"{len(new)} new modules")
    return out


_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S.*)$")


def _importtime(code: str, mode: str) -> list[tuple[int, int, int, str]]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=str(_TMP), env=child_env(mode),
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"importtime run failed: {proc.stderr[-2000:]}")
    rows = []
    for line in proc.stderr.splitlines():
        m = _IMPORT_LINE.match(line)
        if m:
            rows.append((int(m.group(1)), int(m.group(2)), len(m.group(3)) // 2, m.group(4).strip()))
    return rows


def bench_importtime(runs: int, mode: str) -> dict[str, Any]:
    progress(f"part 1b [{mode} bytecode]: python -X importtime, {runs} runs each")
    bare, incremental, numpy_ms, heavy = [], [], [], {}
    if mode == "cached":
        _importtime("import IPython, ipykernel.ipkernel\nimport mlsec_jupyter.extension", mode)
    for _ in range(runs):
        rows = _importtime("import mlsec_jupyter.extension", mode)
        bare.append(sum(r[0] for r in rows) / 1e6)
        # With IPython and ipykernel already imported (as in a kernel): only what our import adds.
        rows = _importtime("import IPython, ipykernel.ipkernel\nimport mlsec_jupyter.extension", mode)
        adds = [r for r in rows if r[2] == 0 and r[3].startswith("mlsec_jupyter")]
        incremental.append(sum(r[1] for r in adds) / 1e6)
        group: list[tuple[int, int, int, str]] = []
        numpy_here = 0
        for r in rows:  # per top-level group: entries are printed after their children
            group.append(r)
            if r[2] == 0:
                if r[3].startswith("mlsec_jupyter"):
                    for row in group:
                        heavy.setdefault(row[3], []).append(row[0] / 1e3)
                        if row[3] == "numpy":
                            numpy_here += row[1]
                group = []
        numpy_ms.append(numpy_here / 1e3)
    top = sorted(((med(v), k) for k, v in heavy.items()), reverse=True)[:8]
    progress(f"  bare import {med(bare) * 1000:.1f} ms; with IPython/ipykernel loaded it adds "
             f"{med(incremental) * 1000:.1f} ms (numpy {med(numpy_ms):.1f} ms of it)")
    return {"bare": bare, "incremental": incremental, "numpy_ms": numpy_ms, "heaviest": top}


# -- part 2: per-cell main-thread cost, in-process -------------------------------------------------
_PLAIN = [
    "a = 1", "b = a + 1", "s = 'x' * 3", "c = [a, b]", "d = {'k': b}", "e = len(s) + b",
    "f = a * 2.5", "g = s.upper()", "h = c + [d]", "t = (a, b, s)", "if a:\n    k = b * 2",
    "for j in range(3):\n    a = j\na = 1",
]
# Mention trigger words but make nothing: the regex hits, the AST is parsed, nothing is recorded.
_TRIGGER_ONLY = ["# fit later", "n_splits = 5  # split later", "loaded = False", "parts = s.split('x')",
                 "def refit(m):\n    return m.fit"]
# A load-like call that makes nothing watchable: the namespace snapshot is taken (1,000 names).
_LOAD_LIKE = ["cfg = json.loads('{\"k\": 1}')"]


def _cells(n: int) -> list[tuple[str, str]]:
    cells = []
    for i in range(n):
        if i % 50 == 25:
            cells.append(("load-like (snapshot)", _LOAD_LIKE[(i // 50) % len(_LOAD_LIKE)]))
        elif i % 20 == 10:
            cells.append(("trigger word only", _TRIGGER_ONLY[(i // 20) % len(_TRIGGER_ONLY)]))
        else:
            cells.append(("plain", _PLAIN[i % len(_PLAIN)]))
    return cells


def _live_variables(n: int) -> dict[str, Any]:
    import numpy as np

    ns: dict[str, Any] = {}
    for i in range(n):
        kind = i % 4
        if kind == 0:
            ns[f"v{i:04d}"] = i
        elif kind == 1:
            ns[f"v{i:04d}"] = np.arange(8, dtype=np.float64) + i
        elif kind == 2:
            ns[f"v{i:04d}"] = list(range(i % 7))
        else:
            ns[f"v{i:04d}"] = f"value {i}"
    return ns


def _shell():
    from traitlets.config import Config
    from IPython.core.interactiveshell import InteractiveShell

    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    cfg.InteractiveShell.colors = "nocolor"
    return InteractiveShell.instance(config=cfg)


def bench_cells(n_cells: int, n_vars: int, rounds: int, block: int) -> dict[str, Any]:
    progress(f"part 2: {n_cells} cells x {rounds} rounds, {n_vars} live variables, in-process")
    old_cwd = os.getcwd()
    os.chdir(_TMP)  # the extension's audit folder lands here
    try:
        return _bench_cells(n_cells, n_vars, rounds, block)
    finally:
        os.chdir(old_cwd)


def _bench_cells(n_cells: int, n_vars: int, rounds: int, block: int) -> dict[str, Any]:
    from IPython.core.interactiveshell import ExecutionInfo, ExecutionResult

    shell = _shell()
    shell.user_ns.update(_live_variables(n_vars))
    shell.run_cell("import json\nimport numpy as np\na = 1\nb = 2\ns = 'xxx'\nc = [a, b]\nd = {'k': b}",
                   store_history=True)
    shell.run_line_magic("load_ext", "mlsec_jupyter")
    from mlsec_jupyter.extension import current

    ext = current()
    if ext is None:
        raise RuntimeError("%load_ext mlsec_jupyter did not install the extension")

    def hooks(on: bool) -> None:
        for event, cb in (("pre_run_cell", ext.pre_run_cell), ("post_run_cell", ext.post_run_cell)):
            registered = cb in shell.events.callbacks[event]
            if on and not registered:
                shell.events.register(event, cb)
            elif not on and registered:
                shell.events.unregister(event, cb)

    cells = _cells(n_cells)
    failures = []
    input_var = re.compile(r"_i\d+$")

    def prune() -> None:
        """Drop the ``_i<n>`` input-history names IPython adds per cell, so every block sees the same
        namespace (1,000 variables plus IPython's own) instead of one that grows with the bench."""
        for name in [n for n in shell.user_ns if input_var.match(n)]:
            del shell.user_ns[name]

    def run_block(part: list[tuple[int, tuple[str, str]]]) -> dict[int, int]:
        times = {}
        clock = time.perf_counter_ns
        for idx, (_, code) in part:
            t0 = clock()
            result = shell.run_cell(code, store_history=True)
            t1 = clock()
            times[idx] = t1 - t0
            if not result.success:
                failures.append(code)
        return times

    indexed = list(enumerate(cells))
    blocks = [indexed[i:i + block] for i in range(0, len(indexed), block)]
    # warm-up, not recorded
    hooks(False)
    run_block(indexed)
    hooks(True)
    run_block(indexed)

    with_ns: dict[tuple[int, int], int] = {}
    without_ns: dict[tuple[int, int], int] = {}
    flip = False
    for r in range(rounds):
        for b in blocks:
            order = (True, False) if flip else (False, True)
            flip = not flip
            for on in order:
                hooks(on)
                prune()
                gc.collect()
                times = run_block(b)
                target = with_ns if on else without_ns
                for idx, t in times.items():
                    target[(r, idx)] = t
        progress(f"  round {r + 1}/{rounds} done")
    hooks(True)

    def summary(keys: list[tuple[int, int]]) -> dict[str, float]:
        w = [with_ns[k] / 1e6 for k in keys]
        wo = [without_ns[k] / 1e6 for k in keys]
        diff = [a - b for a, b in zip(w, wo)]
        return {"n": len(keys), "with_p50": med(w), "with_p99": pct(w, 99), "without_p50": med(wo),
                "without_p99": pct(wo, 99), "diff_p50": med(diff), "diff_p99": pct(diff, 99),
                "p99_gap": pct(w, 99) - pct(wo, 99), "with_mean": statistics.fmean(w),
                "without_mean": statistics.fmean(wo)}

    keys = sorted(with_ns)
    by_kind = {}
    for kind in ("plain", "trigger word only", "load-like (snapshot)"):
        sel = [k for k in keys if cells[k[1]][0] == kind]
        if sel:
            by_kind[kind] = summary(sel)
    cell_stats = {"all": summary(keys), "by_kind": by_kind, "failures": sorted(set(failures))}
    s = cell_stats["all"]
    progress(f"  added per cell: p50 {s['diff_p50']:.4f} ms, p99 {s['diff_p99']:.4f} ms "
             f"(with p50 {s['with_p50']:.4f} / without p50 {s['without_p50']:.4f} ms)")

    # The hooks alone, called directly with real ExecutionInfo / ExecutionResult objects.
    progress("part 2b: hooks alone")
    hooks(False)
    pre_ms: dict[str, list[float]] = {}
    post_ms: dict[str, list[float]] = {}
    both_ms: dict[str, list[float]] = {}
    clock = time.perf_counter_ns

    def call_hooks(record: bool) -> None:
        for kind, code in cells:
            info = ExecutionInfo(code, True, False, True, "bench-cell")
            result = ExecutionResult(info)
            result.execution_count = 1
            t0 = clock()
            ext.pre_run_cell(info)
            t1 = clock()
            ext.post_run_cell(result)
            t2 = clock()
            if record:
                for store, value in ((pre_ms, t1 - t0), (post_ms, t2 - t1), (both_ms, t2 - t0)):
                    store.setdefault(kind, []).append(value / 1e6)
                    store.setdefault("all", []).append(value / 1e6)

    prune()
    ns_size = (len(shell.user_ns), sum(1 for n in shell.user_ns if not n.startswith("_")))
    call_hooks(False)
    for _ in range(rounds):
        gc.collect()
        call_hooks(True)
    hook_stats = {kind: {"pre_p50": med(pre_ms[kind]), "pre_p99": pct(pre_ms[kind], 99),
                         "post_p50": med(post_ms[kind]), "post_p99": pct(post_ms[kind], 99),
                         "both_p50": med(both_ms[kind]), "both_p99": pct(both_ms[kind], 99),
                         "n": len(both_ms[kind])}
                  for kind in both_ms}
    h = hook_stats["all"]
    progress(f"  hooks alone: p50 {h['both_p50']:.4f} ms, p99 {h['both_p99']:.4f} ms")

    # Where the hook time goes (always recorded; it matters most when a goal is missed).
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(rounds):
        call_hooks(False)
    profiler.disable()
    buf = io.StringIO()
    stats = pstats.Stats(profiler, stream=buf)
    stats.sort_stats("tottime").print_stats(14)
    profile_text = _trim_profile(buf.getvalue())
    shares = _profile_shares(stats)

    hooks(True)
    shell.run_line_magic("unload_ext", "mlsec_jupyter")
    return {"cells": cell_stats, "hooks": hook_stats, "profile": profile_text, "n_cells": n_cells,
            "n_vars": n_vars, "rounds": rounds, "ns_size": ns_size,
            "shares": shares}


def _profile_shares(stats: pstats.Stats) -> dict[str, float]:
    """Share of the hooks' profiled time spent in a few known places (cumulative time / total)."""
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(ct for (file, _, func), (_, _, _, ct, _) in raw.items()
                if func == "call_hooks" and file.endswith("overhead.py"))
    if not total:
        return {}
    places = {
        "IPython transform_cell (re-tokenising the cell in pre_run_cell)":
            lambda f, fn: fn == "transform_cell" and f.endswith("interactiveshell.py"),
        "parse_cell (trigger regex + AST)": lambda f, fn: fn == "parse_cell" and f.endswith("cell.py"),
        "namespace Snapshot (taken before load-like cells)":
            lambda f, fn: fn == "__init__" and f.endswith("namespace.py"),
        "Snapshot.changed (after load-like cells)": lambda f, fn: fn == "changed" and f.endswith("namespace.py"),
        "Assembler.build": lambda f, fn: fn == "build" and f.endswith("assemble.py"),
    }
    out = {}
    for label, match in places.items():
        out[label] = sum(ct for (file, _, func), (_, _, _, ct, _) in raw.items() if match(file, func)) / total
    return out


def _trim_profile(text: str) -> str:
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if l.strip().startswith("ncalls")), 0)
    head = [l for l in lines[:start] if "function calls" in l]
    body = [re.sub(r"\S*/(site-packages|mlsec_jupyter)/", r"\1/", l.replace(str(REPO) + "/", ""))
            for l in lines[start:] if l.strip()]
    return "\n".join(head + body)


# -- part 3: a data cell in a real kernel --------------------------------------------------------
_DATA_CELL = ("X, y = make_classification(n_samples=100_000, n_features=50, n_informative=10, "
              "random_state={seed})")
_SETUP = "from sklearn.datasets import make_classification\nimport numpy as np"
# Times the extension's two hooks in place (main thread), without changing what they do: each
# registered hook of the loaded extension is replaced by a wrapper that calls it and records how long
# it took, with the first line of the cell it ran for. Names start with "_" so the watcher ignores them.
_PROBE = """
import time as _mlsec_bench_time
_mlsec_bench_hooks = []
def _mlsec_bench_install():
    from mlsec_jupyter.extension import current
    ext, ip = current(), get_ipython()
    def wrap(cb, event):
        def timed(arg=None):
            t0 = _mlsec_bench_time.perf_counter_ns()
            try:
                return cb(arg)
            finally:
                info = getattr(arg, "info", arg)
                _mlsec_bench_hooks.append((event, _mlsec_bench_time.perf_counter_ns() - t0,
                                          (getattr(info, "raw_cell", "") or "")[:80]))
        return timed
    for event in ("pre_run_cell", "post_run_cell"):
        cbs = ip.events.callbacks[event]
        for i, cb in enumerate(cbs):
            if getattr(cb, "__self__", None) is ext:
                cbs[i] = wrap(cb, event)
_mlsec_bench_install()
"""
_READ_PROBE = ("import json as _mlsec_bench_json\n"
               "print(_mlsec_bench_json.dumps([h for h in _mlsec_bench_hooks if 'n_samples' in h[2]][-2:]))\n"
               "_mlsec_bench_hooks.clear()")


def _card_times(k: Kernel, res: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Frame and finished-card timings for the cell ``res`` (kernel clock; client clock as a check)."""
    msg_id = res["msg_id"]
    frames = [(t, m) for t, m in k.for_parent(msg_id) if m["msg_type"] == "display_data" and _card(m)]
    if not frames:
        return {"frame": None}
    f_recv, frame = frames[0]
    card_id = _card(frame)["card_id"]

    def find_done():
        for t, m in k.iopub:
            c = _card(m)
            if m["msg_type"] == "update_display_data" and c and c.get("card_id") == card_id \
                    and c.get("status") == "done":
                return t, m
        return None

    k.wait(lambda: find_done() is not None, timeout)
    done = find_done()
    reply = res["reply"]
    out = {"frame": _stamp(frame) - _stamp(reply), "frame_client": f_recv - res["reply_recv"],
           "card_id": card_id, "done": None}
    if done is not None:
        d_recv, dmsg = done
        card = _card(dmsg)
        out.update(done=_stamp(dmsg) - _stamp(reply), done_client=d_recv - res["reply_recv"],
                   checks=[(c["check"], c["status"], c.get("seconds"), c.get("sampled", ""), c.get("message", ""))
                           for c in card.get("checks", [])],
                   findings=[(f["check"], f["severity"], f["title"]) for f in card.get("findings", [])],
                   updates=sum(1 for _, m in k.iopub if m["msg_type"] == "update_display_data"
                               and (_card(m) or {}).get("card_id") == card_id))
    return out


def bench_data_cell(repeats: int, timeout: float) -> dict[str, Any]:
    progress(f"part 3: 100,000 x 50 make_classification cell in a real kernel, {repeats} repeats + 1 cold")
    on, off = Kernel("data-with"), Kernel("data-without")
    result: dict[str, Any] = {"with": [], "without": [], "cards": [], "cold": None, "cold_without": None,
                              "checks_in_kernel": [], "errors": []}
    try:
        for k, code in ((on, "%load_ext mlsec_jupyter\n" + _SETUP), (on, _PROBE), (off, _SETUP)):
            r = k.execute(code)
            if r["status"] != "ok" or r["errors"]:
                result["errors"].append(r["errors"] or r["reply"]["content"])
        # Cold: the first data cell (the checks' own lazy imports happen in the workers here).
        cold_off = off.execute(_DATA_CELL.format(seed=1000))
        cold = on.execute(_DATA_CELL.format(seed=1000))
        result["cold_without"] = cold_off["kernel"]
        result["cold"] = {"cell": cold["kernel"], **_card_times(on, cold, timeout), **_hook_times(on)}
        progress("  cold: cell {:.3f} s (without extension {:.3f} s); {}".format(
            cold["kernel"], cold_off["kernel"], _describe(result["cold"])))
        r = on.execute("from mlsec_jupyter.checks.registry import all_checks as _ac\n"
                       "print('\\n'.join(s.id for s in _ac() if s.applies_to == 'dataset'))\ndel _ac")
        result["checks_in_kernel"] = [line for line in r["stdout"].splitlines() if line.strip()]
        for i in range(repeats):
            seed = i
            r_off = off.execute(_DATA_CELL.format(seed=seed))
            r_on = on.execute(_DATA_CELL.format(seed=seed))
            result["without"].append(r_off["kernel"])
            result["with"].append(r_on["kernel"])
            times = {**_card_times(on, r_on, timeout), **_hook_times(on)}
            result["cards"].append(times)
            progress(f"  repeat {i + 1}/{repeats}: cell {r_on['kernel']:.3f} s with / {r_off['kernel']:.3f} s "
                     f"without; {_describe(times)}")
    finally:
        on.close()
        off.close()
    return result


def _hook_times(k: Kernel) -> dict[str, float]:
    """Main-thread time of the extension's hooks for the last data cell (ms), from the probe."""
    r = k.execute(_READ_PROBE)
    try:
        rows = json.loads(r["stdout"] or "[]")
    except ValueError:
        rows = []
    out = {f"{event[:-9]}_ms": ns / 1e6 for event, ns, _ in rows}  # pre_ms, post_ms
    return out


def _describe(times: dict[str, Any]) -> str:
    if times.get("frame") is None:
        return "no card (no check applies?)"
    text = f"frame {times['frame'] * 1000:+.1f} ms after execute_reply"
    if "pre_ms" in times and "post_ms" in times:
        text = f"hooks {times['pre_ms']:.1f} + {times['post_ms']:.1f} ms; " + text
    if times.get("done") is None:
        return text + ", card NOT done before timeout"
    return text + f", card done {times['done']:.3f} s after"


# -- report ----------------------------------------------------------------------------------------
def _ok(value: float, goal: float) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return "yes" if value <= goal else "**no**"


def _ratio(value: float, goal: float) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value / goal:.2f}"


def build_report(machine: dict[str, str], load: dict | None, imp: dict | None, cells: dict | None,
                 data: dict | None, checks: list[str], args: argparse.Namespace, elapsed: float) -> str:
    L: list[str] = ["# mlsec-jupyter overhead benchmark", "",
                    "Written by `bench/overhead.py` (`make bench`). Medians and p99 over repeats; "
                    "goals from DESIGN.md's performance budget and the bench issue. "
                    "A missed goal is reported, never a failure.", "", "## Machine", "",
                    "| | |", "|---|---|"]
    L += [f"| {k} | {v} |" for k, v in machine.items()]
    L += [f"| checks registered | {', '.join(checks) or 'none'} |",
          f"| bench settings | {args.kernel_runs} kernel runs, {args.cells} cells x {args.rounds} rounds, "
          f"{args.vars} live variables, {args.repeats} data-cell repeats; total {elapsed:.0f} s |", ""]

    L += ["## Results", "", "| # | metric | value | goal | value / goal | met |", "|---|---|---|---|---|---|"]
    notes: list[str] = []
    for mode, ld in (load or {}).items():
        lr = med(ld["load_roundtrip"])
        L.append(f"| 1 | `%load_ext mlsec_jupyter` request, fresh kernel, {mode} bytecode (median of "
                 f"{len(ld['load_roundtrip'])}, client round trip) | {fmt(lr, 's')} | < {GOAL_LOAD_S} s | "
                 f"{_ratio(lr, GOAL_LOAD_S)} | {_ok(lr, GOAL_LOAD_S)} |")
        L.append(f"| 1 | same, kernel side (execute_input → execute_reply); `pass` round trip for scale | "
                 f"{fmt(med(ld['load_kernel']), 's')}; {fmt(med(ld['pass_roundtrip']) * 1000, 'ms', 1)} | | | |")
    if load:
        ld = next(iter(load.values()))
        b, a = ld["before"], ld["after"]
        L.append(f"| 1 | `sklearn` / `torch` / `numpy` in sys.modules: bare kernel | "
                 f"{b['sklearn']} / {b['torch']} / {b['numpy']} | | | |")
        torch_ok = "yes" if not a["torch"] or b["torch"] else "**no**"
        L.append(f"| 1 | `sklearn` / `torch` / `numpy` in sys.modules: after `%load_ext` | "
                 f"{a['sklearn']} / {a['torch']} / {a['numpy']} | no torch | | {torch_ok} |")
    for mode, im in (imp or {}).items():
        L.append(f"| 1 | `python -X importtime -c \"import mlsec_jupyter.extension\"` total, {mode} bytecode "
                 f"(median of {len(im['bare'])}) | {fmt(med(im['bare']), 's')} | < {GOAL_LOAD_S} s | "
                 f"{_ratio(med(im['bare']), GOAL_LOAD_S)} | {_ok(med(im['bare']), GOAL_LOAD_S)} |")
        L.append(f"| 1 | same, with IPython + ipykernel already imported (what a kernel pays; numpy's share) | "
                 f"{fmt(med(im['incremental']), 's')} ({fmt(med(im['numpy_ms']), 'ms', 1)} numpy) | "
                 f"< {GOAL_LOAD_S} s | {_ratio(med(im['incremental']), GOAL_LOAD_S)} | "
                 f"{_ok(med(im['incremental']), GOAL_LOAD_S)} |")
    if cells:
        s = cells["cells"]["all"]
        h = cells["hooks"]["all"]
        L.append(f"| 2 | added main-thread time per cell, p50 (with − without, same cell) | "
                 f"{fmt(s['diff_p50'], 'ms', 4)} | ≤ {GOAL_CELL_P50_MS} ms | {_ratio(s['diff_p50'], GOAL_CELL_P50_MS)} "
                 f"| {_ok(s['diff_p50'], GOAL_CELL_P50_MS)} |")
        L.append(f"| 2 | added main-thread time per cell, p99 | {fmt(s['diff_p99'], 'ms', 4)} | ≤ {GOAL_CELL_P99_MS} ms "
                 f"| {_ratio(s['diff_p99'], GOAL_CELL_P99_MS)} | {_ok(s['diff_p99'], GOAL_CELL_P99_MS)} |")
        L.append(f"| 2 | cell time with extension p50 / p99 | {fmt(s['with_p50'], 'ms', 4)} / "
                 f"{fmt(s['with_p99'], 'ms', 4)} | | | |")
        L.append(f"| 2 | cell time without extension p50 / p99 | {fmt(s['without_p50'], 'ms', 4)} / "
                 f"{fmt(s['without_p99'], 'ms', 4)} | | | |")
        ratio = s["with_p50"] / s["without_p50"] if s["without_p50"] else float("nan")
        L.append(f"| 2 | with / without, p50 | {ratio:.2f}× | | | |")
        L.append(f"| 2 | hooks alone (pre + post), p50 | {fmt(h['both_p50'], 'ms', 4)} | ≤ {GOAL_CELL_P50_MS} ms | "
                 f"{_ratio(h['both_p50'], GOAL_CELL_P50_MS)} | {_ok(h['both_p50'], GOAL_CELL_P50_MS)} |")
        L.append(f"| 2 | hooks alone (pre + post), p99 | {fmt(h['both_p99'], 'ms', 4)} | ≤ {GOAL_CELL_P99_MS} ms | "
                 f"{_ratio(h['both_p99'], GOAL_CELL_P99_MS)} | {_ok(h['both_p99'], GOAL_CELL_P99_MS)} |")
    if data:
        cards = [c for c in data["cards"] if c.get("frame") is not None]
        dones = [c["done"] for c in cards if c.get("done") is not None]
        w, wo = med(data["with"]), med(data["without"])
        if cards:
            fr = med([c["frame"] for c in cards])
            L.append(f"| 3 | card frame visible, from the cell's execute_reply (median of {len(cards)}; "
                     f"negative = sent before the reply) | {fmt(fr * 1000, 'ms', 1)} | at once (≤ 100 ms) | | "
                     f"{'yes' if fr < 0.1 else '**no**'} |")
            dn = med(dones) if dones else float("nan")
            L.append(f"| 3 | complete data card (status done), from execute_reply, median | {fmt(dn, 's')} | "
                     f"≤ {GOAL_CARD_DONE_S} s | {_ratio(dn, GOAL_CARD_DONE_S)} | {_ok(dn, GOAL_CARD_DONE_S)} |")
            L.append(f"| 3 | complete data card, p99 (≈ max of {len(dones)}) | "
                     f"{fmt(pct(dones, 99) if dones else float('nan'), 's')} | ≤ {GOAL_CARD_DONE_S} s | | |")
        else:
            L.append("| 3 | card frame / complete card | no card appeared | | | n/a |")
            notes.append("No risk card appeared for the data cell: no dataset check was registered in the kernel "
                         f"({', '.join(data['checks_in_kernel']) or 'none'}). Re-run once the data checks exist.")
        L.append(f"| 3 | data cell duration with / without extension (kernel side, median) | "
                 f"{fmt(w, 's')} / {fmt(wo, 's')} | | {w / wo:.2f}× | |")
        pre = [c["pre_ms"] for c in data["cards"] if "pre_ms" in c]
        post = [c["post_ms"] for c in data["cards"] if "post_ms" in c]
        if pre and post:
            L.append(f"| 3 | main-thread time of the hooks for the data cell, pre + post (in-kernel probe, median) | "
                     f"{fmt(med(pre), 'ms', 2)} + {fmt(med(post), 'ms', 2)} | | | |")
        L.append(f"| 3 | same, as difference of the cell-duration medians (noisy: make_classification varies) | "
                 f"{fmt((w - wo) * 1000, 'ms', 1)} | | | |")
    L.append("")

    if load:
        L += ["## 1. Loading", "",
              "*cached* bytecode: child processes read and write compiled modules under a private "
              "`PYTHONPYCACHEPREFIX`, warmed up once, as for an installed wheel. *as-is*: this environment "
              f"unchanged (PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', 'unset')}; where it "
              "is set and the source tree has no `__pycache__`, every import compiles mlsec_jupyter from source).", ""]
        for mode, ld in load.items():
            L.append(f"- {mode}: kernel start (for scale, median) {med(ld['kernel_start']):.2f} s; load round trips (s): "
                     + ", ".join(f"{v:.3f}" for v in ld["load_roundtrip"]) + ".")
            if ld["errors"]:
                L.append(f"  Errors while loading: `{ld['errors'][:2]}`")
        ld = next(iter(load.values()))
        L += ["", f"Modules newly in `sys.modules` after `%load_ext` ({len(ld['new_modules'])}; top-level "
              "packages): " + ", ".join(f"`{m}`" for m in sorted({n.split('.')[0] for n in ld["new_modules"]}))
              + ".", ""]
    for mode, im in (imp or {}).items():
        L += [f"Heaviest modules in the import of `mlsec_jupyter.extension` with IPython already loaded, {mode} "
              "bytecode (self time, median ms):", "", "| module | self ms |", "|---|---|"]
        L += [f"| `{name}` | {ms:.2f} |" for ms, name in im["heaviest"]]
        L.append("")
    if cells:
        L += ["## 2. Per-cell overhead (in-process `InteractiveShell.run_cell`)", "",
              f"{cells['n_cells']} cells × {cells['rounds']} rounds, {cells['n_vars']} live variables "
              f"(ints, 8-element float arrays, lists, strings; `user_ns` held {cells['ns_size'][0]} names, "
              f"{cells['ns_size'][1]} not starting with `_`; IPython's per-cell `_i<n>` names are pruned "
              "between blocks so the namespace does not grow with the bench). With/without alternate in interleaved "
              "blocks (ABBA); each cell's `with` time is paired with its own `without` time. "
              "Cell kinds: *plain* (`a = 1`, `b = a + 1`, ...), *trigger word only* (mentions fit/load/split "
              "but records nothing: `# fit later`), *load-like* (`cfg = json.loads(...)`: recorded as a load, "
              "so a namespace snapshot of every name is taken and diffed).", "",
              "| cell kind | n | added p50 | added p99 | with p50 | with p99 | without p50 | without p99 |",
              "|---|---|---|---|---|---|---|---|"]
        for kind, s in [("all", cells["cells"]["all"]), *cells["cells"]["by_kind"].items()]:
            L.append(f"| {kind} | {s['n']} | {s['diff_p50']:.4f} | {s['diff_p99']:.4f} | {s['with_p50']:.4f} | "
                     f"{s['with_p99']:.4f} | {s['without_p50']:.4f} | {s['without_p99']:.4f} |")
        L += ["", "(ms.) Hooks alone, called directly with IPython's `ExecutionInfo`/`ExecutionResult`:", "",
              "| cell kind | n | pre p50 | pre p99 | post p50 | post p99 | pre+post p50 | pre+post p99 |",
              "|---|---|---|---|---|---|---|---|"]
        for kind, s in cells["hooks"].items():
            L.append(f"| {kind} | {s['n']} | {s['pre_p50']:.4f} | {s['pre_p99']:.4f} | {s['post_p50']:.4f} | "
                     f"{s['post_p99']:.4f} | {s['both_p50']:.4f} | {s['both_p99']:.4f} |")
        if cells["cells"]["failures"]:
            L.append(f"\nCells that raised (a bench bug): {cells['cells']['failures']}")
        if cells.get("shares"):
            L += ["", "Where the hooks' time goes (share of profiled pre + post time over all cells, cumulative):", ""]
            L += [f"- {label}: {share:.0%}" for label, share in cells["shares"].items()]
        L += ["", "<details><summary>cProfile of the hooks over all cells (by own time)</summary>", "",
              "```", cells["profile"], "```", "", "</details>", ""]
    if data:
        L += ["## 3. Data cell in a real kernel", "",
              "`" + _DATA_CELL.format(seed="i") + "` (100,000 × 50 float64, labelled), a fresh "
              "`random_state` per repeat so no cached result is reused. Times from the kernel's message "
              "header dates (client receive times agree to within polling latency).", ""]
        cold = data.get("cold") or {}
        if cold.get("frame") is not None:
            L.append(f"Cold (first data cell in the kernel, checks import their libraries): cell "
                     f"{cold['cell']:.3f} s (without extension {data['cold_without']:.3f} s), hooks "
                     f"{cold.get('pre_ms', float('nan')):.1f} + {cold.get('post_ms', float('nan')):.1f} ms, frame "
                     f"{cold['frame'] * 1000:+.1f} ms, done "
                     + (f"{cold['done']:.3f} s" if cold.get("done") is not None else "not within the timeout")
                     + " after execute_reply.")
            L.append("")
        cards = [c for c in data["cards"] if c.get("done") is not None]
        if cards:
            L += ["| repeat | cell with ext (s) | cell without (s) | pre hook (ms) | post hook (ms) | frame (ms) "
                  "| done (s) | done, client clock (s) | card updates |", "|---|---|---|---|---|---|---|---|---|"]
            for i, c in enumerate(data["cards"]):
                L.append(f"| {i} | {data['with'][i]:.3f} | {data['without'][i]:.3f} | "
                         f"{c.get('pre_ms', float('nan')):.2f} | {c.get('post_ms', float('nan')):.2f} | "
                         + (f"{c['frame'] * 1000:+.1f} | " if c.get("frame") is not None else "n/a | ")
                         + (f"{c['done']:.3f} | {c['done_client']:.3f} | {c['updates']} |"
                            if c.get("done") is not None else "n/a | n/a | n/a |"))
            per_check: dict[str, list[float]] = {}
            sampled: dict[str, str] = {}
            status: dict[str, set[str]] = {}
            for c in cards:
                for check, st, secs, samp, _msg in c["checks"]:
                    if secs is not None:
                        per_check.setdefault(check, []).append(secs)
                    status.setdefault(check, set()).add(st)
                    if samp:
                        sampled[check] = samp
            L += ["", "| check | status | median seconds (in worker) | sampling note |", "|---|---|---|---|"]
            for check in sorted(status):
                L.append(f"| `{check}` | {', '.join(sorted(status[check]))} | "
                         f"{med(per_check.get(check, [])):.3f} | {sampled.get(check, '')} |")
            L.append("")
        else:
            L += [f"Dataset checks registered in the kernel: {', '.join(data['checks_in_kernel']) or 'none'}.", ""]
        if data["errors"]:
            L.append(f"Errors: `{data['errors'][:2]}`")
    if notes:
        L += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(L)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernel-runs", type=int, default=5, help="fresh kernels for %%load_ext (default 5)")
    parser.add_argument("--import-runs", type=int, default=5)
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--vars", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block", type=int, default=100, help="cells per interleaved block")
    parser.add_argument("--repeats", type=int, default=5, help="data-cell repeats (after one cold run)")
    parser.add_argument("--card-timeout", type=float, default=120.0)
    parser.add_argument("--only", choices=["load", "cells", "data"], action="append",
                        help="run only these parts (repeatable)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer repeats")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args()
    args.out = args.out.resolve()
    if args.quick:
        args.kernel_runs, args.import_runs, args.rounds, args.repeats = 2, 2, 1, 2
    parts = set(args.only or ["load", "cells", "data"])
    global _TMP
    _TMP = Path(tempfile.mkdtemp(prefix="mlsec-bench-"))
    os.environ.setdefault("IPYTHONDIR", str(_TMP / "ipython"))
    (_TMP / "ipython").mkdir(exist_ok=True)

    machine = machine_info()
    progress("machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()))
    checks = registered_checks()
    progress(f"registered checks: {', '.join(checks) or 'none'}")
    if not any("(dataset)" in c for c in checks):
        progress("NOTE: no dataset check is registered yet, so the data cell will get no card")

    load: dict[str, Any] = {}
    imp: dict[str, Any] = {}
    cells = data = None
    report = ""
    try:
        if "load" in parts:
            for mode in MODES:
                load[mode] = bench_load(args.kernel_runs, mode)
            for mode in MODES:
                imp[mode] = bench_importtime(args.import_runs, mode)
        if "cells" in parts:
            cells = bench_cells(args.cells, args.vars, args.rounds, args.block)
        if "data" in parts:
            data = bench_data_cell(args.repeats, args.card_timeout)
    finally:
        elapsed = time.monotonic() - _T0
        try:
            report = build_report(machine, load, imp, cells, data, checks, args, elapsed)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            write_section(args.out, "overhead", demote(report))
        except Exception as exc:  # never hide the error that stopped the bench
            progress(f"could not write the report: {type(exc).__name__}: {exc}")
        shutil.rmtree(_TMP, ignore_errors=True)
    table = report.split("## Results", 1)[1].split("\n## ", 1)[0]
    print("\n## Results" + table)
    progress(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out} "
             f"in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
