"""Run checks off the main thread, each within a time budget, cancellable, never raising.

Workers are daemon threads (a hung check must not hang interpreter shutdown, reliability B34),
at most one per core. A check that overruns its budget without reaching a checkpoint is marked
"timed out" on its card by a watchdog and abandoned (its late result is dropped), and a fresh
worker takes its place so other cards keep moving.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import queue
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .checks._models import one_openmp_thread
from .checks._parallel import LOCAL
from .checks.budget import Budget, CheckCancelled, CheckTimeout
from .checks.registry import CheckSpec
from .findings import CheckRun, CheckStatus, Finding, RiskCard

#: Seconds between two card updates for the progress of one running check.
PROGRESS_INTERVAL = 0.5
#: Grace after the budget before the watchdog gives up on a check that never reached a checkpoint.
TIMEOUT_GRACE = 0.5
#: Rows a "slow" check looks at by default when it runs by itself (the card says it sampled).
SLOW_MAX_ROWS = 10_000
_SHUTDOWN, _URGENT, _FAST, _SLOW = -1, 0, 1, 2  # queue priorities: fast checks of a new card pass slow ones
#: Checks whose result the next cell's pre-run check reads (the privacy ledger): they go before all others.
URGENT_CHECKS = frozenset({"privacy.dp_budget"})
_MAX_MESSAGE = 300


def default_workers() -> int:
    """One worker per core, leaving one core for the user's own cells (at least one, at most four)."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


@dataclass
class Task:
    """One check to run on one set of inputs, for one card."""

    spec: CheckSpec
    inputs: dict[str, Any]
    target: str = ""
    seconds: float | None = None  # a time budget of its own (``%mlsec probe``), else the runner's
    max_rows: int | None = None  # a row budget of its own (``%mlsec panel``), else the runner's


@dataclass
class Outcome:
    status: CheckStatus
    findings: list[Finding] = field(default_factory=list)
    message: str = ""
    seconds: float = 0.0
    sampled: str = ""


