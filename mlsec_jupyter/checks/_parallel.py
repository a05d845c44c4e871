"""Where heavy sweeps run: in the check's own thread, or on a Dask or Ray cluster through joblib.

A sweep is a list of independent, equally shaped jobs: the shadow models of the membership audit,
the ε values of the evasion probe. A check writes it once::

    for result in sweep(train_one_shadow, jobs, budget):   # train_one_shadow(*job, budget=...)
        ...                      # one result per job, in job order; break to stop early

and :attr:`Budget.backend` (``%mlsec config backend=...``) decides where the jobs run:

* ``local`` (the default): one after the other in the calling thread, each only when the loop asks
  for it, so a check that breaks early never pays for the jobs it did not need;
* ``dask``: every job is submitted at once through joblib's Dask backend to a running
  ``dask.distributed`` client (``Client()`` in the notebook), or to the scheduler at an address
  (``backend=tcp://host:8786``);
* ``ray``: through Ray's joblib backend on the running Ray cluster (``ray.init()``; Ray is optional). That
  backend cannot stream results, so jobs go in rounds of one per CPU and the budget is checked
  between rounds.

Results come back in job order whatever the backend, and each job's randomness is fixed before it is
sent (seeds drawn in the calling thread), so a sweep gives the same findings on every backend. A job
function takes a ``budget`` keyword: the check's :class:`Budget` locally (checkpoints inside a job
work as before), ``None`` on a cluster (which cannot see its cancel event); there the loop checks the
budget after each result, and stopping (cancel, time budget, an early ``break``) stops taking results
at once. Jobs already sent to a Dask cluster run to their end there (joblib's Dask backend does not
cancel them); their results are dropped. Functions and arguments must pickle: module-level functions of this
package, scikit-learn estimators and torch modules do.

Why not joblib everywhere: joblib's local backends would start processes or threads next to the
user's own work; the local backend here keeps the existing one-core behaviour of background checks.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

#: Backend names ``%mlsec config backend=`` takes (or a Dask scheduler address).
BACKENDS = ("local", "dask", "ray")
_ADDRESS_PREFIXES = ("tcp://", "tls://", "ucx://", "inproc://", "ws://", "wss://")


class BackendError(RuntimeError):
    """The configured backend cannot be used (not installed, no cluster running); says what to do."""


@dataclass(frozen=True)
class Backend:
    """Where sweeps run: ``kind`` is ``local``, ``dask`` or ``ray``; ``address`` a Dask scheduler address
    (``None``: the ``dask.distributed`` client already running in this process)."""

    kind: str = "local"
    address: str | None = None

    @property
    def is_local(self) -> bool:
        return self.kind == "local"

    def __str__(self) -> str:
        return self.address if self.address else self.kind


LOCAL = Backend()


def parse_backend(text: str) -> Backend:
    """``"local"``, ``"dask"``, ``"ray"`` or a Dask scheduler address (``tcp://127.0.0.1:8786``)."""
    value = str(text).strip()
    if value.lower() in BACKENDS:
        return Backend(value.lower())
    if value.lower().startswith("dask://"):
        value = value[len("dask://"):]
    if value.startswith(_ADDRESS_PREFIXES) and len(value) > 8:
        return Backend("dask", value)
    raise ValueError(f"backend must be local, dask, ray or a Dask scheduler address such as "
                     f"tcp://127.0.0.1:8786, got {text!r}.")


# -- clusters ---------------------------------------------------------------------------------------
_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def _dask_client(backend: Backend) -> Any:
    """The ``dask.distributed`` client for ``backend``: a client we opened for its address (kept for later
    sweeps), or the one the user started in this process."""
    try:
        import distributed
    except ImportError:
        raise BackendError("backend=dask needs dask.distributed: pip install 'dask[distributed]' (or "
                           "install mlsec-jupyter[dask]), then start a client or give a scheduler address."
                           ) from None
    if backend.address:
        with _clients_lock:
            client = _clients.get(backend.address)
            if client is None or client.status not in ("running", "connecting", "newly-created"):
                try:
                    client = distributed.Client(backend.address, timeout="10s", set_as_default=False)
                except Exception as exc:  # refused, timed out, or a malformed address
                    raise BackendError(f"No Dask scheduler answered at {backend.address} ({exc}); start one "
                                       f"(dask scheduler / LocalCluster) or set %mlsec config backend=local."
                                       ) from None
                _clients[backend.address] = client
            return client
    try:
        return distributed.get_client()
    except ValueError:
        raise BackendError("backend=dask found no running dask.distributed client in this kernel; start one "
                           "(from dask.distributed import Client; client = Client()) or give a scheduler "
                           "address: %mlsec config backend=tcp://HOST:8786.") from None


def check_backend(backend: Backend) -> str:
    """Raise :class:`BackendError` if ``backend`` cannot run a sweep now; else a line describing it."""
    if backend.is_local:
        return "local (in the check's own thread)"
    if backend.kind == "dask":
        client = _dask_client(backend)
        workers = len(client.scheduler_info().get("workers", {}))
        if not workers:
            raise BackendError(f"The Dask scheduler at {client.scheduler.address} has no workers; start some "
                               f"(dask worker {client.scheduler.address}) or set %mlsec config backend=local.")
        return f"dask scheduler {client.scheduler.address} with {workers} worker{'s' if workers != 1 else ''}"
    _ray()
    import ray

    if not ray.is_initialized():
        raise BackendError("backend=ray found no running Ray cluster in this kernel; call ray.init() (or "
                           "ray.init(address=...)) first.")
    return f"ray ({int(ray.cluster_resources().get('CPU', 0))} CPUs)"


def _ray() -> None:
    try:
        from ray.util.joblib import register_ray
    except ImportError:
        raise BackendError("backend=ray needs Ray: pip install 'ray[default]' (or mlsec-jupyter[ray]).") from None
    register_ray()


def close_clients() -> None:
    """Close the Dask clients opened for scheduler addresses (the extension's unload calls this)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        try:
            client.close(timeout=2)
        except Exception:
            pass


def _joblib_backend(backend: Backend) -> Any:
    """A joblib backend instance (or name) for ``backend``."""
    if backend.kind == "dask":
        from joblib._dask import DaskDistributedBackend

        return DaskDistributedBackend(client=_dask_client(backend))
    _ray()
    return "ray"


# -- sweeps -----------------------------------------------------------------------------------------
def sweep(func: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], budget: Any) -> Iterator[Any]:
    """``func(*job, budget=...)`` for every job, in job order, on ``budget.backend`` (module docstring).

    The budget is checked before each local job and after each remote result, so cancellation and
    the time budget stop the sweep. A single job runs locally (nothing to spread); a cluster that cannot
    run jobs (stopped, no workers, Ray not started) raises :class:`BackendError` before any is sent.
    """
    backend = getattr(budget, "backend", LOCAL)
    if backend.is_local or len(jobs) < 2:
        for job in jobs:
            budget.checkpoint()
            yield func(*job, budget=budget)
        return
    check_backend(backend)  # a stopped cluster says so (BackendError), not "job 1 failed"
    if backend.kind == "ray":  # Ray's joblib backend returns lists only: run in rounds of one job a CPU
        yield from _rounds(func, jobs, budget, _ray_cpus())
        return
    from joblib import Parallel, delayed

    runner = Parallel(backend=_joblib_backend(backend), n_jobs=-1, return_as="generator", pre_dispatch="all")
    task = delayed(_OneProcess(func))
    results = runner(task(*job) for job in jobs)
    try:
        for result in results:
            budget.checkpoint()
            yield result
    finally:
        results.close()


class _OneProcess:
    """A job function run on a worker with joblib set to one process: joblib's Dask backend runs each job
    under ``parallel_config(backend="dask")``, so without this a random forest's own ``Parallel`` inside the
    job would send every tree back to the cluster as a task (measured: 16 shadow forests took 12 s
    instead of 2.5 s on a 2-worker LocalCluster). Keeps the function's name, so the cluster's task
    names (dashboard, task stream) say what runs."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.__name__ = getattr(func, "__name__", "job")

    def __call__(self, *job: Any) -> Any:
        from joblib import parallel_config

        with parallel_config(backend="sequential", n_jobs=1):
            return self.func(*job, budget=None)


def _ray_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _rounds(func: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], budget: Any, size: int) -> Iterator[Any]:
    """Jobs in rounds of ``size`` through a joblib backend that cannot stream results (Ray)."""
    from joblib import Parallel, delayed

    task = delayed(_OneProcess(func))
    with Parallel(backend=_joblib_backend(budget.backend), n_jobs=size) as parallel:  # one worker pool for all rounds
        for start in range(0, len(jobs), size):
            budget.checkpoint()
            yield from parallel(task(*job) for job in jobs[start:start + size])
