"""Cell parsing, namespace diffs and artifact assembly, with real objects."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from conftest import card_bundles, run

from mlsec_jupyter.artifacts import Dataset, Kind, Model, ModelFile, Role, classify, is_sklearn_fitted
from mlsec_jupyter.watch.assemble import Assembler, SplitMemory
from mlsec_jupyter.watch.cell import parse_cell
from mlsec_jupyter.watch.namespace import Snapshot


@pytest.mark.parametrize("source, kind, func", [
    ("X, y = load_breast_cancer(return_X_y=True)", "loads", "load_breast_cancer"),
    ("df = pd.read_csv('data.csv')", "loads", "pd.read_csv"),
    ("arr = np.load('a.npy')", "loads", "np.load"),
    ("X, y = make_classification(n_samples=10)", "loads", "make_classification"),
    ("dl = DataLoader(ds, batch_size=4)", "loads", "DataLoader"),
    ("clf.fit(X_train, y_train)", "fits", "clf.fit"),
    ("Z = pca.fit_transform(X)", "fits", "pca.fit_transform"),
    ("m.partial_fit(X, y)", "fits", "m.partial_fit"),
    ("a, b, c, d = train_test_split(X, y)", "splits", "train_test_split"),
    ("model = torch.load('m.pt')", "file_loads", "torch.load"),
    ("obj = pickle.load(open('m.pkl', 'rb'))", "file_loads", "pickle.load"),
    ("m = joblib.load('m.joblib')", "file_loads", "joblib.load"),
])
def test_intents_are_recognised(source, kind, func):
    intent = parse_cell(source)
    assert intent.any
    assert [c.func for c in getattr(intent, kind)] == [func]


def test_split_targets_and_fit_arguments_are_recorded():
    intent = parse_cell("X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2)\nclf.fit(X_tr, y_tr)")
    assert intent.splits[0].targets == ["X_tr", "X_te", "y_tr", "y_te"]
    assert intent.splits[0].args == ["X", "y"]
    assert intent.fits[0].args == ["X_tr", "y_tr"]
    assert "clf" in intent.touched


def test_torch_training_loop_is_a_fit():
    intent = parse_cell("for xb, yb in loader:\n    opt.zero_grad()\n    loss = crit(net(xb), yb)\n"
                        "    loss.backward()\n    opt.step()")
    assert intent.torch_training and {"net", "loader"} <= intent.names


def test_np_load_counts_as_code_loader_only_with_allow_pickle():
    assert not parse_cell("a = np.load('a.npy')").file_loads
    assert parse_cell("a = np.load('a.npy', allow_pickle=True)").file_loads[0].path == "a.npy"


@pytest.mark.parametrize("source", ["a = 1", "print('hello')", "def f(:", "", "x = [i for i in range(3)]",
                                    "# fit later\nz = 2", "s = 'load_data'"])
def test_ordinary_or_broken_cells_intend_nothing(source):
    assert not parse_cell(source).any


def test_snapshot_sees_rebinding_new_names_and_touched_names_only():
    ns = {"a": 1, "X": np.zeros(3), "_hidden": 1, "keep": [1]}
    snap = Snapshot(ns)
    ns["X"] = np.ones(3)
    ns["new"] = np.zeros(2)
    ns["_private"] = 5
    assert snap.changed(ns) == ["X", "new"]
    assert snap.changed(ns, also={"keep"}) == ["X", "keep", "new"]


def test_snapshot_keeps_nothing_alive():
    arr = np.zeros(10)
    ref = weakref.ref(arr)
    ns = {"arr": arr}
    snap = Snapshot(ns)
    del ns["arr"], arr
    gc.collect()
    assert ref() is None
    assert snap.changed({}) == []


def test_classification_is_by_protocol():
    import pandas as pd
    import torch
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    assert classify(np.zeros(3)) is Kind.ARRAY
    assert classify(pd.DataFrame({"a": [1]})) is Kind.FRAME
    assert classify(pd.Series([1])) is Kind.ARRAY
    assert classify(torch.zeros(2)) is Kind.ARRAY
    assert classify(torch.nn.Linear(2, 2)) is Kind.TORCH_MODEL
    assert classify(load_iris()) is Kind.BUNCH
    assert classify(LogisticRegression()) is Kind.SKLEARN_MODEL
    assert classify([1, 2]) is None and classify(3) is None and classify("s") is None
    assert not is_sklearn_fitted(LogisticRegression())
    X, y = load_iris(return_X_y=True)
    assert is_sklearn_fitted(LogisticRegression(max_iter=500).fit(X, y))


def test_classify_never_touches_instance_attributes():
    class Hostile:
        def __getattr__(self, name):
            raise AssertionError(f"touched {name}")

        def __repr__(self):
            raise AssertionError("repr")

        def __len__(self):
            raise AssertionError("len")

    assert classify(Hostile()) is None


def _build(source: str, before: dict, after: dict, memory: SplitMemory | None = None, force=False):
    intent = parse_cell(source)
    changed = Snapshot(before).changed(after, also=intent.touched)
    return Assembler(memory or SplitMemory()).build(intent, changed, after, force=force)


def test_split_makes_train_and_test_datasets_and_is_remembered():
    from sklearn.linear_model import LogisticRegression

    X, y = np.random.default_rng(0).normal(size=(40, 3)), np.r_[np.zeros(20), np.ones(20)]
    ns = {"X": X, "y": y}
    after = {**ns, "X_tr": X[:30], "X_te": X[30:], "y_tr": y[:30], "y_te": y[30:]}
    memory = SplitMemory()
    arts = _build("X_tr, X_te, y_tr, y_te = train_test_split(X, y)", ns, after, memory)
    train, test = arts
    assert (train.role, test.role) == (Role.TRAIN, Role.TEST)
    assert train.X is after["X_tr"] and train.y is after["y_tr"] and train.test is test
    clf = LogisticRegression().fit(after["X_tr"], after["y_tr"])
    fitted = {**after, "clf": clf}
    (model,) = _build("clf.fit(X_tr, y_tr)", after, fitted, memory)
    assert isinstance(model, Model) and model.framework == "sklearn"
    assert model.train.X is after["X_tr"] and model.test.X is after["X_te"]


def test_load_of_bunch_frame_and_tuple():
    import pandas as pd
    from sklearn.datasets import load_iris

    bunch = load_iris()
    (ds,) = _build("data = load_iris()", {}, {"data": bunch})
    assert ds.X is bunch["data"] and ds.y is bunch["target"] and ds.feature_names[0] == "sepal length (cm)"
    df = pd.DataFrame({"a": [1, 2]})
    (ds,) = _build("df = pd.read_csv('x.csv')", {}, {"df": df})
    assert ds.X is df and ds.y is None
    X, y = np.zeros((4, 2)), np.zeros(4)
    (ds,) = _build("X, y = load_thing()", {}, {"X": X, "y": y})
    assert ds.X is X and ds.y is y and ds.name == "X, y"


def test_model_file_loads_become_model_file_artifacts():
    arts = _build("m = joblib.load('model.joblib')", {}, {"m": object()})
    assert [type(a) for a in arts] == [ModelFile] and arts[0].path == "model.joblib"


def test_cells_without_new_data_make_no_artifacts():
    X = np.zeros((4, 2))
    assert _build("clf.fit(X, y)", {"X": X}, {"X": X}) == []  # no model named clf
    assert _build("Z = X * 2", {"X": X}, {"X": X, "Z": X * 2}) == []  # no intent
    (ds,) = _build("Z = X * 2", {"X": X}, {"X": X, "Z": X * 2}, force=True)  # %%mlsec
    assert isinstance(ds, Dataset) and ds.name == "Z"


def test_torch_loop_links_model_and_tensor_dataset():
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    Xt, yt = torch.zeros(8, 3), torch.zeros(8, dtype=torch.long)
    loader = DataLoader(TensorDataset(Xt, yt), batch_size=4)
    net = torch.nn.Linear(3, 2)
    ns = {"net": net, "loader": loader}
    (model,) = _build("for xb, yb in loader:\n    loss = crit(net(xb), yb)\n    loss.backward()\n    opt.step()",
                      ns, ns)
    assert model.framework == "torch" and model.train.X is Xt and model.train.y is yt


def test_bound_names_and_dynamic_cells():
    intent = parse_cell("import numpy as np\nfrom sklearn.datasets import load_iris\n"
                        "X, y = load_iris(return_X_y=True)\nfor i in range(2):\n    Z = X[i]\n"
                        "def f():\n    pass\nclf.fit(X, y)")
    assert intent.bound >= {"np", "load_iris", "X", "y", "i", "Z", "f"} and not intent.dynamic
    for source in ("exec('X = load()')", "from mod import *\nX = load()", "globals()['X'] = load()",
                   "get_ipython().run_line_magic('run', 'load.py')"):
        assert parse_cell(source).dynamic, source


def test_snapshot_of_bound_names_only():
    ns = {"a": 1, "X": np.zeros(3), "other": 2}
    snap = Snapshot(ns, names={"X", "new", "_hidden"})
    ns["X"] = np.ones(3)
    ns["new"] = 5
    ns["other"] = 3  # not a name the cell binds: not looked at
    assert set(snap.changed(ns)) == {"X", "new"}
    assert set(snap.changed(ns, also={"a"})) == {"X", "new", "a"}


def test_the_notebooks_own_make_helpers_still_count_as_loads():
    """Review: skipping every make_* function the notebook defined also skipped its data helpers."""
    def make_dataset():  # defined in a notebook, its module is __main__
        return None

    make_dataset.__module__ = "__main__"
    assert [c.func for c in parse_cell("X, y = make_dataset()", {"make_dataset": make_dataset}).loads] == \
        ["make_dataset"]


def test_a_training_loops_batch_is_not_checked_as_a_data_set(ip):
    """Review of the example notebooks: a cell that builds a DataLoader and trains had its last mini-batch
    (``xb, yb``, a few rows) checked as data, with a false "backdoor trigger" on it."""
    run(ip, "import torch\nfrom torch.utils.data import DataLoader, TensorDataset\ntorch.manual_seed(0)\n"
            "X = torch.rand(100, 8); y = (X[:, 0] > 0.5).long()")
    _, outputs, _, _ = run(ip, "loader = DataLoader(TensorDataset(X, y), batch_size=32)\n"
                               "net = torch.nn.Linear(8, 2); opt = torch.optim.SGD(net.parameters(), lr=0.1)\n"
                               "for xb, yb in loader:\n    out = net(xb)\n"
                               "    opt.zero_grad(); torch.nn.functional.cross_entropy(out, yb).backward(); opt.step()")
    targets = {run_["target"] for card in card_bundles(outputs) for run_ in card["checks"]}
    assert targets and not any(t.startswith(("xb", "yb", "out")) for t in targets), targets
    assert "loader.dataset (train)" in targets