def release_free_memory() -> None:
    """Give memory the checks freed back to the system (glibc ``malloc_trim``, all arenas): the worker
    threads' malloc arenas otherwise keep the pages of the copies and samples they made, and the kernel's
    resident memory stays up after the user deletes the data (L3). Called each time the runner goes idle:
    it took 0.2 ms (median; max 2.3 ms) on a 1.6 GB heap of a million objects across 5 arenas, on a
    worker thread. (Rate-limiting it kept a 763 MB array's check copies, +24 MB, when two cards came within
    the limit.) A no-op where there is no glibc."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim if sys.platform.startswith("linux") else False
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


def exception_text(exc: BaseException) -> str:
    """``"ValueError: bad shape"``, cut to :data:`_MAX_MESSAGE`; an exception whose ``str`` raises is named only."""
    try:
        detail = str(exc)
    except BaseException:  # noqa: BLE001 - a __str__ may raise anything, even SystemExit
        detail = ""
    text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


_quiet = threading.local()


def _quiet_showwarning(original: Callable[..., Any]) -> Callable[..., Any]:
    """A ``warnings.showwarning`` that drops warnings raised inside a check, passes others on.

    ``warnings.catch_warnings`` is not thread-safe (it swaps the global filter list), so checks
    running in worker threads are silenced by thread instead.
    """

    def showwarning(*args: Any, **kwargs: Any) -> Any:
        if getattr(_quiet, "active", False):
            return None
        return original(*args, **kwargs)

    showwarning.__mlsec_original__ = original  # type: ignore[attr-defined]
    return showwarning


def install_warning_filter() -> None:
    if not hasattr(warnings.showwarning, "__mlsec_original__"):
        warnings.showwarning = _quiet_showwarning(warnings.showwarning)


def remove_warning_filter() -> None:
    current = warnings.showwarning
    original = getattr(current, "__mlsec_original__", None)
    if original is not None:  # restore only if the hook is still ours
        warnings.showwarning = original


def global_rng_states() -> tuple[Any, ...] | None:
    """Python's ``random`` state, numpy's legacy global state and torch's CPU generator state (when torch
    is loaded): what a library imported for the first time inside a check may move (rich, which
    scikit-learn loads for its progress bars, draws from ``random`` at import; reliability R9).
    ``None`` when they cannot be read (numpy's global generator replaced by another bit generator...)."""
    import random

    try:
        np_state = np.random.get_state()
        if not isinstance(np_state, tuple):
            return None
        torch = _imported_torch()
        return random.getstate(), np_state, None if torch is None else torch.get_rng_state()
    except Exception:
        return None


def _imported_torch() -> Any:
    """torch when another thread has *finished* importing it, else ``None``: reading its generator while
    the user's cell is still importing torch crashes the process (a half-initialised module)."""
    torch = sys.modules.get("torch")
    if torch is None or getattr(getattr(torch, "__spec__", None), "_initializing", True):
        return None
    return torch if callable(getattr(torch, "get_rng_state", None)) else None


def _same_states(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    (py_a, np_a, t_a), (py_b, np_b, t_b) = a, b
    same_np = np_a[0] == np_b[0] and np.array_equal(np_a[1], np_b[1]) and tuple(np_a[2:]) == tuple(np_b[2:])
    same_torch = t_a is None or t_b is None or bool((t_a == t_b).all())
    return py_a == py_b and same_np and same_torch


def restore_rng_states(states: tuple[Any, ...] | None) -> bool:
    """Put back the global RNG states of :func:`global_rng_states` if anything moved them; whether it did.
    Never raises (a state that cannot be read or set is left alone)."""
    import random

    now = global_rng_states()
    if states is None or now is None or _same_states(states, now):
        return False
    try:
        py_state, np_state, torch_state = states
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch = _imported_torch()
        if torch_state is not None and torch is not None:
            torch.set_rng_state(torch_state)
        return True
    except Exception:
        return False


class MainThreadGate:
    """Puts back the global RNG states that checks moved, without ever rewinding the user's draws.

    The first check to start while no cell runs takes a snapshot; the last one to finish restores it,
    but only if no cell started since and the gate is open. The extension reports cells
    (``cell_started``/``cell_finished`` from its hooks; a starting cell waits for a restore in progress);
    a runner that shuts down closes its gate, so a check abandoned long ago restores nothing. Snapshots are
    never taken while a cell runs (its draws would be rewound, and numpy's state could be read torn)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cells = 0
        self._running: set[int] = set()  # the threads running a cell now (a subshell runs one beside the main shell)
        self._active = 0
        self._snapshot: tuple[Any, ...] | None = None
        self._snapshot_cells = -1
        self._open = True

    def cell_started(self) -> None:
        with self._lock:
            self._cells += 1
            self._running.add(threading.get_ident())  # per thread: a lost "finished" heals at its next cell

    def cell_finished(self) -> None:
        with self._lock:
            self._running.discard(threading.get_ident())

    def check_started(self) -> None:
        with self._lock:
            if self._active == 0:
                quiet = self._open and not self._running
                self._snapshot = global_rng_states() if quiet else None
                self._snapshot_cells = self._cells
            self._active += 1

    def check_finished(self) -> None:
        with self._lock:
            self._active = max(0, self._active - 1)
            if self._active:
                return
            snapshot, self._snapshot = self._snapshot, None
            if snapshot is not None and self._open and not self._running and self._cells == self._snapshot_cells:
                restore_rng_states(snapshot)

    def close(self) -> None:
        with self._lock:
            self._open = False
            self._snapshot = None


def execute(task: Task, budget: Budget) -> Outcome:
    """Run one check to completion in the calling thread; every failure becomes an outcome."""
    reason = task.spec.missing(task.inputs)
    if reason:
        return Outcome(CheckStatus.SKIPPED, message=reason)
    start = time.monotonic()
    budget.started = start
    install_warning_filter()  # idempotent; drops only warnings raised in this thread while a check runs
    _quiet.active = True
    try:
        with one_openmp_thread():  # per thread: the user's own cells keep every core's threads
            findings = list(task.spec.func(**task.spec.accepted(task.inputs), budget=budget))
        status, message = CheckStatus.DONE, ""
    except CheckCancelled:
        findings, status, message = [], CheckStatus.CANCELLED, ""
    except CheckTimeout as exc:
        findings, status, message = [], CheckStatus.TIMED_OUT, str(exc)
    except BaseException as exc:  # noqa: BLE001 - a check must never break the session, nor end its worker
        # (SystemExit or KeyboardInterrupt raised by a check's own code would end the thread silently,
        # and the card would wait for the watchdog)
        findings, status, message = [], CheckStatus.FAILED, exception_text(exc)
    finally:
        _quiet.active = False
    return Outcome(status, findings, message, time.monotonic() - start, "; ".join(budget.notes))


def with_target(findings: list[Finding], target: str) -> list[Finding]:
    """Name the checked artifact on each finding that does not name one yet."""
    return [f if f.target or not target else dataclasses.replace(f, target=target) for f in findings]


@dataclass(eq=False)
class _Job:
    card: RiskCard
    task: Task | None  # None once the job ended: it no longer holds the user's data
    run: CheckRun
    budget: Budget
    on_update: Callable[[RiskCard], None]
    deadline: float = float("inf")
    abandoned: bool = False

    def release_data(self) -> None:
        """Drop this job's references to the user's data (the task, and the progress callback that refers back
        to the job) before anyone learns that it ended: a ``%mlsec wait`` followed by ``del X`` frees ``X`` at
        once, not when this worker's frame or the garbage collector lets go of the job (R8). Only
        :meth:`Runner._finish` calls it, once per job (under the runner's lock a job is finished once)."""
        self.task = None
        self.budget.on_progress = None


def _priority(spec: Any) -> int:
    if spec.id in URGENT_CHECKS:
        return _URGENT
    return _SLOW if spec.cost == "slow" else _FAST


class Runner:
    """A small pool of daemon worker threads with a watchdog.

    ``cache``, if given, has ``key_for(task)``, ``get(key)`` and ``put(key, outcome)``; keys are
    computed in the worker, so fingerprinting data never costs the main thread.
    """

    def __init__(self, workers: int | None = None, *, seconds: float = 30.0, max_rows: int = 200_000,
                 slow_max_rows: int = SLOW_MAX_ROWS, cache: Any = None) -> None:
        self.workers = workers or default_workers()
        self.seconds = seconds
        self.max_rows = max_rows
        self.slow_max_rows = slow_max_rows
        self.cache = cache
        self.backend = LOCAL  # where sweeps inside checks run (%mlsec config backend=...)
        self.counters = {s.value: 0 for s in CheckStatus if s.finished}
        self.gate = MainThreadGate()  # the extension reports cells to it (RNG states, R9)
        self._queue: queue.PriorityQueue[tuple[int, int, _Job | None]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._jobs: set[_Job] = set()  # queued or running
        self._active: set[_Job] = set()  # running
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._watchdog: threading.Thread | None = None

    # -- public -----------------------------------------------------------------------------------
    def submit(self, card: RiskCard, tasks: list[tuple[Task, CheckRun]],
               on_update: Callable[[RiskCard], None]) -> None:
        """Queue ``tasks`` (each with the card line it fills in); ``on_update(card)`` is called from a
        worker after each one finishes."""
        if self._closed:
            raise RuntimeError("The runner was shut down; load the extension again.")
        self._ensure_threads()
        jobs = [_Job(card, task, run, self._new_budget(task.spec.cost, task.seconds, task.max_rows), on_update)
                for task, run in tasks]
        with self._lock:
            self._jobs.update(jobs)
        for job in jobs:
            self._queue.put((_priority(job.task.spec), next(self._order), job))

    def cancel_all(self) -> int:
        """Cancel every queued and running check; returns how many were affected."""
        return self.cancel()

    def cancel(self, card: RiskCard | None = None) -> int:
        """Cancel the queued and running checks of ``card`` (every card: ``None``); returns how many."""
        with self._lock:
            jobs = [j for j in self._jobs if card is None or j.card is card]
        for job in jobs:
            job.budget.cancel_event.set()
        return len(jobs)

    @property
    def busy(self) -> int:
        with self._lock:
            return len(self._jobs)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no check is queued or running; ``False`` if ``timeout`` passed first."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while self._jobs:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def shutdown(self, timeout: float = 2.0) -> None:
        """Cancel everything and join the threads (for at most ``timeout`` seconds in total)."""
        self.cancel_all()
        self.gate.close()  # a check abandoned long ago must not restore anything later
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        for _ in self._threads:
            self._queue.put((_SHUTDOWN, next(self._order), None))
        end = time.monotonic() + timeout
        for t in [*self._threads, self._watchdog]:
            if t is not None and t.is_alive():
                t.join(max(0.0, end - time.monotonic()))
        self._threads.clear()

    # -- internals --------------------------------------------------------------------------------
    def _new_budget(self, cost: str, seconds: float | None = None, max_rows: int | None = None) -> Budget:
        rows = min(self.max_rows, self.slow_max_rows) if cost == "slow" else self.max_rows
        return Budget(seconds=seconds or self.seconds, max_rows=max_rows or rows, backend=self.backend)

    def _ensure_threads(self) -> None:
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            missing = self.workers - len(self._threads)
        for _ in range(missing):
            self._spawn_worker()
        if self._watchdog is None or not self._watchdog.is_alive():
            self._watchdog = threading.Thread(target=self._watch, name="mlsec-watchdog", daemon=True)
            self._watchdog.start()

    def _spawn_worker(self) -> None:
        t = threading.Thread(target=self._work, name="mlsec-worker", daemon=True)
        with self._lock:
            self._threads.append(t)
        t.start()

    def _work(self) -> None:
        # no local name keeps the last job (and the user's data in it) alive while waiting (R8)
        while self._run_job(self._queue.get()[2]):
            pass

    def _run_job(self, job: _Job | None) -> bool:
        """Run one job; ``False`` tells the worker to exit (shutdown, or replaced while stuck)."""
        if job is None:
            return False
        if job.budget.cancel_event.is_set():
            self._finish(job, Outcome(CheckStatus.CANCELLED))
            return True
        with self._changed:
            job.deadline = time.monotonic() + job.budget.seconds + TIMEOUT_GRACE
            self._active.add(job)
            self._changed.notify_all()
        job.card.finish_run(job.run, CheckStatus.RUNNING)
        job.budget.on_progress = self._progress_reporter(job)
        key = self._cache_key(job)
        self.gate.check_started()
        try:
            outcome = (self.cache.get(key) if key is not None else None) or execute(job.task, job.budget)
        finally:
            self.gate.check_finished()
        with self._lock:
            self._active.discard(job)
            if job.abandoned:
                return False
        if key is not None and outcome.status is CheckStatus.DONE:
            self.cache.put(key, outcome)
        self._finish(job, outcome)
        return True

    @staticmethod
    def _progress_reporter(job: _Job) -> Callable[[float, str], None]:
        """Show a running check's progress on its card, at most every :data:`PROGRESS_INTERVAL` s."""
        last = [0.0]

        def report(fraction: float, text: str) -> None:
            job.card.report_progress(job.run, fraction, text)
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL and not job.abandoned:
                last[0] = now
                job.on_update(job.card)

        return report

    def _cache_key(self, job: _Job) -> Any:
        if self.cache is None:
            return None
        try:
            key = self.cache.key_for(job.task)
            return None if key is None else (*key, job.budget.max_rows)
        except Exception:
            return None

    def _finish(self, job: _Job, outcome: Outcome) -> None:
        job.card.add(with_target(outcome.findings, job.task.target))  # type: ignore[union-attr] - released below
        job.card.finish_run(job.run, outcome.status, message=outcome.message,
                            seconds=outcome.seconds, sampled=outcome.sampled)
        with self._lock:
            self.counters[outcome.status.value] += 1
        try:
            job.on_update(job.card)
        except Exception:
            pass  # a display hiccup must not kill the worker
        finally:
            job.release_data()
            with self._changed:
                self._jobs.discard(job)
                idle = not self._jobs
                self._changed.notify_all()
            if idle:
                release_free_memory()

    def _watch(self) -> None:
        """Mark checks that overran their budget without reaching a checkpoint as timed out."""
        while True:
            with self._changed:
                while not self._closed and not self._active:
                    self._changed.wait()
                if self._closed:
                    return
                now = time.monotonic()
                next_deadline = min(j.deadline for j in self._active)
                if next_deadline > now:
                    self._changed.wait(next_deadline - now)
                    continue
                overdue = [j for j in self._active if j.deadline <= now]
                for j in overdue:
                    j.abandoned = True
                    self._active.discard(j)
            for j in overdue:
                j.budget.cancel_event.set()
                self._finish(j, Outcome(CheckStatus.TIMED_OUT, seconds=now - j.budget.started))
                self._spawn_worker()
