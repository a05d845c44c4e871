"""The public Python API: the same checks as the notebook extension, in plain Python.

Checks run in the calling thread, one after the other, each within its time budget; a failing
check becomes a line on the card, never an exception.
"""

from __future__ import annotations

import threading
from typing import Any

from .artifacts import Dataset, Kind, Model, ModelFile, Role, classify, framework_of, torch_data_parts
from .checks._parallel import parse_backend
from .checks.budget import Budget
from .checks.registry import run_check
from .findings import CheckStatus, RiskCard
from .runner import TIMEOUT_GRACE, Outcome, execute, global_rng_states, restore_rng_states, with_target
from .session import plan, subject_of

__all__ = ["scan_data", "scan_model", "scan_file", "run_check", "report"]


def _run(card: RiskCard, artifacts: list[Any], seconds: float, max_rows: int, backend: str = "local") -> RiskCard:
    where = parse_backend(backend)
    tasks = plan(artifacts)
    runs = [card.expect(t.spec.id, t.target) for t in tasks]
    states = global_rng_states()  # a library a check imports may draw from them (R9)
    try:
        for task, run in zip(tasks, runs):
            card.finish_run(run, CheckStatus.RUNNING)
            outcome = _bounded(task, Budget(seconds=seconds, max_rows=max_rows, backend=where))
            card.add(with_target(outcome.findings, task.target))
            card.finish_run(run, outcome.status, message=outcome.message, seconds=outcome.seconds,
                            sampled=outcome.sampled)
    finally:
        restore_rng_states(states)
    return card


def _bounded(task: Any, budget: Budget) -> Outcome:
    """Run one check in a daemon thread and wait at most its budget (plus the runner's grace): a model
    whose ``predict`` hangs costs the caller one budget, and the check is reported "timed out" (B34).
    Ctrl-C while waiting cancels the check and propagates."""
    box: list[Outcome] = []
    worker = threading.Thread(target=lambda: box.append(execute(task, budget)), name="mlsec-api-check",
                              daemon=True)
    worker.start()
    try:
        worker.join(budget.seconds + TIMEOUT_GRACE)
    except KeyboardInterrupt:
        budget.cancel_event.set()
        raise
    if box:
        return box[0]
    budget.cancel_event.set()  # it stops at its next checkpoint, if it ever reaches one
    return Outcome(CheckStatus.TIMED_OUT, message="still running in the background; its result will be dropped",
                   seconds=budget.seconds + TIMEOUT_GRACE)


def scan_data(X: Any, y: Any = None, *, X_test: Any = None, y_test: Any = None, name: str = "data",
              time_budget: float = 30.0, sample_size: int = 200_000) -> RiskCard:
    """Run every data check on ``X`` (and labels ``y``); returns a finished :class:`RiskCard`.

    With ``X_test`` the duplicates check also reports train/test overlap (leakage).

    >>> from sklearn.datasets import load_iris
    >>> card = scan_data(*load_iris(return_X_y=True))
    >>> card.by_check("data.duplicates")[0].metrics["exact_duplicates"]
    1
    """
    X, y = _unpacked(X, y)
    X_test, y_test = _unpacked(X_test, y_test)
    test = None if X_test is None else Dataset(X=X_test, y=y_test, name=f"{name} (test)", role=Role.TEST)
    data = Dataset(X=X, y=y, name=name, role=Role.TRAIN if test is not None else Role.UNKNOWN, test=test)
    return _run(RiskCard(subject_of([data])), [data], time_budget, sample_size)


def _unpacked(X: Any, y: Any) -> tuple[Any, Any]:
    """A DataLoader or TensorDataset as its tensors (never iterated); labels given explicitly win."""
    features, labels = torch_data_parts(X)
    return features, (labels if y is None else y)


def scan_model(model: Any, X_train: Any = None, y_train: Any = None, X_test: Any = None, y_test: Any = None,
               *, name: str = "model", time_budget: float = 30.0, sample_size: int = 200_000,
               backend: str = "local") -> RiskCard:
    """Run every check that applies to a fitted ``model`` and the data it was fitted on.

    ``backend``: where heavy sweeps (shadow models, ε values) run: ``"local"``, ``"dask"`` (the running
    ``dask.distributed`` client), a Dask scheduler address (``"tcp://HOST:8786"``) or ``"ray"``.
    """
    X_train, y_train = _unpacked(X_train, y_train)
    X_test, y_test = _unpacked(X_test, y_test)
    kind = classify(model)
    if kind not in (Kind.SKLEARN_MODEL, Kind.TORCH_MODEL):
        raise TypeError(f"scan_model expects a scikit-learn estimator or a torch.nn.Module, got "
                        f"{type(model).__module__}.{type(model).__qualname__}; for data use scan_data(X, y).")
    test = None if X_test is None else Dataset(X=X_test, y=y_test, name="test data", role=Role.TEST)
    train = None if X_train is None else Dataset(X=X_train, y=y_train, name="training data",
                                                  role=Role.TRAIN, test=test)
    artifact = Model(obj=model, name=name, framework=framework_of(kind), train=train, test=test)
    return _run(RiskCard(subject_of([artifact])), [artifact], time_budget, sample_size, backend)


def scan_file(path: Any, *, loader: str | None = None, time_budget: float = 120.0) -> RiskCard:
    """Scan a model file (pickle, joblib, torch checkpoint, .npy/.npz) for code it would run when loaded,
    without loading it: the ``supply.pickle`` allowlist scanner. ``loader`` names the function that will
    load it (``"torch.load"``...), for advice that fits.

    >>> card = scan_file("model.pt")  # doctest: +SKIP
    >>> card.findings[0].metrics["unsafe_globals"]  # doctest: +SKIP
    []
    """
    import os

    name = os.fspath(path)
    artifact = ModelFile(path=os.path.abspath(name), loader=loader or "", name=name)
    return _run(RiskCard(name), [artifact], time_budget, 200_000)


def report(path: Any, *, format: str | None = None, cards: Any = None, notebook: Any = None) -> Any:
    """Write everything found in this notebook session to ``path``: HTML (one self-contained page),
    JSON (the card schema) or SARIF 2.1.0, chosen by ``format`` or the file name. Returns the path.

    ``cards`` defaults to the latest card of every cell the loaded extension watched; pass cards (from
    :func:`scan_data` and friends, or saved card JSON) to report on those instead. ``notebook`` is the
    notebook file the cards' cells are in (found from the front end when the extension is loaded).

    >>> mj.report("mlsec-report.sarif")  # doctest: +SKIP
    PosixPath('mlsec-report.sarif')
    """
    from .reports import format_for, locate, write_report
    from .session import active_session

    format_for(path, format)  # a bad name fails before any work
    session = active_session()
    if cards is None:
        if session is None:
            raise ValueError("No notebook session to report on: load the extension with %load_ext mlsec_jupyter "
                             "first, or pass the cards to report, e.g. report(path, cards=[scan_data(X, y)]).")
        cards = session.report_cards()
    else:
        cards = [c if isinstance(c, RiskCard) else RiskCard.from_dict(c) for c in cards]
    if notebook is None and session is not None:
        notebook = session.notebook
    return write_report(path, locate(cards, notebook), format=format, notebook=notebook)
