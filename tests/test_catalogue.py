"""Every row of the reliability catalogue (notes/reliability.md: R1-R13, S1-S5, P1-P16, B1-B39, Q1-Q10,
L1-L9) has a test, a bench figure or a documented limit (issue 10), and keeps it.

A test covers a row when its name starts with the row's id (``test_q4_…``, ``test_p16_…``) or its own
docstring names it (``\"\"\"R1.\"\"\"``, ``\"\"\"S1, through a real cell.\"\"\"``); a module docstring does not count.
Bad-input rows are the parametrised rows of tests/test_bad_inputs.py and tests/guards.py (ids ``"B15-…"``).
Load rows are figures of bench/load.py, written to bench/RESULTS.md. A deliberate exception is a README
"Limits" entry naming the row, e.g. ``(B26, B27)``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
ROWS = {"R": 13, "S": 5, "P": 16, "B": 39, "Q": 10, "L": 9}
ID = re.compile(r"\b([RSPBQL])(\d{1,2})\b")


def _catalogue() -> list[str]:
    return [f"{kind}{n}" for kind, count in ROWS.items() for n in range(1, count + 1)]


def _test_functions() -> dict[str, set[str]]:
    """Row id → the tests (``file::name``) that cover it, by name prefix or by their own docstring."""
    covered: dict[str, set[str]] = {}
    for path in sorted(TESTS.rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.name.startswith("test_"):
                continue
            named = re.match(r"test_([rspbql]\d{1,2})_", node.name)
            ids = {named.group(1).upper()} if named else set()
            ids |= {kind + n for kind, n in ID.findall(ast.get_docstring(node) or "")}
            for row in ids:
                covered.setdefault(row, set()).add(f"{path.relative_to(TESTS)}::{node.name}")
    return covered


def _bad_input_rows() -> set[str]:
    text = (TESTS / "guards.py").read_text() + (TESTS / "test_bad_inputs.py").read_text()
    rows = set()
    for first, second in re.findall(r"[\"'](B\d{1,2})(?:-(B\d{1,2}))?-[a-z0-9{]", text):
        rows |= {first} | ({second} if second else set())
    return rows


def _load_rows() -> set[str]:
    bench = (ROOT / "bench" / "load.py").read_text()
    results = (ROOT / "bench" / "RESULTS.md").read_text()
    section = results[results.index("<!-- section load: begin -->"):results.index("<!-- section load: end -->")]
    return {f"L{n}" for n in range(1, 10) if re.search(rf"\bL{n}\b", bench) and re.search(rf"\bL{n}\b", section)}


def _readme_limits() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Limits")
    limits = readme[start:readme.index("\n## ", start + 1)]
    return {kind + n for kind, n in ID.findall(limits)}


def test_every_catalogue_row_has_a_test_a_bench_figure_or_a_documented_limit():
    tests, bad, load, limits = _test_functions(), _bad_input_rows(), _load_rows(), _readme_limits()
    uncovered = [row for row in _catalogue()
                 if row not in tests and row not in bad and row not in load and row not in limits]
    assert not uncovered, f"rows without a test, bench figure or README limit: {uncovered}"


def test_runtime_security_and_property_rows_are_covered_by_tests_not_only_by_limits():
    """The R, S and Q rows are behaviour a user relies on in every session: each needs a test."""
    tests = _test_functions()
    missing = [row for row in _catalogue() if row[0] in "RSQP" and row not in tests]
    assert not missing, f"no test names these rows: {missing}"


def test_every_bad_input_row_runs_through_a_cell_and_the_api():
    assert {f"B{n}" for n in range(1, 40)} <= _bad_input_rows()


def test_every_load_row_is_measured_and_reported():
    assert _load_rows() == {f"L{n}" for n in range(1, 10)}


def test_ids_named_anywhere_exist_in_the_catalogue():
    """A mistyped id (a number past the end of its kind) would claim coverage of a row that does not exist."""
    catalogue = set(_catalogue())
    claimed = set(_test_functions()) | _readme_limits()
    assert claimed <= catalogue, sorted(claimed - catalogue)
