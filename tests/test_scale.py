"""Issue 9: big data is sampled within a memory budget (Dask lazily), heavy sweeps run on a real Dask
LocalCluster (and Ray where it installs) with the same findings as in the check's own thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import run
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

import mlsec_jupyter as mj
from mlsec_jupyter.checks._parallel import Backend, BackendError, check_backend, parse_backend
from mlsec_jupyter.checks._tabular import DASK_MIN_PARTITIONS, prepare_features
from mlsec_jupyter.checks.budget import Budget

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")


def _comparable(findings) -> list:
    """Findings without their timings (wall-clock seconds differ from run to run)."""
    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k != "seconds"}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value
    return [(f.check, f.severity.label, f.title, f.summary, clean(f.metrics), list(f.indices or [])) for f in findings]


# ------------------------------------------------------------------------------------------------
# memory budget in cells
# ------------------------------------------------------------------------------------------------
def test_wide_data_gets_fewer_rows_so_a_table_stays_within_the_cell_budget(tmp_path):
    path = tmp_path / "wide.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(20_000, 50))
    mm[:] = np.random.default_rng(0).normal(size=mm.shape)
    mm.flush()
    X = np.load(path, mmap_mode="r")
    budget = Budget(max_cells=100_000)
    table = prepare_features(X, budget)
    assert table.values.size <= 100_000 and table.n_rows == 2_000 and table.n_rows_total == 20_000
    assert "sampled 2,000 of 20,000 rows (50 features each, memory budget)" in budget.notes
    assert not X.flags.writeable  # read-only memmap read as it is, never written


# ------------------------------------------------------------------------------------------------
# Dask collections: metadata and a few partitions only
# ------------------------------------------------------------------------------------------------
class _Recorder:
    """Which blocks/partitions a Dask graph computed (the function runs once per block it computes)."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self._lock = threading.Lock()

    def block(self, x, block_info=None):
        with self._lock:
            self.seen.append(block_info[0]["chunk-location"][0])
        return x


def _planted_flips(n: int, rate: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(3, 10))
    y = rng.integers(0, 3, size=n)
    X = centres[y] + rng.normal(size=(n, 10))
    flipped = rng.random(n) < rate
    y_noisy = np.where(flipped, (y + 1 + rng.integers(0, 2, size=n)) % 3, y)
    return X, y_noisy, flipped


def test_a_dask_array_is_sampled_from_a_few_partitions_and_checks_still_find_planted_flips():
    X_np, y_np, flipped = _planted_flips(400_000, 0.08)
    rec = _Recorder()
    X = da.from_array(X_np, chunks=(10_000, 10)).map_blocks(rec.block, dtype=float)
    y = da.from_array(y_np, chunks=10_000)
    card = mj.scan_data(X, y, time_budget=60)
    assert card.status == "done"
    assert all(r.status.value == "done" for r in card.runs), [(r.check, r.message) for r in card.runs]
    runs = {r.check: r for r in card.runs}
    assert "from 8 of 40 partitions" in runs["data.label_flips"].sampled
    # each check read its own partitions, never the 40 of a full compute: 200,000-row samples need 20
    # partitions of 10,000 rows (integrity, duplicates, backdoor), 50,000-row ones 8 (label flips, outliers)
    assert len(set(rec.seen)) < 40 and len(rec.seen) <= 3 * 20 + 2 * DASK_MIN_PARTITIONS
    flips = card.by_check("data.label_flips")[0]
    low, high = flips.metrics["estimated_flip_rate_ci"]
    assert 0.05 <= flips.metrics["estimated_flip_rate"] <= 0.11 and low < flipped.mean() + 0.02 and high > 0.06
    rows = np.asarray(flips.indices)
    assert flipped[rows].mean() >= 0.8  # indices are positions in the user's array: they point at flips


