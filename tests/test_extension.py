"""The extension in a real in-process IPython shell: wiring (R1-R5), watching cells, magics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from IPython.core.error import UsageError

from conftest import card_bundles, run
from mlsec_jupyter import extension
from mlsec_jupyter.audit import read_audit
from mlsec_jupyter.checks.registry import register_check, unregister_check
from mlsec_jupyter.findings import Finding

LOAD_CELL = "from sklearn.datasets import load_breast_cancer\nX, y = load_breast_cancer(return_X_y=True)"


def _ours(ip, event: str) -> int:
    return sum(getattr(cb, "__self__", None).__class__ is extension.Extension
               for cb in ip.events.callbacks[event])


# -- load / unload / reload (R4, R5) -----------------------------------------------------------------

def test_load_twice_and_reload_three_times_keep_one_callback_per_event(shell):
    """R4: two loads and three reloads leave one callback per event."""
    shell.run_line_magic("load_ext", "mlsec_jupyter")
    shell.run_line_magic("load_ext", "mlsec_jupyter")
    for _ in range(3):
        shell.run_line_magic("reload_ext", "mlsec_jupyter")
    assert _ours(shell, "pre_run_cell") == 1
    assert _ours(shell, "post_run_cell") == 1
    assert "mlsec" in shell.magics_manager.magics["line"]


def test_unload_removes_callbacks_magics_threads_and_warning_hook(shell):
    import threading
    import warnings

    shell.run_line_magic("load_ext", "mlsec_jupyter")
    run(shell, LOAD_CELL)  # starts worker threads
    shell.run_line_magic("unload_ext", "mlsec_jupyter")
    assert _ours(shell, "pre_run_cell") == 0 and _ours(shell, "post_run_cell") == 0
    assert "mlsec" not in shell.magics_manager.magics["line"]
    assert "mlsec" not in shell.magics_manager.magics["cell"]
    assert not hasattr(warnings.showwarning, "__mlsec_original__")  # our warning hook is gone
    assert not [t for t in threading.enumerate() if t.name.startswith("mlsec-")]
    assert extension.current() is None


def test_failed_load_leaves_nothing_and_retry_works(shell, monkeypatch):
    """R4: a load failing after its first registration leaves nothing behind, and a retry works."""
    import mlsec_jupyter.magics as magics

    real = magics.MlsecMagics

    def broken(*args, **kwargs):
        raise RuntimeError("injected failure after the hooks were registered")

    monkeypatch.setattr(magics, "MlsecMagics", broken)
    with pytest.raises(RuntimeError):
        extension.load(shell)
    assert _ours(shell, "pre_run_cell") == 0 and _ours(shell, "post_run_cell") == 0
    monkeypatch.setattr(magics, "MlsecMagics", real)
    shell.run_line_magic("load_ext", "mlsec_jupyter")
    assert _ours(shell, "pre_run_cell") == 1 and _ours(shell, "post_run_cell") == 1


def test_reset_keeps_exactly_one_working_callback(ip):
    """R4: ``%reset -f`` keeps exactly one working callback."""
    ip.run_line_magic("reset", "-f")
    assert _ours(ip, "pre_run_cell") == 1
    _, outputs, _, _ = run(ip, LOAD_CELL)
    assert len(card_bundles(outputs)) == 1


# -- cards for watched cells ------------------------------------------------------------------------

def test_load_cell_shows_one_finished_card_with_both_checks(ip):
    result, outputs, out, err = run(ip, LOAD_CELL)
    assert result.success and not err
    (card,) = card_bundles(outputs)
    assert card["status"] == "done" and card["progress"] == 1.0
    assert card["subject"].startswith("X, y")
    checks = {f["check"] for f in card["findings"]}
    assert checks >= {"data.integrity", "data.duplicates"}
    integrity = next(f for f in card["findings"] if f["check"] == "data.integrity")
    assert integrity["metrics"]["n_rows"] == 569 and integrity["metrics"]["n_features"] == 30
    bundle = next(o.data for o in outputs if "text/html" in o.data)
    assert "text/plain" in bundle and "X, y" in bundle["text/html"]


def test_cell_that_makes_nothing_new_shows_nothing(ip):
    run(ip, LOAD_CELL)
    for code in ("a = 1", "b = X.mean()", "print('fit')", "def load_thing():\n    return 1"):
        _, outputs, _, _ = run(ip, code)
        assert card_bundles(outputs) == [], code


def test_split_then_fit_reports_train_test_overlap(ip):
    run(ip, LOAD_CELL)
    _, outputs, _, _ = run(ip, "import numpy as np\nfrom sklearn.model_selection import train_test_split\n"
                               "X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)\n"
                               "X_test = np.vstack([X_test, X_train[:10]]); y_test = np.r_[y_test, y_train[:10]]")
    (split_card,) = card_bundles(outputs)
    assert "X_train, y_train (train)" in split_card["subject"]
    _, outputs, _, _ = run(ip, "from sklearn.linear_model import LogisticRegression\n"
                               "clf = LogisticRegression(max_iter=5000).fit(X_train, y_train)")
    for code in ("clf = LogisticRegression(max_iter=5000).fit(X_train, y_train)", "clf.fit(X_train, y_train)"):
        _, outputs, _, _ = run(ip, code)
        (card,) = card_bundles(outputs)
        assert card["subject"].startswith("clf (sklearn) fitted on X_train, y_train"), code
        overlap = [f["metrics"]["train_test_overlap"] for f in card["findings"]
                   if f["check"] == "data.duplicates" and f["metrics"].get("train_test_overlap")]
        assert overlap == [10], code


def test_failed_cell_keeps_its_error_and_gets_no_card(ip):
    result, outputs, _, _ = run(ip, LOAD_CELL + "\n1/0")
    assert isinstance(result.error_in_exec, ZeroDivisionError)
    assert card_bundles(outputs) == []


@pytest.mark.parametrize("code", [
    "   \n",  # post without pre
    "def broken(:\n    pass",  # SyntaxError
    "%%capture\nfrom sklearn.datasets import load_iris\nXi, yi = load_iris(return_X_y=True)",
    "async def f():\n    return 1\nawait f()",
    "X2 = load_breast_cancer(return_X_y=True)[0]; raise KeyboardInterrupt",
])
def test_odd_cells_never_raise_from_our_hooks(ip, code):
    run(ip, LOAD_CELL)
    _, _, out, err = run(ip, code)
    assert "Error in callback" not in out + err
    assert "mlsec" not in err


def test_capture_cell_gets_exactly_one_card(ip):
    run(ip, "from sklearn.datasets import load_iris")
    _, outputs, _, _ = run(ip, "%%capture\nXi, yi = load_iris(return_X_y=True)")
    assert len(card_bundles(outputs)) == 1


def test_post_run_cell_with_none_and_without_pre_is_harmless(ip):
    ext = extension.current()
    ext.post_run_cell(None)
    ext.post_run_cell(None)
    ext.pre_run_cell(None)
    ext.pre_run_cell(None)
    ext.post_run_cell(None)
    ext.post_run_cell(None)
    _, outputs, _, _ = run(ip, LOAD_CELL)
    assert len(card_bundles(outputs)) == 1


def test_a_failing_check_becomes_a_line_on_the_card_not_a_traceback(ip):
    @register_check("test.explodes", applies_to="dataset", title="explodes")
    def explodes(*, X, budget):
        raise RuntimeError("<img src=x onerror=alert(1)> boom")

    try:
        result, outputs, out, err = run(ip, LOAD_CELL)
    finally:
        unregister_check("test.explodes")
    assert result.success and "Traceback" not in out + err and "Error in callback" not in out + err
    (card,) = card_bundles(outputs)
    run_line = next(r for r in card["checks"] if r["check"] == "test.explodes")
    assert run_line["status"] == "failed"
    assert run_line["message"].startswith("RuntimeError: ")
    html = next(o.data["text/html"] for o in outputs if "text/html" in o.data)
    assert "<img src=x" not in html and "&lt;img src=x" in html


def test_checks_do_not_touch_user_data_or_global_rngs(ip):
    import random

    run(ip, "import numpy as np\nrng = np.random.default_rng(0)")
    ip.user_ns["rng_before"] = (np.random.get_state()[1].copy(), random.getstate())
    run(ip, LOAD_CELL)
    X = ip.user_ns["X"]
    before = (X.tobytes(), X.flags.writeable, X.strides)
    run(ip, "from sklearn.model_selection import train_test_split\n"
            "X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)")
    assert (X.tobytes(), X.flags.writeable, X.strides) == before
    state, py_state = ip.user_ns["rng_before"]
    assert np.array_equal(np.random.get_state()[1], state) and random.getstate() == py_state


def test_checked_data_is_freed_after_del(ip):
    import gc
    import weakref

    run(ip, "import numpy as np\nfrom sklearn.datasets import make_classification\n"
            "Xbig, ybig = make_classification(n_samples=20_000, n_features=50, random_state=0)")
    ref = weakref.ref(ip.user_ns["Xbig"])
    run(ip, "del Xbig, ybig")
    gc.collect()
    assert ref() is None, gc.get_referrers(ref())


# -- magics ---------------------------------------------------------------------------------------

def test_magics_status_checks_config_off_on(ip):
    _, _, out, _ = run(ip, "%mlsec checks")
    assert "data.integrity" in out and "data.duplicates" in out
    _, _, out, _ = run(ip, "%mlsec config time_budget=5 sample_size=1000 min_severity=low")
    assert "time_budget=5.0" in out and "min_severity=low" in out
    run(ip, "%mlsec off")
    _, outputs, _, _ = run(ip, LOAD_CELL)
    assert card_bundles(outputs) == []
    _, outputs, _, _ = run(ip, "%%mlsec\nX3, y3 = X[:100], y[:100]")
    assert len(card_bundles(outputs)) == 1
    run(ip, "%mlsec on")
    _, _, out, _ = run(ip, "%mlsec status")
    assert "watching on" in out and "checks registered" in out


def test_wait_and_cancel_magics_report_what_they_did(ip):
    run(ip, LOAD_CELL)
    _, _, out, _ = run(ip, "%mlsec wait 10")
    assert "all checks finished (1 card(s) this session)" in out
    _, _, out, _ = run(ip, "%mlsec cancel")
    assert "cancelled 0 check(s)" in out


def test_scan_magic_checks_named_data(ip):
    run(ip, "import numpy as np\nZ = np.zeros((50, 3)); Z[3, 1] = np.nan\nlabels = np.r_[np.zeros(25), np.ones(25)]")
    _, outputs, _, _ = run(ip, "%mlsec scan Z labels")
    (card,) = card_bundles(outputs)
    integrity = next(f for f in card["findings"] if f["check"] == "data.integrity")
    assert integrity["metrics"]["nan_count"] == 1


@pytest.mark.parametrize("line", ["bogus", "config time_budget=-1", "config sample_size=ten",
                                  "config nope=1", "config justtext", "scan undefined_name", "wait soon"])
def test_bad_magic_arguments_give_one_clear_line(ip, line):
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("mlsec", line)
    message = str(info.value)
    assert "\n" not in message and message


def test_findings_go_to_the_audit_log(ip, in_tmp):
    run(ip, LOAD_CELL)
    path = in_tmp / ".mlsec" / "audit.jsonl"
    records = list(read_audit(path))
    assert {r["check"] for r in records} >= {"data.integrity", "data.duplicates"}
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with open(path, "a") as fh:
        fh.write('{"torn": ')  # a crash mid-write
    assert len(list(read_audit(path))) == len(records)
    assert all(isinstance(json.dumps(r), str) for r in records)
    ip.run_line_magic("mlsec", "config audit=off")
    run(ip, "X9, y9 = load_breast_cancer(return_X_y=True)")
    assert len(list(read_audit(path))) == len(records)


def test_public_api_works_without_ipython():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import mlsec_jupyter as mj

    X, y = load_iris(return_X_y=True)
    card = mj.scan_data(X, y)
    assert card.status == "done"
    assert isinstance(card.findings[0], mj.Finding)
    assert card.by_check("data.duplicates")[0].metrics["exact_duplicates"] >= 1
    clf = LogisticRegression(max_iter=1000).fit(X[:100], y[:100])
    card = mj.scan_model(clf, X[:100], y[:100], X_test=X[:20], y_test=y[:20])
    overlap = [f for f in card.by_check("data.duplicates") if f.metrics.get("train_test_overlap")]
    assert overlap and overlap[0].metrics["train_test_overlap"] == 20
    findings = mj.run_check("data.integrity", X=X, y=y)
    assert findings and all(isinstance(f, Finding) for f in findings)
    with pytest.raises(TypeError):
        mj.scan_model(X)
    with pytest.raises(KeyError):
        mj.run_check("data.nope", X=X)


def test_loading_imports_neither_sklearn_nor_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom IPython.testing.globalipapp import get_ipython\nip = get_ipython()\n"
            "before = set(sys.modules)\n"
            "ip.run_line_magic('load_ext', 'mlsec_jupyter')\nfrom mlsec_jupyter import extension\n"
            "extension.current()._warmup.join(10)\nnew = set(sys.modules) - before\n"
            "print(sorted(m for m in ('sklearn', 'torch', 'pandas', 'matplotlib', 'scipy') if m in new))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_help_shows_every_command(ip):
    _, _, out, _ = run(ip, "%mlsec?")
    for command in ("status", "on | off", "scan EXPR [LABELS]", "checks", "config", "wait", "%%mlsec"):
        assert command in out, command
    _, _, out2, _ = run(ip, "%mlsec help")
    assert "scan EXPR [LABELS]" in out2
