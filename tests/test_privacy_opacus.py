"""Reading DP-SGD state from live Opacus objects: a real tiny training, read without changing anything."""

from __future__ import annotations

import copy
import gc
import subprocess
import sys
import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("opacus")

from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mlsec_jupyter.privacy.accounting import epsilon_of_history
from mlsec_jupyter.privacy.opacus import (
    DPState,
    find_dp_states,
    is_dp_object,
    run_id_of,
)

N, BATCH, SIGMA, CLIP, EPOCHS, DELTA = 512, 64, 1.1, 1.0, 2, 1e-5


def _train(accountant: str = "rdp", *, seed: int = 0, with_epsilon: float | None = None) -> dict:
    """A notebook namespace after a real 2-epoch Opacus training of nn.Linear(10, 2)."""
    from opacus import PrivacyEngine

    torch.manual_seed(seed)
    X = torch.randn(N, 10)
    y = torch.randint(0, 2, (N,))
    ds = TensorDataset(X, y)
    model = nn.Linear(10, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine = PrivacyEngine(accountant=accountant)
        common = dict(module=model, optimizer=optimizer, data_loader=DataLoader(ds, batch_size=BATCH),
                      max_grad_norm=CLIP)
        if with_epsilon is None:
            model, optimizer, loader = engine.make_private(noise_multiplier=SIGMA, **common)
        else:
            model, optimizer, loader = engine.make_private_with_epsilon(
                target_epsilon=with_epsilon, target_delta=DELTA, epochs=EPOCHS, **common)
        n_steps = 0
        for _ in range(EPOCHS):
            for xb, yb in loader:
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(xb), yb).backward()
                optimizer.step()
                n_steps += 1
    return {"X": X, "y": y, "ds": ds, "model": model, "optimizer": optimizer, "train_loader": loader,
            "engine": engine, "n_steps": n_steps, "lr": 0.1, "np": __import__("numpy")}


@pytest.fixture(scope="module")
def rdp_ns() -> dict:
    return _train("rdp")


@pytest.fixture(scope="module")
def prv_ns() -> dict:
    return _train("prv")


def test_finds_one_state_per_accountant(rdp_ns):
    [state] = find_dp_states(dict(rdp_ns))
    acc = rdp_ns["engine"].accountant
    assert isinstance(state, DPState)
    assert state.accountant == "rdp"
    assert state.history == [tuple(h) for h in acc.history] == [(SIGMA, BATCH / N, rdp_ns["n_steps"])]
    assert state.history is not acc.history
    assert state.noise_multiplier == SIGMA and state.sample_rate == BATCH / N
    assert state.steps == rdp_ns["n_steps"] == EPOCHS * N // BATCH
    assert state.max_grad_norm == CLIP and state.expected_batch_size == BATCH
    assert state.steps_per_epoch == N // BATCH
    assert state.engines == ("engine",) and state.optimizers == ("optimizer",) and state.models == ("model",)
    assert set(state.data_names) == {"X", "y", "ds"}
    assert state.source == "opacus PrivacyEngine 'engine', DPOptimizer 'optimizer', model 'model'"
    assert state.run_id.startswith("opacus-")
    # stable for this accountant; the optimizer alone or the engine alone finds the same accountant
    assert find_dp_states({"optimizer": rdp_ns["optimizer"]})[0].run_id == state.run_id
    only_engine = find_dp_states({"e": rdp_ns["engine"]})[0]
    assert only_engine.run_id == state.run_id and only_engine.history == state.history
    assert only_engine.max_grad_norm is None and only_engine.noise_multiplier == SIGMA


def test_tight_epsilon_vs_opacus(rdp_ns, prv_ns):
    [rdp] = find_dp_states(rdp_ns)
    [prv] = find_dp_states(prv_ns)
    assert prv.accountant == "prv" and prv.history == rdp.history
    ours = epsilon_of_history(rdp.history, delta=DELTA)
    assert ours <= rdp.opacus_epsilon(DELTA)
    assert rdp.opacus_epsilon(DELTA) == rdp_ns["engine"].get_epsilon(DELTA)
    assert ours == pytest.approx(prv.opacus_epsilon(DELTA), rel=0.01)  # 3.350 vs 3.360


