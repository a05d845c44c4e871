"""A contract every registered data check must keep (like scikit-learn's estimator_checks).

New checks are picked up automatically: they get the mutation and RNG guards (R9-R11), the bad
inputs B1-B14, the stable metrics of DESIGN.md and an escaped card, without a line added here.
"""

from __future__ import annotations

import html5lib
import numpy as np
import pytest

import mlsec_jupyter as mj
from guards import bad_inputs, rng_unchanged, unchanged
from mlsec_jupyter.checks.budget import Budget
from mlsec_jupyter.checks.registry import all_checks
from mlsec_jupyter.findings import Finding, Severity

DATA_CHECKS = [s for s in all_checks() if s.applies_to == "dataset"]
STABLE_METRICS = {
    "data.integrity": {"n_rows", "n_features", "nan_count", "inf_count", "constant_columns", "class_counts"},
    "data.duplicates": {"exact_duplicates", "conflicting_label_duplicates", "train_test_overlap",
                        "near_duplicates", "conflicting_label_near_duplicates"},
    "data.outliers": {"outlier_rate"},
    "data.label_flips": {"estimated_flip_rate"},
    "data.backdoor": {"suspect_rate", "target_class"},
}


def _inputs(spec, X, y, X_test=None, y_test=None):
    given = {"X": X, "y": y, "X_test": X_test, "y_test": y_test}
    return {k: v for k, v in given.items() if k in spec.parameters}


def _frames():
    import pandas as pd
    import torch
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    frame = pd.DataFrame(X[:, :6], columns=[f"f{i}" for i in range(6)])
    return {
        "numpy": (X, y),
        "pandas": (frame, pd.Series(y, name="target")),
        "torch": (torch.tensor(X[:200], requires_grad=True), torch.tensor(y[:200])),
        "read-only": (np.asarray(X[:100]).copy(), y[:100]),
    }


@pytest.mark.parametrize("spec", DATA_CHECKS, ids=lambda s: s.id)
@pytest.mark.parametrize("kind", ["numpy", "pandas", "torch", "read-only"])
def test_data_check_keeps_user_objects_and_rngs_unchanged(spec, kind):
    """R9, R11: the data (content, flags, dtype, strides, index) and the global RNGs are unchanged."""
    X, y = _frames()[kind]
    if kind == "read-only":
        X.flags.writeable = False
    with unchanged(X, y), rng_unchanged():
        findings = spec.func(**_inputs(spec, X, y, X[:10], y[:10]), budget=Budget())
    assert findings, "a check always returns at least one finding (info when clean)"
    assert all(isinstance(f, Finding) and f.check == spec.id for f in findings)
    for f in findings:
        assert STABLE_METRICS.get(spec.id, set()) <= set(f.metrics), (f.title, sorted(f.metrics))
        assert all(0 <= i < len(y) for i in f.indices)


@pytest.mark.parametrize("spec", DATA_CHECKS, ids=lambda s: s.id)
@pytest.mark.parametrize("case", bad_inputs(), ids=lambda c: c.id)
def test_data_check_gives_a_clear_line_for_bad_inputs(spec, case):
    X, y = case.make()
    with unchanged(X, y), rng_unchanged():
        findings = spec.func(**_inputs(spec, X, y), budget=Budget())
    assert findings and all(f.title and f.summary for f in findings)
    if spec.id in case.expect:
        text = " ".join(f"{f.title} {f.summary} {f.metrics.get('notes', '')}" for f in findings)
        assert case.expect[spec.id] in text, text


@pytest.mark.parametrize("spec", DATA_CHECKS, ids=lambda s: s.id)
def test_data_check_is_clean_on_clean_data(spec):
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    findings = spec.func(**_inputs(spec, X, y), budget=Budget())
    assert max(f.severity for f in findings) <= Severity.LOW, [f.title for f in findings]


PAYLOADS = ['<script>alert(1)</script>', '<img src=x onerror=alert(1)>', '</td></tr><svg onload=alert(1)>',
            'javascript:alert(1)', '<a data-commandlinker-command="notebook:run-all">x</a>']


def test_user_strings_from_data_come_out_escaped_on_the_card():
    import pandas as pd

    frame = pd.DataFrame({p: [1.0, np.nan, 1.0, 1.0] for p in PAYLOADS})  # NaN + constant columns named by payloads
    labels = pd.Series(PAYLOADS[:2] * 2)
    card = mj.scan_data(frame, labels, name=PAYLOADS[0])
    page = card._repr_mimebundle_()["text/html"]
    tree = html5lib.parse(page, namespaceHTMLElements=False)
    for element in tree.iter():
        assert element.tag not in {"script", "svg", "img", "a", "form", "iframe"}, element.tag
        for name in element.attrib:
            assert not name.lower().startswith("on") and "commandlinker" not in name.lower()
    text = "".join(tree.itertext())
    assert "<script>alert(1)</script>" in text  # shown, as text