def test_a_dask_dataframe_reads_some_partitions_and_labels_from_the_same_rows():
    pd = pytest.importorskip("pandas")
    X_np, y_np, _ = _planted_flips(60_000, 0.0)
    frame = pd.DataFrame(X_np, columns=[f"f{i}" for i in range(10)]).assign(label=y_np)
    ddf = dd.from_pandas(frame, npartitions=30)
    calls: list[int] = []
    counted = ddf.map_partitions(lambda part: calls.append(len(part)) or part, meta=ddf._meta)
    card = mj.scan_data(counted[[f"f{i}" for i in range(10)]], counted["label"], time_budget=60)
    assert all(r.status.value == "done" for r in card.runs), [(r.check, r.message) for r in card.runs]
    integrity = card.by_check("data.integrity")[0]
    assert integrity.title == "No integrity problems found"  # the labels matched the rows read
    assert "from 8 of 30 partitions" in card.runs[0].sampled and "estimated" in card.runs[0].sampled
    assert card.by_check("data.duplicates")[0].metrics["total_rows"] == 60_000  # 30 equal partitions
    # each check reads 8 of the 30 partitions (features, then the same partitions for the labels)
    assert len(calls) <= len(card.runs) * 2 * DASK_MIN_PARTITIONS < 30 * len(card.runs)


def test_labels_that_cannot_be_matched_to_a_dask_dataframe_are_refused_not_misread():
    pd = pytest.importorskip("pandas")
    X_np, y_np, _ = _planted_flips(20_000, 0.0)
    frame = pd.DataFrame(X_np, columns=[f"f{i}" for i in range(10)])
    ddf = dd.from_pandas(frame, npartitions=16)
    budget = Budget(max_rows=2_000)
    for y in (y_np,  # a numpy y: the frame's rows read cannot be located in it
              dd.from_pandas(pd.Series(y_np), npartitions=5)):  # partitioned differently from X
        for check in ("data.integrity", "data.label_flips"):
            findings = mj.run_check(check, X=ddf, y=y, budget=budget)
            assert all(f.severity.label in ("info", "low") for f in findings), [(f.severity, f.title) for f in findings]
            assert any("Dask" in f.summary and "labels not checked" in f.summary for f in findings), \
                [f.summary for f in findings]


def test_a_dask_array_with_unknown_chunk_sizes_is_not_computed_and_says_what_to_do():
    X = da.from_array(np.arange(100.0).reshape(50, 2), chunks=(10, 2))
    X = X[X[:, 0] > 10]  # boolean indexing: chunk sizes become unknown
    findings = mj.run_check("data.integrity", X=X)
    assert findings[0].severity.label == "info"
    assert "unknown chunk sizes" in findings[0].summary and "compute_chunk_sizes()" in findings[0].summary


# ------------------------------------------------------------------------------------------------
# sweeps on a real Dask LocalCluster (processes)
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc, \
            Client(lc, set_as_default=False) as client:
        yield lc, client


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)


def test_membership_shadow_models_on_a_local_cluster_give_the_same_findings(cluster, cancer):
    lc, _ = cluster
    Xtr, Xte, ytr, yte = cancer
    rf = RandomForestClassifier(n_estimators=30, random_state=0).fit(Xtr, ytr)
    kw = dict(model=rf, X=Xtr, y=ytr, X_test=Xte, y_test=yte, n_shadow=8)
    local = mj.run_check("privacy.membership", **kw, budget=Budget(seconds=120))
    progress: list[tuple[float, str]] = []
    budget = Budget(seconds=120, backend=parse_backend(lc.scheduler_address),
                    on_progress=lambda share, text: progress.append((share, text)))
    remote = mj.run_check("privacy.membership", **kw, budget=budget)
    assert local[0].metrics["attacks"]["shadow (LiRA offline)"]["shadow_models"] == 8
    assert _comparable(remote) == _comparable(local)
    # progress comes back as the cluster's results arrive
    assert [text for _, text in progress] == [f"shadow model {k} of 8" for k in range(1, 9)]
    assert [share for share, _ in progress] == sorted(share for share, _ in progress)


