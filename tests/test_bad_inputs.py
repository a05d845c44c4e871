"""The bad-input catalogue B1–B39 (notes/reliability.md §4), row by row, through the two ways data and
models reach the checks: a real cell in a real IPython shell (the automatic path: ``X, y = make_bad()``
is a load, ``clf.fit(X, y)`` a fit, a ``DataLoader`` a torch data set) and the public API
(``mj.scan_data`` / ``mj.scan_model`` / ``mj.scan_file``).

Every row ends in a card line that says what was found, skipped or sampled; the cell succeeds without
"Error in callback" or output on stderr; the user's objects keep their content, flags, iterator state
and (for torch modules) modes, buffers and hooks, and the global RNGs are untouched. B1–B14, B17, B18
and B25 are the cases of ``guards.bad_inputs()`` (the data-check contract runs them through each check
directly); the rest are built here.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest
from conftest import card_bundles, run
from guards import bad_inputs, fingerprint, rng_unchanged

import mlsec_jupyter as mj
from mlsec_jupyter.artifacts import classify

torch = pytest.importorskip("torch")


def card_text(card: dict) -> str:
    """Everything a user reads on a card: titles, summaries, notes, check messages and sampling notes."""
    parts = []
    for f in card["findings"]:
        notes = f["metrics"].get("notes", [])
        parts += [f["title"], f["summary"], *(notes if isinstance(notes, list) else [str(notes)])]
    parts += [f"{r['status']}: {r['message']} {r['sampled']}" for r in card["checks"]]
    return "\n".join(parts)


def _one_card(outputs: list) -> dict:
    cards = card_bundles(outputs)
    assert len(cards) == 1, f"expected one card, got {len(cards)}"
    assert cards[0]["status"] == "done"
    return cards[0]


def _clean_cell(result: Any, out: str, err: str) -> None:
    assert result.success, result.error_in_exec or result.error_before_exec
    assert "Error in callback" not in out + err and not err.strip(), err


# --------------------------------------------------------------------------------------------------
# B1–B14, B17, B18, B25: the shared catalogue through a real load cell and through scan_data
# --------------------------------------------------------------------------------------------------
SHARED = bad_inputs()


@pytest.mark.parametrize("case", SHARED, ids=lambda c: c.id)
def test_shared_bad_input_through_a_load_cell(ip, case):
    X, y = case.make()
    before = (fingerprint(X), fingerprint(y))
    ip.user_ns["make_bad"] = lambda: (X, y)
    with rng_unchanged():
        result, outputs, out, err = run(ip, "X, y = make_bad()")
    _clean_cell(result, out, err)
    assert (fingerprint(X), fingerprint(y)) == before
    if classify(X) is None:  # a scalar or a generator is not a data set: the load shows no card
        assert card_bundles(outputs) == []
        return
    if isinstance(y, list):  # a cell takes lists for labels only through %mlsec scan (README limits)
        assert "No labels (y) were given" in card_text(_one_card(outputs))
        return
    expected = case.expect.get("data.integrity")
    assert expected in card_text(_one_card(outputs))


@pytest.mark.parametrize("case", SHARED, ids=lambda c: c.id)
def test_shared_bad_input_through_scan_data(case):
    X, y = case.make()
    before = (fingerprint(X), fingerprint(y))
    with rng_unchanged():
        card = mj.scan_data(X, y, time_budget=20)
    assert (fingerprint(X), fingerprint(y)) == before
    text = card_text(card.to_dict())
    assert case.expect["data.integrity"] in text and "failed" not in text


# --------------------------------------------------------------------------------------------------
# the other rows: each with its cell, its API call and the line both must show
# --------------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One catalogue row: ``make(tmp_path)`` returns the user's objects (a dict, bound in the shell);
    ``cell`` is what the user runs; ``api(objs)`` returns a card; ``says`` must be on both cards
    (``cell_says`` / ``api_says`` when they differ); ``watch`` names objects that must stay unchanged."""

    id: str
    make: Callable[[Any], dict]
    cell: str
    api: Callable[[dict], Any]
    says: str = ""
    cell_says: str | None = None
    api_says: str | None = None
    watch: tuple[str, ...] = ("X", "y")
    config: str = "config time_budget=8"
    extra: Callable[[dict], None] | None = field(default=None)