def test_reading_changes_nothing(rdp_ns, prv_ns):
    for ns in (rdp_ns, prv_ns):
        engine, opt, model = ns["engine"], ns["optimizer"], ns["model"]
        history = copy.deepcopy(engine.accountant.history)
        acc_dict = dict(vars(engine.accountant))
        opt_dict = dict(vars(opt))
        opt_state = copy.deepcopy(opt.state_dict())
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        rng = torch.get_rng_state()
        training = model.training
        for _ in range(2):
            [state] = find_dp_states(ns)
            state.opacus_epsilon(DELTA)
        assert engine.accountant.history == history
        assert vars(engine.accountant) == acc_dict
        assert vars(opt) == opt_dict and opt.step_hook is opt_dict["step_hook"]
        assert str(opt.state_dict()) == str(opt_state)
        assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
        assert torch.equal(torch.get_rng_state(), rng) and model.training == training


def test_make_private_with_epsilon():
    ns = _train("rdp", seed=1, with_epsilon=5.0)
    [state] = find_dp_states(ns)
    assert state.noise_multiplier == ns["optimizer"].noise_multiplier and state.noise_multiplier > 0
    assert state.history == [(state.noise_multiplier, BATCH / N, EPOCHS * N // BATCH)]
    assert state.opacus_epsilon(DELTA) <= 5.0 + 0.05
    assert epsilon_of_history(state.history, delta=DELTA) <= state.opacus_epsilon(DELTA)


def test_before_the_first_step_and_planning():
    from opacus import PrivacyEngine

    model = nn.Linear(3, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine = PrivacyEngine(accountant="rdp")
        dl = DataLoader(TensorDataset(torch.zeros(100, 3), torch.zeros(100, dtype=torch.long)), batch_size=10)
        model, opt, dl = engine.make_private(module=model, optimizer=torch.optim.SGD(model.parameters(), lr=1),
                                             data_loader=dl, noise_multiplier=0.8, max_grad_norm=2.0)
    [state] = find_dp_states({"engine": engine, "opt": opt, "model": model, "dl": dl})
    assert state.history == [] and state.steps == 0
    assert state.sample_rate == pytest.approx(0.1) and state.noise_multiplier == 0.8  # from the step hook
    assert state.opacus_epsilon(DELTA) == 0.0
    assert state.planned_history(20) == [(0.8, pytest.approx(0.1), 20)]
    assert find_dp_states({"engine": engine})[0].sample_rate is None  # nothing to read it from yet
    with pytest.raises(ValueError, match="not known"):
        find_dp_states({"engine": engine})[0].planned_history(5)


def test_is_dp_object(rdp_ns):
    for name in ("engine", "optimizer", "model", "train_loader"):
        assert is_dp_object(rdp_ns[name]), name
    for obj in (nn.Linear(2, 2), torch.zeros(2), 1, "engine", None, rdp_ns["ds"], DataLoader(rdp_ns["ds"])):
        assert not is_dp_object(obj)


def test_other_objects_give_nothing(rdp_ns):
    assert find_dp_states({}) == []
    ns = {"a": 1, "X": rdp_ns["X"], "m": nn.Linear(2, 2), "dl": DataLoader(rdp_ns["ds"]),
          "model": rdp_ns["model"], "loader": rdp_ns["train_loader"], 3: "not a str key"}
    assert find_dp_states(ns) == []  # a GradSampleModule or DP loader alone has no accountant


def test_hostile_objects_are_skipped(rdp_ns):
    from opacus import PrivacyEngine
    from opacus.accountants import RDPAccountant

    calls = []

    class Touchy(PrivacyEngine):
        def __init__(self):  # no accountant in __dict__
            pass

        def __getattr__(self, name):
            calls.append(name)
            raise RuntimeError("boom")

    class BadHistory(RDPAccountant):
        pass

    bad = BadHistory()
    bad.history = [("x", 0.1, 3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine2 = PrivacyEngine(accountant="rdp")
    engine2.accountant = bad

    class Raising:
        def items(self):
            raise RuntimeError("boom")

    ns = {"touchy": Touchy(), "engine2": engine2, **rdp_ns}
    states = find_dp_states(ns)
    assert [s.engines for s in states] == [("engine",)]
    assert calls == []  # __getattr__ never ran
    assert find_dp_states(Raising()) == []  # type: ignore[arg-type]


def test_run_id_is_not_reused_after_gc():
    class Acc:
        pass

    seen: dict[int, str] = {}
    for _ in range(2000):
        a = Acc()
        rid = run_id_of(a)
        assert run_id_of(a) == rid
        if id(a) in seen:
            assert seen[id(a)] != rid  # same address, new object: new run id
            break
        seen[id(a)] = rid
        del a
        gc.collect()
    else:
        pytest.skip("CPython did not reuse an address")


def test_import_is_light():
    code = ("import sys, mlsec_jupyter.privacy.opacus, mlsec_jupyter.privacy.ledger; "
            "print([m for m in ('torch', 'opacus', 'numpy', 'IPython') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
