"""data.integrity on real data with planted problems, the bad-input catalogue and layout variants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_digits

from guards import bad_inputs, rng_unchanged, unchanged
from mlsec_jupyter.checks._tabular import UnsupportedData, prepare_features, prepare_labels
from mlsec_jupyter.checks.budget import Budget
from mlsec_jupyter.checks.data.integrity import integrity
from mlsec_jupyter.checks.registry import run_check
from mlsec_jupyter.findings import Severity

STABLE = {"n_rows", "n_features", "nan_count", "inf_count", "constant_columns", "class_counts"}


@pytest.fixture(scope="module")
def cancer():
    data = load_breast_cancer()
    return data.data, data.target, list(data.feature_names)


def by_title(findings):
    return {f.title: f for f in findings}


def text_of(findings) -> str:
    return " ".join(f"{f.title}: {f.summary} {' '.join(f.metrics.get('notes', []))}" for f in findings)


def test_clean_real_data_gives_one_info_finding(cancer):
    X, y, names = cancer
    with unchanged(X, y), rng_unchanged():
        findings = run_check("data.integrity", X=X, y=y, feature_names=names)
    assert len(findings) == 1
    (f,) = findings
    assert f.severity is Severity.INFO and f.title == "No integrity problems found"
    assert STABLE <= set(f.metrics)
    assert f.metrics["n_rows"] == 569 and f.metrics["n_features"] == 30
    assert f.metrics["nan_count"] == 0 and f.metrics["inf_count"] == 0
    assert f.metrics["class_counts"] == {"0": 212, "1": 357}
    assert f.indices == ()


def test_planted_nan_and_inf_exact_counts_and_rows(cancer):
    X, y, names = cancer
    X = X.copy()
    X[[3, 50, 77], 0] = np.nan
    X[[50, 100], 5] = np.nan
    X[[10, 500], 2] = np.inf
    X[11, 2] = -np.inf
    findings = by_title(run_check("data.integrity", X=X, y=y, feature_names=names))
    nan, inf = findings["Missing values"], findings["Infinite values"]
    assert nan.indices == (3, 50, 77, 100)
    assert nan.metrics["nan_count"] == 5 and nan.metrics["rows_with_nan"] == 4
    assert nan.metrics["nan_by_column"] == {names[0]: 3, names[5]: 2}
    assert inf.indices == (10, 11, 500) and inf.metrics["inf_count"] == 3
    assert nan.severity is Severity.LOW and inf.severity is Severity.MEDIUM
    assert "5 missing values (NaN) in 2 of 30 columns, in 4 of 569 rows" in nan.summary
    assert nan.recommendation and inf.recommendation
    for f in findings.values():
        assert STABLE <= set(f.metrics)


def test_constant_columns_on_digits():
    digits = load_digits()
    X, names = digits.data, list(digits.feature_names)
    expected = [names[j] for j in np.flatnonzero(np.ptp(X, axis=0) == 0)]
    assert expected  # digits has blank border pixels
    findings = by_title(run_check("data.integrity", X=X, y=digits.target, feature_names=names))
    const = findings["Constant columns"]
    assert const.metrics["constant_columns"] == expected
    assert const.severity is Severity.LOW


def test_length_mismatch_is_high(cancer):
    X, y, _ = cancer
    (f,) = [f for f in run_check("data.integrity", X=X, y=y[:500]) if f.severity is Severity.HIGH]
    assert f.summary == "X has 569 rows but y has 500 labels."
    assert f.metrics["class_counts"] == {}


def test_single_class_is_medium(cancer):
    X, y, _ = cancer
    f = by_title(run_check("data.integrity", X=X, y=np.ones_like(y)))["Single class"]
    assert f.severity is Severity.MEDIUM
    assert "only one class ('1', 569 rows) — label-flip and membership checks will be skipped" in f.summary


@pytest.mark.parametrize("n_minority, severity", [(50, Severity.LOW), (10, Severity.MEDIUM), (1, Severity.HIGH)])
def test_imbalance_severity_grows(cancer, n_minority, severity):
    X, y, _ = cancer
    keep = np.concatenate([np.flatnonzero(y == 0)[:n_minority], np.flatnonzero(y == 1)])
    f = by_title(run_check("data.integrity", X=X[keep], y=y[keep]))
    title = "Class imbalance"
    assert f[title].severity is severity
    assert f[title].metrics["imbalance_ratio"] == pytest.approx(n_minority / 357)
    assert f[title].metrics["class_counts"] == {"0": n_minority, "1": 357}


def test_balanced_labels_no_finding(cancer):
    X, y, _ = cancer
    keep = np.concatenate([np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:212]])
    assert [f.title for f in run_check("data.integrity", X=X[keep], y=y[keep])] == ["No integrity problems found"]


def test_missing_labels_rows(cancer):
    X, y, _ = cancer
    y = y.astype(float)
    y[[5, 9, 400]] = np.nan
    f = by_title(run_check("data.integrity", X=X, y=y))["Missing labels"]
    assert f.indices == (5, 9, 400) and f.severity is Severity.MEDIUM
    assert f.metrics["class_counts"] == {"0.0": 212 - int((load_breast_cancer().target[[5, 9, 400]] == 0).sum()),
                                         "1.0": 357 - int((load_breast_cancer().target[[5, 9, 400]] == 1).sum())}


def test_dtype_problems_in_a_frame():
    n = 8
    df = pd.DataFrame({
        "mixed": pd.Series([1, 2, "three", 4, 5, 6, 7, 8], dtype=object),
        "as_text": [f"{i}.5" for i in range(n)],
        "half": np.arange(n, dtype=np.float16),
        "huge": np.r_[np.arange(n - 1, dtype=float), 1e39],
        "ids": np.r_[np.arange(n - 1, dtype=np.int64), 2**60],
    })
    with unchanged(df):
        findings = by_title(run_check("data.integrity", X=df))
    assert findings["Mixed value types in a column"].metrics["columns"] == ["mixed"]
    assert "mixes numbers (7) and text values (1)" in findings["Mixed value types in a column"].summary
    assert findings["Numbers stored as text"].metrics["columns"] == ["as_text"]
    assert findings["Low-precision float16 data"].metrics["columns"] == ["half"]
    assert findings["Values beyond float32 range"].metrics["values_affected"] == 1
    assert findings["Integers beyond float64 precision"].metrics["columns"] == ["ids"]
    assert findings["Mixed value types in a column"].severity is Severity.MEDIUM


def test_sampling_path_says_it_sampled(cancer):
    X, y, _ = cancer
    X = X.copy()
    planted = np.arange(0, 569, 3)
    X[planted, 4] = np.nan
    budget = Budget(max_rows=50, seed=0)
    sample = Budget(max_rows=50, seed=0).sample_rows(569)
    with rng_unchanged():
        findings = by_title(integrity(X=X, y=y, budget=budget))
    f = findings["Missing values"]
    assert f.indices == tuple(np.intersect1d(sample, planted))
    assert f.metrics["sampled_rows"] == 50 and f.metrics["total_rows"] == 569
    assert "in a random sample of 50 of 569 rows" in f.summary
    assert "sampled 50 of 569 rows" in budget.notes
    assert f.metrics["class_counts"] == {"0": 212, "1": 357}  # counted over every label (B15)


def test_float32_and_float64_agree(cancer):
    X, y, _ = cancer
    X64 = X.astype(np.float32).astype(np.float64)
    X64[[1, 2], 3] = np.nan
    X64[7, 0] = np.inf
    X64[:, 9] = 1.5
    a = run_check("data.integrity", X=X64, y=y)
    b = run_check("data.integrity", X=X64.astype(np.float32), y=y)
    assert [(f.title, f.indices, f.metrics) for f in a] == [(f.title, f.indices, f.metrics) for f in b]


def _layouts(X):
    big = X.astype(">f8")
    fortran = np.asfortranarray(X)
    reversed_view = X[::-1][::-1]
    ro = X.copy()
    ro.setflags(write=False)
    return {"big-endian": big, "fortran": fortran, "negative-strides": reversed_view, "read-only": ro}


@pytest.mark.parametrize("layout", ["big-endian", "fortran", "negative-strides", "read-only", "memmap",
                                    "torch-grad", "list"])
def test_layouts_give_identical_findings(cancer, tmp_path, layout):
    """B17/B18/B21: the memory layout of X must not change the findings, and X is left alone."""
    X, y, _ = cancer
    X = X[:120].copy()
    X[[4, 8], 2] = np.nan
    if layout == "memmap":
        path = tmp_path / "x.dat"
        X.tofile(path)
        variant = np.memmap(path, dtype=np.float64, mode="r", shape=X.shape)
    elif layout == "torch-grad":
        variant = torch.tensor(X, requires_grad=True)
    elif layout == "list":
        variant = X.tolist()
    else:
        variant = _layouts(X)[layout]
    expected = [(f.title, f.indices, f.metrics) for f in run_check("data.integrity", X=X, y=y[:120])]
    with unchanged(variant), rng_unchanged():
        got = [(f.title, f.indices, f.metrics) for f in run_check("data.integrity", X=variant, y=y[:120])]
    assert got == expected


@pytest.mark.parametrize("case", bad_inputs(), ids=lambda c: c.id)
def test_bad_inputs(case):
    X, y = case.make()
    budget = Budget(max_rows=1000)
    with unchanged(X) if y is None else unchanged(X, y), rng_unchanged():
        findings = integrity(X=X, y=y, budget=budget)
    assert findings and all(f.check == "data.integrity" and f.summary for f in findings)
    assert case.expect["data.integrity"] in text_of(findings)
    assert all({"n_rows", "n_features", "nan_count", "inf_count"} <= set(f.metrics) for f in findings)


def test_sparse_is_sampled_before_densifying():
    import scipy.sparse as sp

    X = sp.random(5000, 40, density=0.01, format="coo", random_state=1)
    budget = Budget(max_rows=100)
    with unchanged(X):
        (f,) = integrity(X=X, budget=budget)
    assert f.metrics["sampled_rows"] == 100 and f.metrics["total_rows"] == 5000
    assert "sampled 100 of 5,000 rows" in budget.notes


def test_meta_and_sparse_tensors_are_skipped_with_type_named():
    for t, phrase in [(torch.ones(3, 2, device="meta"), "meta"), (torch.eye(3).to_sparse(), "sparse tensor")]:
        (f,) = run_check("data.integrity", X=t)
        assert f.severity is Severity.INFO and phrase in f.summary


def test_prepare_features_never_reads_a_stream():
    gen = (row for row in [[1.0, 2.0]])
    with pytest.raises(UnsupportedData, match="stream"):
        prepare_features(gen, Budget())
    assert next(gen) == [1.0, 2.0]


def test_prepare_labels_mixed_and_missing():
    labels = prepare_labels(["a", 1, None, "1", float("nan"), 1], None, Budget())
    assert labels.n_missing == 2
    assert labels.counts() == {"1": 2, "'1'": 1, "'a'": 1}
    assert labels.target_type == "multiclass"
    cont = prepare_labels(np.linspace(0, 1, 50) ** 2, None, Budget())
    assert cont.target_type == "continuous" and cont.counts() == {}


# -- the shared prepare helpers (mlsec_jupyter.checks._tabular) -------------------------------------
class _Recorder:
    """Records every instance-level access a check might make (B30)."""

    calls: list[str] = []

    def __repr__(self):
        _Recorder.calls.append("repr")
        return "recorder"

    def __getattr__(self, name):
        _Recorder.calls.append(f"getattr {name}")
        raise AttributeError(name)

    def __len__(self):
        _Recorder.calls.append("len")
        return 3

    def __iter__(self):
        _Recorder.calls.append("iter")
        return iter([[1.0], [2.0], [3.0]])


def test_unknown_objects_are_classified_by_type_only():
    _Recorder.calls.clear()
    lazy = type("DataFrame", (_Recorder,), {"__module__": "dask.dataframe.core"})()
    for obj, phrase in [(_Recorder(), "not a supported data type"), (lazy, "lazy or out-of-core")]:
        (f,) = run_check("data.integrity", X=obj)
        assert f.severity is Severity.INFO and phrase in f.summary
    column = np.empty((3, 2), dtype=object)
    column[:, 0] = [_Recorder(), _Recorder(), None]
    column[:, 1] = [1.0, 2.0, 3.0]
    _Recorder.calls.clear()  # numpy probed the array protocols while the test built the column
    findings = by_title(run_check("data.integrity", X=column))
    assert "Values that cannot be checked" in findings
    assert _Recorder.calls == []


def test_pandas_default_str_tz_datetime_and_series():
    df = pd.DataFrame({"s": ["a", "b", None, "a"],
                       "t": pd.to_datetime(["2024-01-01", None, "2024-01-02", "2024-01-03"]).tz_localize("UTC"),
                       "b": pd.array([True, None, False, True], dtype="boolean")})
    table = prepare_features(df, Budget())
    assert table.column_kinds == ["text", "datetime", "bool"]
    assert np.isnan(table.values).sum(axis=0).tolist() == [1, 1, 1]
    assert table.values[0, 1] == pd.Timestamp("2024-01-01", tz="UTC").value
    series = prepare_features(pd.Series([1.0, 2.0, 2.0], name=("a", 1)), Budget())
    assert series.columns == ["a / 1"] and series.n_features == 1


def test_wide_sparse_is_capped_by_memory_not_only_rows():
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    X = sp.csr_matrix((np.ones(2_000), (rng.integers(0, 2_000, 2_000), rng.integers(0, 100_000, 2_000))),
                      shape=(2_000, 100_000))
    budget = Budget()
    table = prepare_features(X, budget)
    assert table.n_rows == budget.max_cells // 100_000 == 80  # 8,000,000 cells (64 MB) a table
    assert table.rows is not None and np.all(np.diff(table.rows) > 0)
    assert any("memory budget" in n for n in budget.notes)


def test_nd_input_refused_unless_allowed():
    X = np.arange(24.0).reshape(2, 3, 4)
    with pytest.raises(UnsupportedData, match="dim 3"):
        prepare_features(X, Budget())
    table = prepare_features(X, Budget(), allow_nd=True)
    assert table.values.shape == (2, 12) and np.array_equal(table.values, X.reshape(2, -1))


def test_prepare_labels_other_containers():
    b = Budget()
    t = torch.tensor([[1], [0], [1]])
    assert prepare_labels(t, None, b).counts() == {"0": 1, "1": 2}
    cat = pd.Series(pd.Categorical(["x", None, "z"], categories=["x", "y", "z"]))
    labels = prepare_labels(cat, np.array([0, 1, 2]), b)
    assert labels.classes == ["x", "z"] and labels.n_missing == 1
    assert prepare_labels(np.array([True, False, True]), None, b).classes == ["False", "True"]
    with pytest.raises(UnsupportedData, match="multi-output"):
        prepare_labels(np.zeros((3, 2)), None, b)
    with pytest.raises(UnsupportedData, match="fewer than the rows"):
        prepare_labels([1, 2], np.array([0, 5]), b)