def _cancer():
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    return ((X - X.mean(0)) / X.std(0)), y


def _data(X, y=None, **more):
    return {"make_bad": lambda: (X, y), "X": X, "y": y, **more}


# -- B15: one positive among many rows ------------------------------------------------------------
def _b15(_):
    X = np.random.default_rng(0).normal(size=(300_000, 3))
    y = np.zeros(300_000, dtype=np.int64)
    y[123_456] = 1
    return _data(X, y)


def _b15_text(_):
    X = np.random.default_rng(0).normal(size=(300_000, 3))
    y = np.full(300_000, "negative")
    y[123_456] = "positive"
    return _data(X, y)


def _b15_category(_):
    import pandas as pd

    y = _b15_text(_)["y"]
    return _data(np.random.default_rng(0).normal(size=(300_000, 3)), pd.Series(y, dtype="category"))


# -- B16 + B17: a big read-only memmap loaded by a real np.load cell --------------------------------
def _b16(tmp_path):
    path = tmp_path / "big.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(1_000_000, 40))
    rng = np.random.default_rng(1)
    for i in range(0, 1_000_000, 100_000):
        out[i:i + 100_000] = rng.normal(size=(100_000, 40))
    out.flush()
    del out
    return {"path": str(path), "X": np.load(path, mmap_mode="r"), "y": None}


def _b16_api(objs):
    import tracemalloc

    tracemalloc.start()
    try:
        card = mj.scan_data(objs["X"], time_budget=30)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 256 * 2**20, f"extra memory {peak / 2**20:.0f} MB"
    return card


# -- B19, B20: images ----------------------------------------------------------------------------
def _b19(_):
    rng = np.random.default_rng(2)
    return _data(rng.random((200, 3, 3, 3)).astype(np.float32), np.arange(200) % 2)


def _b20(_):
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X8 = (X * 15.9).astype(np.uint8)  # 0..254 pixel values
    X_train, X_test, y_train, y_test = train_test_split(X8, y, test_size=0.3, random_state=0)
    return {"X": X_train, "y": y_train, "X_test": X_test, "y_test": y_test, "clf": LogisticRegression(max_iter=300),
            "fitted": LogisticRegression(max_iter=300).fit(X_train, y_train)}


