"""``data.backdoor`` with the model fitted on the data: the trigger tested on the model, the
penultimate representation read, the model left untouched, and the watcher passing the model."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from guards import rng_unchanged

import mlsec_jupyter as mj
from conftest import card_bundles, run
from mlsec_jupyter.findings import Severity

torch = pytest.importorskip("torch")
CHECK = "data.backdoor"


def split_digits(seed):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X / 16.0, y, test_size=0.25, stratify=y, random_state=seed)
    return X_tr, X_te, y_tr, y_te


def poison_rows(y, seed, rate=0.05, target=0):
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(np.flatnonzero(y != target), int(round(rate * len(y))), replace=False))


def patched(X, y, seed):
    """BadNets: a 2×2 bottom-right patch at the maximum value on 5 % of the rows, relabelled 0."""
    idx = poison_rows(y, seed)
    X, y = X.copy(), y.copy()
    img = X.reshape(len(X), 8, 8)
    img[idx, 6:8, 6:8] = 1.0
    y[idx] = 0
    return X, y, idx


def blended(X, y, seed):
    """A blended trigger with noise: 0.8·x + 0.2·pattern + N(0, 0.02²); no pixel is a constant."""
    idx = poison_rows(y, seed)
    rng = np.random.default_rng(100 + seed)
    pattern = rng.uniform(0, 1, X.shape[1])
    X, y = X.copy(), y.copy()
    X[idx] = 0.8 * X[idx] + 0.2 * pattern + rng.normal(0, 0.02, (len(idx), X.shape[1]))
    y[idx] = 0
    return X, y, idx, pattern


def train(X, y, seed, epochs=40):
    """A 64-128-10 MLP (Adam, batches of 64), deterministic for a seed."""
    gen = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    with torch.no_grad():
        for p in net.parameters():
            p.uniform_(-0.1, 0.1, generator=gen)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batches of 64: one thread is several times faster than two here
    try:
        for _ in range(epochs):
            for batch in torch.randperm(len(xt), generator=gen).split(64):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(xt[batch]), yt[batch]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return net


def predict(net, X):
    with torch.no_grad():
        return net(torch.tensor(X, dtype=torch.float32)).argmax(1).numpy()


def state_hash(net):
    h = hashlib.sha256()
    for k, v in net.state_dict().items():
        h.update(k.encode() + v.detach().numpy().tobytes())
    return h.hexdigest()


def precision_recall(indices, truth):
    found, truth = set(map(int, indices)), set(map(int, truth))
    tp = len(found & truth)
    return tp / max(len(found), 1), tp / max(len(truth), 1)


@pytest.fixture(scope="module")
def patched_model():
    X_tr, X_te, y_tr, y_te = split_digits(0)
    X, y, idx = patched(X_tr, y_tr, 0)
    return X, y, idx, X_te, y_te, train(X, y, 0)


def test_a_model_that_learned_the_patch_is_reported_as_backdoored(patched_model):
    X, y, idx, X_te, y_te, net = patched_model
    findings = mj.run_check(CHECK, X=X, y=y, model=net)
    (hit,) = [f for f in findings if f.severity >= Severity.MEDIUM]
    assert hit.severity is Severity.CRITICAL and hit.title.startswith("Backdoored model")
    p, r = precision_recall(hit.indices, idx)
    assert p >= 0.95 and r >= 0.95
    # The reported success rate agrees with stamping every held-out row of another class ourselves.
    others = X_te[(y_te != 0) & (predict(net, X_te) != 0)]
    stamped = others.copy().reshape(-1, 8, 8)
    stamped[:, 6:8, 6:8] = 1.0
    direct = float(np.mean(predict(net, stamped.reshape(len(others), 64)) == 0))
    assert direct >= 0.8
    assert abs(hit.metrics["attack_success_rate"] - direct) <= 0.1
    assert hit.metrics["control_success_rate"] <= 0.2
    assert "turns" in hit.summary and "learned the trigger" in hit.summary


def test_without_the_model_the_same_data_is_high_not_critical(patched_model):
    X, y, idx, *_ = patched_model
    (hit,) = [f for f in mj.run_check(CHECK, X=X, y=y) if f.severity >= Severity.MEDIUM]
    assert hit.severity is Severity.HIGH and "attack_success_rate" not in hit.metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_blended_noisy_trigger_is_found_through_the_representation(seed):
    X_tr, X_te, y_tr, y_te = split_digits(seed)
    X, y, idx, pattern = blended(X_tr, y_tr, seed)
    net = train(X, y, seed)
    others = X_te[y_te != 0]
    assert np.mean(predict(net, 0.8 * others + 0.2 * pattern) == 0) >= 0.9, "the plant must work"
    assert all(f.severity < Severity.MEDIUM for f in mj.run_check(CHECK, X=X, y=y)), \
        "no constant pattern: the data-only search cannot see it"
    hits = [f for f in mj.run_check(CHECK, X=X, y=y, model=net) if f.severity >= Severity.MEDIUM]
    assert len(hits) == 1 and hits[0].severity is Severity.HIGH
    assert hits[0].metrics["target_class"] == "0" and hits[0].metrics["source"] == "model representation"
    p, r = precision_recall(hits[0].indices, idx)
    assert p >= 0.55 and r >= 0.5, (p, r)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_model_trained_on_clean_data_raises_nothing(seed):
    X_tr, _, y_tr, _ = split_digits(seed)
    findings = mj.run_check(CHECK, X=X_tr, y=y_tr, model=train(X_tr, y_tr, seed))
    assert [f.severity for f in findings] == [Severity.INFO]


def test_the_model_its_mode_hooks_and_the_rngs_are_untouched(patched_model):
    X, y, *_, net = patched_model
    net.train()
    before = state_hash(net)
    with rng_unchanged():
        mj.run_check(CHECK, X=X, y=y, model=net)
    assert state_hash(net) == before
    assert net.training and all(m.training for m in net.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())
    assert all(p.requires_grad for p in net.parameters())


def test_a_model_that_refuses_the_rows_keeps_the_data_finding(patched_model):
    X, y, *_ = patched_model
    wrong = torch.nn.Linear(10, 10)  # expects 10 features, the data has 64
    findings = mj.run_check(CHECK, X=X, y=y, model=wrong)
    (hit,) = [f for f in findings if f.severity >= Severity.MEDIUM]
    assert hit.severity is Severity.HIGH and "could not be tested on the model" in hit.summary


def test_a_scikit_learn_model_is_stamp_tested_too(patched_model):
    from sklearn.neighbors import KNeighborsClassifier

    X, y, idx, *_ = patched_model
    knn = KNeighborsClassifier(n_neighbors=1).fit(X, y)  # memorises the stamped rows
    (hit,) = [f for f in mj.run_check(CHECK, X=X, y=y, model=knn) if f.severity >= Severity.MEDIUM]
    assert hit.metrics["model_target"] == "0" and 0.0 <= hit.metrics["attack_success_rate"] <= 1.0
    assert hit.metrics["stamped_rows"] > 100


def test_a_changed_model_is_not_answered_from_the_cache(patched_model):
    from mlsec_jupyter.session import ResultCache, Task
    from mlsec_jupyter.checks.registry import get_check

    X, y, *_, net = patched_model
    twin = train(X[:200], y[:200], 5, epochs=1)
    task = Task(get_check(CHECK), {"X": X, "y": y, "model": twin}, "data")
    key = ResultCache.key_for(task)
    with torch.no_grad():
        twin[0].weight.add_(1.0)
    assert ResultCache.key_for(task) != key


def test_a_training_loop_cell_gets_the_backdoor_verdict_on_its_card(ip, patched_model):
    X, y, *_ = patched_model
    ip.user_ns.update(X_np=X, y_np=y, make_net=lambda: train(X[:10], y[:10], 0, epochs=0))
    run(ip, "import torch\nfrom torch.utils.data import TensorDataset, DataLoader\n"
            "ds = TensorDataset(torch.tensor(X_np, dtype=torch.float32), torch.tensor(y_np))\n"
            "loader = DataLoader(ds, batch_size=64, shuffle=True)")
    code = ("net = make_net()\nopt = torch.optim.Adam(net.parameters(), lr=3e-3)\n"
            "torch.manual_seed(0)\n"
            "for epoch in range(40):\n"
            "    for xb, yb in loader:\n"
            "        opt.zero_grad()\n"
            "        torch.nn.functional.cross_entropy(net(xb), yb).backward()\n"
            "        opt.step()\n")
    result, outputs, _, err = run(ip, code)
    assert result.success and not err
    (card,) = card_bundles(outputs)
    assert card["subject"].startswith("net (torch)")
    backdoor = [f for f in card["findings"] if f["check"] == CHECK and f["severity"] == "critical"]
    assert backdoor and backdoor[0]["metrics"]["attack_success_rate"] >= 0.8


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_tabular_data_with_a_dominant_direction_is_not_called_backdoored(seed):
    """A cluster of a class's most typical rows moves predictions along the decision direction; the
    same-size control must explain that away (a reviewer's false positive, now a test)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2000, 10)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    gen = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    with torch.no_grad():
        for p in net.parameters():
            p.uniform_(-0.3, 0.3, generator=gen)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    xt, yt = torch.tensor(X), torch.tensor(y)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    assert [f.severity for f in mj.run_check(CHECK, X=X, y=y, model=net)] == [Severity.INFO]


def test_the_users_forward_hooks_never_run_for_our_probes(patched_model):
    X, y, *_, net = patched_model
    calls = []
    handle = net[0].register_forward_hook(lambda module, args, out: calls.append(len(out)))
    try:
        mj.run_check(CHECK, X=X, y=y, model=net)
        mj.run_check("privacy.membership", model=net, X=X[:300], y=y[:300], X_test=X[300:600], y_test=y[300:600])
    finally:
        handle.remove()
    assert calls == []


def test_fine_tuning_a_deep_bfloat16_head_changes_the_cache_key():
    from mlsec_jupyter.watch.fingerprint import fingerprint

    net = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(100)]).to(torch.bfloat16)
    before = fingerprint(net)
    with torch.no_grad():
        net[-1].weight.add_(1.0)  # only the last of 200 parameter tensors changes
    assert fingerprint(net) != before