def test_an_evasion_eps_sweep_on_a_local_cluster_gives_the_same_findings(cluster):
    torch = pytest.importorskip("torch")
    lc, _ = cluster
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
        opt = torch.optim.Adam(net.parameters(), 1e-2)
        for _ in range(60):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(torch.tensor(Xtr)), torch.tensor(ytr)).backward()
            opt.step()
    kw = dict(model=net, X=Xtr, y=ytr, X_test=Xte, y_test=yte, attack="pgd", eps=[0.02, 0.05, 0.1, 0.2])
    local = mj.run_check("robustness.evasion", **kw, budget=Budget(seconds=120))
    remote = mj.run_check("robustness.evasion", **kw, budget=Budget(seconds=120, backend=parse_backend(lc.scheduler_address)))
    assert len(local[0].metrics["robust_accuracy"]) == 4
    assert _comparable(remote) == _comparable(local)


def test_mlsec_config_backend_sends_a_cells_sweep_to_the_cluster(ip, cluster):
    lc, _ = cluster
    _, _, out, _ = run(ip, f"%mlsec config backend={lc.scheduler_address}")
    assert "now run on: dask scheduler" in out and "with 2 workers" in out
    run(ip, "from sklearn.datasets import load_breast_cancer\n"
            "from sklearn.model_selection import train_test_split\n"
            "X, y = load_breast_cancer(return_X_y=True)\n"
            "Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)")
    from distributed import get_task_stream

    with get_task_stream(client=cluster[1]) as stream:  # what the cluster's workers ran meanwhile
        run(ip, "from sklearn.ensemble import RandomForestClassifier\n"
                "rf = RandomForestClassifier(n_estimators=20, random_state=0).fit(Xtr, ytr)\n"
                "rf.score(Xte, yte)")
        ip.run_line_magic("mlsec", "wait 120")
    from mlsec_jupyter.extension import _STATE

    assert str(_STATE.session.runner.backend) == lc.scheduler_address
    card = [c for c in _STATE.session.cards if c.by_check("privacy.membership")][-1]
    membership = card.by_check("privacy.membership")[0]
    assert "shadow (LiRA offline)" in membership.metrics["attacks"]
    assert membership.metrics["attacks"]["shadow (LiRA offline)"]["shadow_models"] >= 2
    ran = {task["key"][0] if isinstance(task["key"], tuple) else task["key"] for task in stream.data}
    assert any("fit_shadow" in str(key) for key in ran), sorted(map(str, ran))[:5]


def test_bad_backends_are_refused_with_what_to_do(ip):
    with pytest.raises(Exception, match="backend must be local, dask, ray or a Dask scheduler address"):
        ip.run_line_magic("mlsec", "config backend=spark")
    with pytest.raises(Exception, match="No Dask scheduler answered at tcp://127.0.0.1:1"):
        ip.run_line_magic("mlsec", "config time_budget=12 backend=tcp://127.0.0.1:1")
    with pytest.raises(Exception, match="No Dask scheduler answered at tcp://localhost:notaport"):
        ip.run_line_magic("mlsec", "config backend=tcp://localhost:notaport")  # malformed: still a clear line
    from mlsec_jupyter.extension import _STATE

    # a refused backend leaves every setting of that line as it was
    assert _STATE.session.config.backend == "local" and _STATE.session.config.time_budget == 30.0


def test_dask_without_a_running_client_says_how_to_start_one():
    from distributed import default_client

    try:
        default_client()
        pytest.skip("a default Dask client is running in this process")
    except ValueError:
        pass
    with pytest.raises(BackendError, match="no running dask.distributed client"):
        check_backend(Backend("dask"))


# ------------------------------------------------------------------------------------------------
# Ray (optional): where it installs
# ------------------------------------------------------------------------------------------------
def test_membership_on_ray_gives_the_same_findings(cancer):
    ray = pytest.importorskip("ray")
    Xtr, Xte, ytr, yte = cancer
    rf = RandomForestClassifier(n_estimators=30, random_state=0).fit(Xtr, ytr)
    kw = dict(model=rf, X=Xtr, y=ytr, X_test=Xte, y_test=yte, n_shadow=4)
    local = mj.run_check("privacy.membership", **kw, budget=Budget(seconds=120))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert check_backend(Backend("ray")) == "ray (2 CPUs)"
        remote = mj.run_check("privacy.membership", **kw, budget=Budget(seconds=120, backend=Backend("ray")))
    finally:
        ray.shutdown()
    assert _comparable(remote) == _comparable(local)