# -- B21–B24: tensors ----------------------------------------------------------------------------
def _b21(_):
    leaf = torch.randn(100, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    return _data(leaf * 2.0, torch.arange(100) % 2, leaf=leaf)  # a non-leaf tensor of a leaf with grad


def _b22(_):
    return _data(torch.empty(100, 4, device="meta"), np.arange(100) % 2)


def _gpu_checkpoint(tmp_path):
    """A torch checkpoint whose storages say they live on ``cuda:0`` (as saved on a GPU machine)."""
    import io
    import zipfile

    buf = io.BytesIO()
    torch.save({"w": torch.ones(3)}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    path = tmp_path / "gpu.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                assert b"X\x03\x00\x00\x00cpu" in data
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            dst.writestr(info, data)
    return {"path": str(path), "X": None, "y": None}


def _b24(kind):
    def make(_):
        if kind == "sparse":
            X = torch.eye(10).to_sparse()
        elif kind == "nested":
            X = torch.nested.nested_tensor([torch.ones(2, 3), torch.ones(4, 3)], layout=torch.jagged)
        elif kind == "quantized":
            X = torch.quantize_per_tensor(torch.linspace(-1, 1, 30).reshape(10, 3), 0.1, 0, torch.qint8)
        else:
            from torch._subclasses.fake_tensor import FakeTensorMode

            with FakeTensorMode():
                X = torch.empty(10, 3)
        return _data(X, np.arange(10) % 2)
    return make


# -- B25–B27: streams and map-style datasets: never iterated, items never read --------------------
class Counting(torch.utils.data.IterableDataset):
    """A stream that counts how often it is iterated."""

    def __init__(self):
        self.iterated = 0

    def __iter__(self):
        self.iterated += 1
        yield from ([float(i)] for i in range(3))


class Items(torch.utils.data.Dataset):
    """A map-style dataset whose items are slow, random or raising, and counted."""

    def __init__(self, behaviour: str = "plain"):
        self.behaviour, self.calls = behaviour, 0
        self.X = np.random.default_rng(3).normal(size=(300, 4)).astype(np.float32)

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        self.calls += 1
        if self.behaviour == "slow":
            time.sleep(5)
        if self.behaviour == "raising" and i % 2:
            raise IndexError(f"<b>item {i}</b> is broken")
        x = torch.from_numpy(self.X[i])
        if self.behaviour == "random":
            x = x + torch.randn(4)  # an augmentation: it draws from the global torch RNG
        return x, int(i % 3)


def _b25(_):
    return _data(Counting(), None)


def _loader(behaviour):
    def make(_):
        ds = Items(behaviour)
        return {"ds": ds, "X": None, "y": None, "DataLoader": torch.utils.data.DataLoader}
    return make


def _never_read(objs):
    assert objs["ds"].calls == 0, "a dataset item was read"


# -- B28–B30: containers, lazy frames, hostile objects --------------------------------------------
def _b28(_):
    X = [[float(i % 97), float(i % 13)] for i in range(60_000)]
    y = [i % 2 for i in range(60_000)]
    return _data(X, y)


def _b28_named(_):
    objs = _b28(_)
    del objs["make_bad"]  # %mlsec scan names them: bound before the cell
    return objs


def _b29_lazy(_):
    pl = pytest.importorskip("polars")
    lf = pl.LazyFrame({"a": list(range(1000)), "b": [1.0] * 1000}).with_columns(
        pl.col("a").map_elements(_fail_if_collected, return_dtype=pl.Int64))
    return _data(lf, None)


def _fail_if_collected(value):
    raise AssertionError("the LazyFrame was collected")


def _b29_array_column(_):
    pl = pytest.importorskip("polars")
    emb = pl.Series("emb", [[1.0, 2.0]] * 50, dtype=pl.Array(pl.Float64, 2))
    return _data(pl.DataFrame({"emb": emb, "a": list(range(50))}), None)


def _b25_loader(_):
    return {"stream": Counting(), "X": None, "y": None, "DataLoader": torch.utils.data.DataLoader}


def _b29_eager(_):
    pl = pytest.importorskip("polars")
    X = pl.DataFrame({"a": [1.0, None, 3.0, 4.0] * 25, "b": ["x", "y", None, "z"] * 25})
    return _data(X, pl.Series("t", [0, 1] * 50))


class Hostile:
    """Looks like an array to a type check; touching an instance raises (B30)."""

    shape = (3, 3)
    dtype = "float64"

    def __repr__(self):
        raise RuntimeError("repr called")

    def __getattr__(self, name):
        raise RuntimeError(f"getattr {name} called")

    def __len__(self):
        raise RuntimeError("len called")

    def __array__(self, *args, **kwargs):
        raise RuntimeError("__array__ called")


def _b30(_):
    return _data(Hostile(), None)


# -- B31–B35: scikit-learn style models that misbehave -------------------------------------------
from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402


class RaisingPredict(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        raise ValueError("<img src=x onerror=alert(1)> predict broke")


class HangingPredict(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        time.sleep(30)
        return np.zeros(len(X), dtype=int)


class RandomPredict(ClassifierMixin, BaseEstimator):
    """Right most of the time, but a fresh coin per call decides which rows it gets wrong."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.w_ = np.linalg.lstsq(np.c_[X, np.ones(len(X))], 2.0 * y - 1, rcond=None)[0]
        return self

    def predict(self, X):
        right = (np.c_[X, np.ones(len(X))] @ self.w_ > 0).astype(int)
        flip = np.random.default_rng().random(len(X)) < 0.2
        return np.where(flip, 1 - right, right)


def _sk(model_factory, frame: bool = False):
    def make(_):
        from sklearn.model_selection import train_test_split

        X, y = _cancer()
        if frame:
            import pandas as pd

            X = pd.DataFrame(X, columns=[f"c{i}" for i in range(X.shape[1])])
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
        fitted = model_factory().fit(X_train, y_train)  # for the API (the cell fits its own)
        return {"X": X_train, "y": y_train, "X_test": X_test, "y_test": y_test, "clf": model_factory(),
                "fitted": fitted}
    return make


FIT_CELL = "clf.fit(X, y)"


def _scan_model(objs, seconds: float = 8):
    return mj.scan_model(objs["clf"], objs["X"], objs["y"], objs.get("X_test"), objs.get("y_test"),
                         time_budget=seconds)


def _fitted_api(objs):
    return _scan_model({**objs, "clf": objs["fitted"]})


# -- B36–B38: torch models in odd states or wrappers ---------------------------------------------
def _digits_torch():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return torch.tensor(X[:600] / 16, dtype=torch.float32), torch.tensor(y[:600])


def _net(batch_norm: bool = True):
    """An MLP with BatchNorm (Opacus cannot wrap one: ``batch_norm=False`` puts an identity there) and dropout."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        norm = torch.nn.BatchNorm1d(32) if batch_norm else torch.nn.Identity()
        return torch.nn.Sequential(torch.nn.Linear(64, 32), norm, torch.nn.ReLU(), torch.nn.Dropout(0.2),
                                   torch.nn.Linear(32, 10))


def dynamo_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _torch_row(wrap, batch_norm: bool = True):
    def make(_):
        Xt, yt = _digits_torch()
        net = _net(batch_norm)
        model = wrap(net)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(Xt, yt), batch_size=100)
        return {"net": net, "model": model, "loader": loader, "X": Xt, "y": yt,
                "opt": torch.optim.SGD(net.parameters(), lr=0.05), "F": torch.nn.functional}
    return make


TORCH_CELL = ("for xb, yb in loader:\n    opt.zero_grad()\n    loss = F.cross_entropy(model(xb), yb)\n"
              "    loss.backward()\n    opt.step()\nnet[3].eval()\n_before = fingerprint(net)\n_graphs = dynamo_graphs()")


def _torch_api(objs):
    return mj.scan_model(objs["model"], objs["X"], objs["y"], time_budget=8)


def _compile(net):
    return torch.compile(net, backend="eager")


def _compile_in_place(net):
    net.compile(backend="eager")
    return net


def _grad_sample(net):
    opacus = pytest.importorskip("opacus")
    return opacus.GradSampleModule(net)


# -- B39: model files ----------------------------------------------------------------------------
def _b39(tmp_path):
    whole = pickle.dumps({"weights": list(range(2000))}, protocol=4)
    path = tmp_path / "truncated.pkl"
    path.write_bytes(whole[: len(whole) // 2])
    return {"path": str(path), "X": None, "y": None}


def _scan_file(objs):
    return mj.scan_file(objs["path"])


ROWS = [
    Row("B15-one-positive", _b15, "X, y = make_bad()", lambda o: mj.scan_data(o["X"], o["y"], sample_size=10_000),
        "Minority class '1' has 1 row", config="config sample_size=10000"),
    Row("B15-one-positive-text", _b15_text, "X, y = make_bad()",
        lambda o: mj.scan_data(o["X"], o["y"], sample_size=10_000), "Minority class 'positive' has 1 row",
        config="config sample_size=10000"),
    Row("B15-one-positive-category", _b15_category, "X, y = make_bad()",
        lambda o: mj.scan_data(o["X"], o["y"], sample_size=10_000), "Minority class 'positive' has 1 row",
        config="config sample_size=10000"),
    Row("B16-B17-big-memmap", _b16, "X = np.load(path, mmap_mode='r')", _b16_api, "sampled",
        watch=("X",), config="config time_budget=30"),
    Row("B19-ambiguous-layout", _b19, "X, y = make_bad()", lambda o: mj.scan_data(o["X"], o["y"]),
        "could be channels first or last"),
    Row("B20-uint8-pixels", _b20, FIT_CELL, _fitted_api, "range 0 to 254", watch=("X", "y", "X_test")),
    Row("B21-non-leaf-tensor", _b21, "X, y = make_bad()", lambda o: mj.scan_data(o["X"], o["y"]),
        "No integrity problems found", watch=("X", "y", "leaf")),
    Row("B22-meta-tensor", _b22, "X, y = make_bad()", lambda o: mj.scan_data(o["X"], o["y"]),
        "Cannot copy out of meta tensor"),
    Row("B23-gpu-checkpoint", _gpu_checkpoint, "state = torch.load(path, map_location='cpu')",
        lambda o: mj.scan_file(o["path"], loader="torch.load"), "safe to load", watch=()),
    *[Row(f"B24-{kind}-tensor", _b24(kind), "X, y = make_bad()", lambda o: mj.scan_data(o["X"], o["y"]),
          words) for kind, words in [("sparse", "sparse tensor"), ("nested", "NestedTensor tensors are not"),
                                     ("quantized", "quantized tensor"), ("fake", "FakeTensor tensors are not")]],
    Row("B25-iterable-dataset", _b25, "X, y = make_bad()", lambda o: mj.scan_data(o["X"]),
        "not inspected, because reading it would consume it", watch=("X",),
        extra=lambda o: _check_not_iterated(o)),
    Row("B25-loader-over-a-stream", _b25_loader, "loader = DataLoader(stream, batch_size=4)",
        lambda o: mj.scan_data(torch.utils.data.DataLoader(o["stream"], batch_size=4)),
        "not inspected, because reading it would consume it", watch=(), extra=lambda o: _stream_untouched(o)),
    Row("B26-dataloader-workers-shuffle", _loader("random"),
        "loader = DataLoader(ds, batch_size=32, shuffle=True, num_workers=2)",
        lambda o: mj.scan_data(o["loader"]), "its items were not read", watch=("ds",), extra=_never_read),
    Row("B27-slow-item", _loader("slow"), "loader = DataLoader(ds, batch_size=8)",
        lambda o: mj.scan_data(o["ds"]), "its items were not read", watch=(), extra=_never_read),
    Row("B27-raising-item", _loader("raising"), "loader = DataLoader(ds, batch_size=8)",
        lambda o: mj.scan_data(o["ds"]), "its items were not read", watch=(), extra=_never_read),
    Row("B28-list-of-lists", _b28_named, "%mlsec scan X y", lambda o: mj.scan_data(o["X"], o["y"]), "60,000 rows"),
    Row("B29-polars-lazy", _b29_lazy, "X, y = make_bad()", lambda o: mj.scan_data(o["X"]),
        "lazy or out-of-core): not read", watch=()),
    Row("B29-polars-array-column", _b29_array_column, "X, y = make_bad()", lambda o: mj.scan_data(o["X"]),
        "holds arrays", watch=()),
    Row("B29-polars-eager", _b29_eager, "X, y = make_bad()", lambda o: mj.scan_data(o["X"], o["y"]),
        "50 missing values (NaN) in 2 of 2 columns", watch=()),
    Row("B30-hostile-object", _b30, "X, y = make_bad()", lambda o: mj.scan_data(o["X"]),
        "is not a supported data type", watch=()),
    Row("B31-unfitted", _sk(lambda: __import__("sklearn.linear_model").linear_model.LogisticRegression()),
        "%mlsec scan clf", lambda o: _scan_model(o), "needs a fitted model (LogisticRegression is not fitted yet"),
    Row("B32-no-predict-proba", _sk(lambda: __import__("sklearn.svm").svm.LinearSVC()), FIT_CELL, _fitted_api,
        "offers no predict_proba"),
    Row("B33-predict-raises", _sk(RaisingPredict), FIT_CELL, _fitted_api,
        "failed: ValueError: <img src=x onerror=alert(1)> predict broke"),
    Row("B33-feature-names", _sk(lambda: __import__("sklearn.linear_model").linear_model.LogisticRegression(),
                                 frame=True), FIT_CELL, _fitted_api, "clean accuracy"),
    Row("B34-hanging-predict", _sk(HangingPredict), FIT_CELL,
        lambda o: _scan_model({**o, "clf": o["fitted"]}, seconds=2), "timed out",
        config="config time_budget=3"),
    Row("B35-random-predict", _sk(RandomPredict), FIT_CELL, _fitted_api, "The model is not deterministic"),
    Row("B36-train-mode-batchnorm", _torch_row(lambda net: net), TORCH_CELL, _torch_api, "PGD",
        watch=("net",), config="config time_budget=15"),
    Row("B37-compiled", _torch_row(_compile), TORCH_CELL, _torch_api, "PGD", watch=("net",),
        config="config time_budget=15", extra=lambda o: _check_no_recompiles(o)),
    Row("B37-compiled-in-place", _torch_row(_compile_in_place), TORCH_CELL, _torch_api, "PGD", watch=("net",),
        config="config time_budget=15", extra=lambda o: _check_no_recompiles(o)),
    Row("B37-data-parallel", _torch_row(torch.nn.DataParallel), TORCH_CELL, _torch_api, "PGD", watch=("net",),
        config="config time_budget=15"),
    Row("B38-grad-sample-module", _torch_row(_grad_sample, batch_norm=False), TORCH_CELL, _torch_api, "PGD", watch=("net",),
        config="config time_budget=15"),
    Row("B39-truncated-pickle", _b39, "%mlsec scanfile truncated.pkl", _scan_file, "truncated", watch=()),
]


def _stream_untouched(objs):
    assert objs["stream"].iterated == 0


def _check_not_iterated(objs):
    assert objs["X"].iterated == 0


def _check_no_recompiles(objs):
    assert dynamo_graphs() == objs["_graphs"], "a check ran the compiled module"


def _bind(ip, objs: dict) -> None:
    ip.user_ns.update({k: v for k, v in objs.items() if k not in ("X", "y") or "make_bad" not in objs})
    ip.user_ns.update({"np": np, "torch": torch, "fingerprint": fingerprint, "rng_snapshot": rng_snapshot,
                       "dynamo_graphs": dynamo_graphs})


def rng_snapshot() -> tuple:
    import random

    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def same_rngs(a: tuple, b: tuple) -> bool:
    return (a[0] == b[0] and a[1][0] == b[1][0] and np.array_equal(a[1][1], b[1][1]) and a[1][2:] == b[1][2:]
            and torch.equal(a[2], b[2]))


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_bad_input_through_a_real_cell(ip, row, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    objs = row.make(tmp_path)
    _bind(ip, objs)
    ip.run_line_magic("mlsec", row.config)
    # a training cell changes its model itself: it is compared with the fingerprint taken as the cell ended
    watched = {} if row.cell == TORCH_CELL else {n: fingerprint(objs[n]) for n in row.watch if objs.get(n) is not None}
    # the user's own code may draw random numbers (a fit, a dropout layer): compare with what it left
    result, outputs, out, err = run(ip, row.cell + "\n_rngs = rng_snapshot()")
    _clean_cell(result, out, err)
    assert same_rngs(ip.user_ns.pop("_rngs"), rng_snapshot()), "a check moved a global RNG"
    card = _one_card(outputs)
    text = card_text(card)
    assert (row.cell_says or row.says) in text, text
    html = next(o.data["text/html"] for o in outputs if "text/html" in o.data)
    assert "<img src=x" not in html and "<b>item" not in html
    for name, before in watched.items():  # for make_bad rows, objs["X"] is the very object the cell bound
        assert fingerprint(objs[name]) == before, f"{name} changed"
    if "_before" in ip.user_ns:  # the torch cell's own fingerprint of its model, taken as the cell ended
        assert fingerprint(objs["net"]) == ip.user_ns.pop("_before"), "the checks changed the model"
        objs["_graphs"] = ip.user_ns.pop("_graphs")
    if row.extra:
        row.extra(objs)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_bad_input_through_the_api(row, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    objs = row.make(tmp_path)
    if row.id.startswith("B37-compiled"):
        objs["model"](objs["X"][:4])
        objs["_graphs"] = dynamo_graphs()
    watched = {name: fingerprint(objs[name]) for name in row.watch if objs.get(name) is not None}
    if "loader" not in objs and "ds" in objs:
        objs["loader"] = torch.utils.data.DataLoader(objs["ds"], batch_size=32, shuffle=True, num_workers=2)
    with rng_unchanged():
        card = row.api(objs)
    text = card_text(card.to_dict())
    assert (row.api_says or row.says) in text, text
    for name, before in watched.items():
        assert fingerprint(objs[name]) == before, f"{name} changed"
    if row.extra:
        row.extra(objs)
