"""The standards table: every check maps to MITRE ATLAS, OWASP ML Top 10 and NIST AI RMF ids, and every
finding carries its check's row (the single source for cards and SARIF)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import mlsec_jupyter as mj
from mlsec_jupyter.checks.registry import all_checks, load_builtin_checks
from mlsec_jupyter.findings import Finding, Severity
from mlsec_jupyter.standards import ATLAS_NAMES, NIST_NAMES, OWASP_NAMES, STANDARDS, references_for

ATLAS_ID = re.compile(r"AML\.T\d{4}(\.\d{3})?")
OWASP_ID = re.compile(r"ML(0[1-9]|10):2023")
NIST_ID = re.compile(r"(GOVERN|MAP|MEASURE|MANAGE) \d+\.\d+")


def test_every_built_in_check_has_a_row_in_every_framework():
    load_builtin_checks()
    ids = {spec.id for spec in all_checks()}
    assert ids <= set(STANDARDS), ids - set(STANDARDS)
    design_ids = {"data.integrity", "data.duplicates", "data.outliers", "data.label_flips", "data.backdoor",
                  "privacy.dp_budget", "privacy.membership", "robustness.evasion", "robustness.noise",
                  "model.extraction", "model.inversion", "supply.pickle"}
    assert design_ids <= set(STANDARDS)
    for check, std in STANDARDS.items():
        assert std.atlas and std.owasp and std.nist, check
        assert all(ATLAS_ID.fullmatch(t) and t in ATLAS_NAMES for t in std.atlas), (check, std.atlas)
        assert all(OWASP_ID.fullmatch(o) and o in OWASP_NAMES for o in std.owasp), (check, std.owasp)
        assert all(NIST_ID.fullmatch(n) and n in NIST_NAMES for n in std.nist), (check, std.nist)


@pytest.mark.parametrize("check, atlas, owasp", [
    ("data.label_flips", "AML.T0020", "ML02:2023"),
    ("privacy.membership", "AML.T0024.000", "ML04:2023"),
    ("model.inversion", "AML.T0024.001", "ML03:2023"),
    ("model.extraction", "AML.T0024.002", "ML05:2023"),
    ("robustness.evasion", "AML.T0015", "ML01:2023"),
    ("supply.pickle", "AML.T0011.000", "ML06:2023"),
])
def test_the_mapping_names_the_threat_each_check_looks_for(check, atlas, owasp):
    std = STANDARDS[check]
    assert atlas in std.atlas and owasp in std.owasp


def test_findings_carry_their_checks_row_first_then_extra_references():
    f = Finding("privacy.membership", Severity.HIGH, "t", references=["Jagielski et al. 2020"])
    assert f.references[:-1] == STANDARDS["privacy.membership"].references()
    assert f.references[-1] == "Jagielski et al. 2020"
    # a reference already in the row is not repeated; a saved card reads back the same
    again = Finding.from_dict(f.to_dict())
    assert again.references == f.references
    assert Finding("my.own_check", Severity.LOW, "t").references == ()
    assert references_for("my.own_check", ("x",)) == ("x",)


def test_real_check_findings_show_the_standards_on_the_card():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] > 0).astype(int)
    X = np.vstack([X, X[:10]])
    y = np.r_[y, 1 - y[:10]]
    card = mj.scan_data(X, y)
    for f in card.findings:
        assert f.references[: len(STANDARDS[f.check].references())] == STANDARDS[f.check].references()
    conflict = next(f for f in card.findings if f.title == "Duplicates with conflicting labels")
    html = card._repr_mimebundle_()["text/html"]
    assert "MITRE ATLAS AML.T0020 Poison Training Data" in html and "OWASP ML02:2023" in html
    assert "NIST AI RMF MEASURE 2.7" in conflict.references
