"""The runner and registry: budgets, timeouts, cancellation, failures, caching, daemon workers."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from mlsec_jupyter.checks.budget import Budget
from mlsec_jupyter.checks.registry import get_check, register_check, run_check, unregister_check
from mlsec_jupyter.findings import Finding, RiskCard
from mlsec_jupyter.runner import Runner, Task
from mlsec_jupyter.session import Config, ResultCache, Session, plan
from mlsec_jupyter.artifacts import Dataset, Role

X = np.arange(20.0).reshape(10, 2)


@pytest.fixture
def checks():
    """Register test checks for one test and remove them afterwards."""
    ids = []

    def add(check_id, func, **kw):
        register_check(check_id, applies_to="dataset", title=check_id, force=True, **kw)(func)
        ids.append(check_id)
        return get_check(check_id)

    yield add
    for i in ids:
        unregister_check(i)


def _run(runner: Runner, card: RiskCard, specs, inputs) -> list:
    updates = []
    tasks = [(Task(s, inputs, "X"), card.expect(s.id, "X")) for s in specs]
    runner.submit(card, tasks, updates.append)
    assert runner.wait(10)
    return updates


def test_failures_timeouts_and_cancellation_become_card_lines(checks):
    def ok(*, X, budget):
        return [Finding("t.ok", "low", "fine")]

    def boom(*, X, budget):
        raise ValueError("bad <b>")

    def cooperative(*, X, budget):
        while True:
            budget.checkpoint()
            time.sleep(0.01)

    def stuck(*, X, budget):
        time.sleep(1.5)  # never reaches a checkpoint
        return [Finding("t.stuck", "high", "late")]

    specs = [checks("t.ok", ok), checks("t.boom", boom), checks("t.coop", cooperative), checks("t.stuck", stuck)]
    runner = Runner(workers=2, seconds=0.3)
    card = RiskCard("test")
    updates = _run(runner, card, specs, {"X": X})
    status = {r.check: (r.status.value, r.message) for r in card.runs}
    assert status["t.ok"][0] == "done"
    assert status["t.boom"] == ("failed", "ValueError: bad <b>")
    assert status["t.coop"][0] == "timed out"
    assert status["t.stuck"][0] == "timed out"
    assert [f.title for f in card.findings] == ["fine"]  # the late result of the abandoned check is dropped
    assert card.status == "done" and len(updates) == 4
    time.sleep(0)  # let the abandoned thread finish in the background; the runner still works:
    card2 = RiskCard("again")
    _run(runner, card2, [specs[0]], {"X": X})
    assert card2.status == "done"
    runner.shutdown()


def test_cancel_all_stops_running_and_queued_checks(checks):
    started = threading.Event()

    def slow(*, X, budget):
        started.set()
        while True:
            budget.checkpoint()
            time.sleep(0.01)

    spec = checks("t.slow", slow)
    runner = Runner(workers=1, seconds=30)
    card = RiskCard("c")
    runner.submit(card, [(Task(spec, {"X": X}), card.expect(spec.id)) for _ in range(3)], lambda c: None)
    assert started.wait(5)
    t0 = time.monotonic()
    assert runner.cancel_all() == 3
    assert runner.wait(5)
    assert time.monotonic() - t0 < 0.5  # L5: interrupt to cancelled within 500 ms
    assert [r.status.value for r in card.runs] == ["cancelled"] * 3
    runner.shutdown()


def test_workers_are_daemons_and_shutdown_joins_them(checks):
    spec = checks("t.quick", lambda *, X, budget: [])
    runner = Runner(workers=2)
    card = RiskCard("c")
    _run(runner, card, [spec], {"X": X})
    names = [t for t in threading.enumerate() if t.name.startswith("mlsec-")]
    assert names and all(t.daemon for t in names)
    runner.shutdown(timeout=2)
    assert not [t for t in threading.enumerate() if t.name.startswith("mlsec-worker") and t.is_alive()]


def test_missing_requirement_skips_with_a_reason(checks):
    spec = checks("t.needs_labels", lambda *, X, y, budget: [], requires=("labels",))
    runner = Runner(workers=1)
    card = RiskCard("c")
    _run(runner, card, [spec], {"X": X, "y": None})
    (run,) = card.runs
    assert run.status.value == "skipped" and run.message == "needs labels (y)"
    runner.shutdown()


def test_cache_reuses_results_for_the_same_data(checks):
    calls = []

    def counted(*, X, budget):
        calls.append(1)
        return [Finding("t.count", "info", "counted")]

    spec = checks("t.count", counted)
    runner = Runner(workers=1, cache=ResultCache())
    for _ in range(2):
        _run(runner, RiskCard("c"), [spec], {"X": X})
    assert len(calls) == 1
    _run(runner, RiskCard("c"), [spec], {"X": X.copy()})  # another object: checked again
    assert len(calls) == 2
    runner.shutdown()


def test_registry_rejects_duplicates_and_bad_definitions(checks):
    checks("t.dup", lambda *, X, budget: [])
    with pytest.raises(ValueError, match="already registered"):
        register_check("t.dup", applies_to="dataset", title="again")(lambda *, X, budget: [])
    with pytest.raises(TypeError, match="budget"):
        register_check("t.nobudget", applies_to="dataset", title="x")(lambda *, X: [])
    with pytest.raises(ValueError, match="Unknown requirement"):
        register_check("t.badreq", applies_to="dataset", title="x", requires=("gpu",))
    with pytest.raises(TypeError, match="unexpected input"):
        run_check("t.dup", X=X, colour="red")


def test_run_check_private_rng_ignores_global_state(checks):
    def sampler(*, X, budget):
        idx = budget.sample_rows(X.shape[0])
        return [Finding("t.sample", "info", "s", metrics={"idx": idx.tolist()}, indices=idx)]

    checks("t.sample", sampler)
    big = np.zeros((1000, 2))
    np.random.seed(1)
    a = run_check("t.sample", X=big, budget=Budget(max_rows=10))
    state = np.random.get_state()[1].copy()
    np.random.seed(2)
    b = run_check("t.sample", X=big, budget=Budget(max_rows=10))
    assert a[0].indices == b[0].indices and len(a[0].indices) == 10
    np.random.seed(2)
    run_check("t.sample", X=big, budget=Budget(max_rows=10))
    assert np.array_equal(np.random.get_state()[1], np.random.RandomState(2).get_state()[1])
    assert not np.array_equal(state, np.random.get_state()[1])


def test_plan_gives_a_models_training_data_the_data_checks():
    from mlsec_jupyter.artifacts import Model

    test = Dataset(X=X, name="X_test", role=Role.TEST)
    train = Dataset(X=X, y=np.zeros(10), name="X_train", role=Role.TRAIN, test=test)
    tasks = plan([Model(obj=object(), name="m", train=train)])
    assert {t.spec.id for t in tasks} >= {"data.integrity", "data.duplicates"}
    assert all(t.inputs["X_test"] is X for t in tasks if t.spec.id == "data.duplicates")


def test_config_validates_values():
    config = Config()
    config.set("time_budget", "2.5")
    config.set("auto", "off")
    config.set("min_severity", "HIGH")
    assert (config.time_budget, config.auto, config.min_severity.label) == (2.5, False, "high")
    for key, value in [("time_budget", "0"), ("sample_size", "5"), ("auto", "maybe"), ("colour", "red"),
                       ("min_severity", "huge"), ("workers", "two")]:
        with pytest.raises(ValueError):
            config.set(key, value)


def test_session_card_lists_checks_before_they_run(in_tmp):
    session = Session(audit_dir=in_tmp / ".mlsec")
    card, launch = session.prepare([Dataset(X=X, y=np.r_[np.zeros(5), np.ones(5)], name="X, y")])
    assert card.status == "running" and card.progress == 0.0
    assert {r.check for r in card.runs} >= {"data.integrity", "data.duplicates"}
    launch(lambda c: None)
    assert session.runner.wait(10) and card.status == "done"
    session.close()


def test_cache_sees_an_in_place_edit_anywhere_in_an_array(checks):
    calls = []

    def counted(*, X, budget):
        calls.append(int(np.isnan(X).sum()))
        return []

    spec = checks("t.edit", counted)
    runner = Runner(workers=1, cache=ResultCache())
    big = np.zeros((10_000, 5))
    _run(runner, RiskCard("c"), [spec], {"X": big})
    big[5_001, 3] = np.nan  # a row a sample of 64 would miss
    _run(runner, RiskCard("c"), [spec], {"X": big})
    assert calls == [0, 1]
    runner.shutdown()


def test_fast_checks_of_a_new_card_pass_queued_slow_ones_and_slow_ones_sample_less(checks):
    order = []
    gate = threading.Event()

    def blocker(*, X, budget):
        gate.wait(5)
        return []

    def slow(*, X, budget):
        order.append(("slow", budget.max_rows))
        return []

    def fast(*, X, budget):
        order.append(("fast", budget.max_rows))
        return []

    specs = {"block": checks("t.block", blocker), "slow": checks("t.slowcost", slow, cost="slow"),
             "fast": checks("t.fastcost", fast)}
    runner = Runner(workers=1, max_rows=200_000, slow_max_rows=20_000)
    first, second = RiskCard("first"), RiskCard("second")
    runner.submit(first, [(Task(specs["block"], {"X": X}), first.expect("t.block")),
                          (Task(specs["slow"], {"X": X}), first.expect("t.slowcost"))], lambda c: None)
    runner.submit(second, [(Task(specs["fast"], {"X": X}), second.expect("t.fastcost"))], lambda c: None)
    gate.set()
    assert runner.wait(10)
    assert order == [("fast", 200_000), ("slow", 20_000)]
    runner.shutdown()


def test_no_check_swaps_the_global_warning_filters():
    """warnings.catch_warnings swaps the process-wide filter list: from a worker thread it races with the
    user's own cells, so checks must not use it (the runner silences warnings per thread instead)."""
    import ast
    from pathlib import Path

    import mlsec_jupyter

    root = Path(mlsec_jupyter.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in {"catch_warnings", "simplefilter", "filterwarnings"}:
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not offenders, offenders


def test_a_long_check_shows_its_progress_on_the_running_card(checks):
    from mlsec_jupyter.render import card_bundle

    release = threading.Event()
    seen = []

    def long(*, X, budget):
        budget.progress(0.5, "half way <b>")
        release.wait(5)
        return [Finding("t.long", "info", "done")]

    def on_update(card):
        seen.append((card.to_dict(), card_bundle(card)["text/html"]))
        release.set()  # the first update is the progress report: let the check finish

    spec = checks("t.long", long)
    card = RiskCard("progress")
    runner = Runner(1)
    try:
        runner.submit(card, [(Task(spec, {"X": X}, "X"), card.expect(spec.id, "X"))], on_update)
        assert runner.wait(10)
    finally:
        runner.shutdown()
    running, page = seen[0]
    assert running["status"] == "running" and running["progress"] == 0.5
    assert running["checks"][0]["progress"] == 0.5 and running["checks"][0]["message"] == "half way <b>"
    assert "t.long (50%: half way &lt;b&gt;)" in page
    final = seen[-1][0]
    assert final["status"] == "done" and final["checks"][0]["progress"] == 1.0 and final["checks"][0]["message"] == ""


def test_once_wait_returns_the_runner_holds_no_checked_data(checks):
    """R8: ``wait()`` returns only after the finished jobs dropped the user's data, so ``del X`` right after
    ``%mlsec wait`` frees it (the worker used to hold its last job, and the progress callback's cycle, for a
    moment after waking the waiter)."""
    import gc
    import weakref

    def progress(*, X, budget):
        budget.progress(0.5, "half")
        return []

    spec = checks("t.progress", progress)
    runner = Runner(workers=2, seconds=5)
    try:
        held = 0
        for _ in range(200):
            data = np.ones((50, 2))
            ref = weakref.ref(data)
            _run(runner, RiskCard("x"), [spec], {"X": data})
            del data
            held += ref() is not None
        gc.collect()
        assert held == 0, f"the runner still held the data after wait() in {held} of 200 runs"
    finally:
        runner.shutdown()
