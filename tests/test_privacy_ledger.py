"""Privacy ledger: composition semantics, persistence, file safety (S5) and kill -9 robustness (L9)."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mlsec_jupyter.privacy.accounting import epsilon_of_history
from mlsec_jupyter.privacy.ledger import FORMAT, VERSION, Entry, Ledger, LedgerError

KEY = "3f9a" * 16  # a blake2b-256-style hex fingerprint
DELTA = 1e-5
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / ".mlsec" / "privacy")


def test_round_trip(ledger: Ledger):
    e = ledger.record(KEY, run_id="r1", history=[(1.1, 0.01, 100), (0.9, 0.02, 5)], delta_hint=1e-5,
                      label="train <cell 3>", source="opacus PrivacyEngine 'engine'")
    assert isinstance(e, Entry)
    [got] = ledger.entries(KEY)
    assert got == e
    assert got.history == [(1.1, 0.01, 100), (0.9, 0.02, 5)]
    assert all(isinstance(s, tuple) for s in got.history)
    assert (got.label, got.source, got.delta_hint) == ("train <cell 3>", "opacus PrivacyEngine 'engine'", 1e-5)
    assert got.steps == 105
    assert ledger.keys() == [KEY]
    doc = json.loads(ledger.path(KEY).read_text())
    assert doc["format"] == FORMAT and doc["version"] == VERSION and doc["key"] == KEY
    assert doc["entries"][0]["history"] == [[1.1, 0.01, 100], [0.9, 0.02, 5]]


def test_nothing_recorded(ledger: Ledger):
    assert ledger.entries(KEY) == [] and ledger.history(KEY) == []
    assert ledger.spent(KEY, delta=DELTA) == 0.0
    assert ledger.budget(KEY) is None and ledger.remaining(KEY) is None
    assert ledger.would_exceed(KEY, [(1.0, 0.1, 10)]) is None
    assert ledger.keys() == [] and ledger.forget(KEY) is False
    assert not ledger.directory.exists()  # reading creates nothing


def test_same_run_id_replaces_new_run_id_composes(ledger: Ledger):
    ledger.record(KEY, run_id="engine-a", history=[(1.1, 0.01, 100)])
    ledger.record(KEY, run_id="engine-a", history=[(1.1, 0.01, 200)])  # re-run: whole history again
    assert ledger.history(KEY) == [(1.1, 0.01, 200)]
    ledger.record(KEY, run_id="engine-b", history=[(2.0, 0.05, 50)])
    assert [e.run_id for e in ledger.entries(KEY)] == ["engine-a", "engine-b"]
    assert ledger.history(KEY) == [(1.1, 0.01, 200), (2.0, 0.05, 50)]
    assert ledger.history(KEY, exclude_run="engine-a") == [(2.0, 0.05, 50)]
    ledger.record(KEY, run_id="engine-a", history=[(1.1, 0.01, 300)])  # replaced in place
    assert [e.run_id for e in ledger.entries(KEY)] == ["engine-a", "engine-b"]
    assert ledger.history(KEY)[0] == (1.1, 0.01, 300)


def test_spent_is_epsilon_of_concatenation(ledger: Ledger):
    a, b = [(1.1, 0.01, 1000)], [(0.8, 0.004, 500), (1.5, 0.02, 100)]
    ledger.record(KEY, run_id="a", history=a)
    ledger.record(KEY, run_id="b", history=b)
    expected = epsilon_of_history(a + b, delta=DELTA)
    assert ledger.spent(KEY, delta=DELTA) == pytest.approx(expected, rel=1e-12)
    assert ledger.spent(KEY, delta=DELTA, exclude_run="a") == pytest.approx(epsilon_of_history(b, delta=DELTA))
    assert ledger.spent(KEY, delta=DELTA, accountant="rdp") == pytest.approx(
        epsilon_of_history(a + b, delta=DELTA, accountant="rdp"))
    assert ledger.spent(KEY, delta=DELTA) > ledger.spent(KEY, delta=DELTA, exclude_run="b")


def test_budget_and_would_exceed(ledger: Ledger):
    ledger.record(KEY, run_id="a", history=[(1.1, 0.01, 1000)])
    spent = ledger.spent(KEY, delta=DELTA)
    ledger.set_budget(KEY, epsilon=spent + 0.5, delta=DELTA)
    assert ledger.budget(KEY) == (spent + 0.5, DELTA)
    assert ledger.remaining(KEY) == pytest.approx(0.5)
    assert ledger.would_exceed(KEY, [(1.1, 0.01, 10)]) is None
    big = [(1.1, 0.01, 20000)]
    after, budget = ledger.would_exceed(KEY, big)
    assert budget == spent + 0.5
    assert after == pytest.approx(epsilon_of_history([(1.1, 0.01, 1000)] + big, delta=DELTA))
    # as a re-run of "a", the plan replaces a's history instead of adding to it
    assert ledger.would_exceed(KEY, [(1.1, 0.01, 1200)], run_id="a") is None
    assert ledger.would_exceed(KEY, [(1.1, 0.01, 1200)]) is not None
    ledger.record(KEY, run_id="b", history=big)
    assert ledger.remaining(KEY) < 0  # over budget: negative
    ledger.clear_budget(KEY)
    assert ledger.budget(KEY) is None and ledger.remaining(KEY) is None
    assert len(ledger.entries(KEY)) == 2  # records stay


def test_keys_and_forget(ledger: Ledger):
    for k in ("b" * 64, "a" * 64):
        ledger.record(k, run_id="r", history=[(1.0, 0.1, 1)])
    assert ledger.keys() == ["a" * 64, "b" * 64]
    assert ledger.forget("a" * 64) is True
    assert ledger.keys() == ["b" * 64] and ledger.entries("a" * 64) == []


def test_persists_across_instances(ledger: Ledger):
    ledger.set_budget(KEY, epsilon=3, delta=DELTA)
    ledger.record(KEY, run_id="a", history=[(1.1, 0.01, 100)], label="first kernel")
    again = Ledger(ledger.directory)  # a kernel restart
    assert again.budget(KEY) == (3.0, DELTA)
    assert again.entries(KEY) == ledger.entries(KEY)
    again.record(KEY, run_id="b", history=[(1.1, 0.01, 100)])
    assert [e.run_id for e in Ledger(ledger.directory).entries(KEY)] == ["a", "b"]


def test_file_and_directory_modes(ledger: Ledger):
    """S5: files 0600, folders 0700, whatever the umask; no temp file left."""
    old = os.umask(0o022)
    try:
        ledger.record(KEY, run_id="a", history=[(1.1, 0.01, 100)])
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(os.lstat(p).st_mode)
    assert mode(ledger.directory) == 0o700
    assert mode(ledger.directory.parent) == 0o700
    assert mode(ledger.path(KEY)) == 0o600
    assert mode(ledger.directory / "ledger.lock") == 0o600
    assert [p.name for p in ledger.directory.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("value, name", [
    (dict(history=[(0, 0.1, 1)]), "noise_multiplier"),
    (dict(history=[(-1.0, 0.1, 1)]), "noise_multiplier"),
    (dict(history=[(1.0, 0.0, 1)]), "sample_rate"),
    (dict(history=[(1.0, 1.5, 1)]), "sample_rate"),
    (dict(history=[(1.0, 0.1, 1.5)]), "steps"),
    (dict(history=[(1.0, 0.1, -1)]), "steps"),
    (dict(history=[(1.0, 0.1)]), "triple"),
    (dict(history="abc"), "history"),
    (dict(history=[(float("nan"), 0.1, 1)]), "noise_multiplier"),
    (dict(history=[(1.0, 0.1, 1)], delta_hint=1.0), "delta_hint"),
    (dict(history=[(1.0, 0.1, 1)], run_id=""), "run_id"),
])
def test_record_validates(ledger: Ledger, value, name):
    kwargs = {"run_id": "r", **value}
    with pytest.raises(ValueError, match=name):
        ledger.record(KEY, **kwargs)
    assert not ledger.path(KEY).exists()


def test_other_validation(ledger: Ledger):
    for bad in ("", "../x", ".hidden", "a/b", "x" * 201, 7):
        with pytest.raises(ValueError, match="key"):
            ledger.record(bad, run_id="r", history=[])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="epsilon"):
        ledger.set_budget(KEY, epsilon=0, delta=DELTA)
    with pytest.raises(ValueError, match="delta"):
        ledger.set_budget(KEY, epsilon=1, delta=0)
    with pytest.raises(ValueError, match="delta"):
        ledger.spent(KEY, delta=1.0)
    with pytest.raises(ValueError, match="planned_history"):
        ledger.would_exceed(KEY, [(1.0, 2.0, 1)])


def test_refuses_symlinked_file(ledger: Ledger, tmp_path: Path):
    """S5: a symlink in place of the ledger file is refused, never followed; its target is untouched."""
    ledger.record(KEY, run_id="a", history=[(1.1, 0.01, 100)])
    target = tmp_path / "elsewhere.json"
    target.write_text("precious")
    ledger.path(KEY).unlink()
    ledger.path(KEY).symlink_to(target)
    with pytest.raises(LedgerError, match="symbolic link"):
        ledger.entries(KEY)
    with pytest.raises(LedgerError, match="symbolic link"):
        ledger.spent(KEY, delta=DELTA)
    with pytest.raises(LedgerError, match="symbolic link"):
        ledger.record(KEY, run_id="b", history=[(1.1, 0.01, 100)])
    assert target.read_text() == "precious" and ledger.path(KEY).is_symlink()
    assert ledger.forget(KEY) is True  # unlink removes the link, not its target
    assert target.read_text() == "precious"


def test_refuses_symlinked_lock(ledger: Ledger, tmp_path: Path):
    ledger.directory.mkdir(parents=True)
    target = tmp_path / "victim"
    target.write_text("x")
    (ledger.directory / "ledger.lock").symlink_to(target)
    with pytest.raises(LedgerError, match="symbolic link"):
        ledger.record(KEY, run_id="a", history=[(1.1, 0.01, 100)])
    assert target.read_text() == "x"


@pytest.mark.parametrize("which", ["privacy", ".mlsec"])
def test_refuses_symlinked_directory(tmp_path: Path, which: str):
    real = tmp_path / "real"
    real.mkdir()
    if which == "privacy":
        (tmp_path / ".mlsec").mkdir()
        (tmp_path / ".mlsec" / "privacy").symlink_to(real)
    else:
        (tmp_path / ".mlsec").symlink_to(real)
    ledger = Ledger(tmp_path / ".mlsec" / "privacy")
    with pytest.raises(LedgerError, match="symbolic link"):
        ledger.record(KEY, run_id="a", history=[(1.1, 0.01, 100)])
    with pytest.raises(LedgerError, match="symbolic link"):
        ledger.entries(KEY)
    with pytest.raises(LedgerError, match="symbolic link"):
        ledger.keys()
    assert list(real.iterdir()) == []


@pytest.mark.parametrize("content, what", [
    (b"", "not valid JSON"),
    (b'{"format": "mlsec-privacy-ledger", "version": 1, "key": "', "not valid JSON"),  # truncated
    (b"\xff\xfe", "not valid JSON"),
    (b"[]", "format"),
    (b'{"format": "mlsec-privacy-ledger", "version": "1", "key": "K", "budget": null, "entries": []}', "version"),
    (b'{"format": "mlsec-privacy-ledger", "version": 1, "key": "other", "budget": null, "entries": []}', "key"),
    (b'{"format": "mlsec-privacy-ledger", "version": 1, "key": "K", "budget": null, "entries": {}}', "entries"),
    (b'{"format": "mlsec-privacy-ledger", "version": 1, "key": "K", "budget": {"epsilon": -1, "delta": 0.1},'
     b' "entries": []}', "budget epsilon"),
    (b'{"format": "mlsec-privacy-ledger", "version": 1, "key": "K", "budget": null, "entries": '
     b'[{"run_id": "a", "history": [[NaN, 0.1, 1]]}]}', "NaN"),
    (b'{"format": "mlsec-privacy-ledger", "version": 1, "key": "K", "budget": null, "entries": '
     b'[{"run_id": "a", "history": [[1.0, 0.1, 1.5]]}]}', "steps"),
])
def test_corrupt_file_raises_and_is_left_alone(ledger: Ledger, content: bytes, what: str):
    """S5: a ledger that is not its JSON (or not JSON) raises for every call and is left as it is."""
    ledger.record(KEY, run_id="a", history=[(1.1, 0.01, 100)])
    content = content.replace(b'"K"', json.dumps(KEY).encode())
    ledger.path(KEY).write_bytes(content)
    for call in (lambda: ledger.entries(KEY), lambda: ledger.spent(KEY, delta=DELTA), lambda: ledger.budget(KEY),
                 lambda: ledger.record(KEY, run_id="b", history=[(1.0, 0.1, 1)]),
                 lambda: ledger.set_budget(KEY, epsilon=1, delta=DELTA)):
        with pytest.raises(LedgerError, match="corrupt") as info:
            call()
        assert str(ledger.path(KEY)) in str(info.value) and what in str(info.value)
        assert "forget" in str(info.value)
    assert ledger.path(KEY).read_bytes() == content  # never overwritten
    assert ledger.keys() == [KEY]
    assert ledger.forget(KEY) is True
    ledger.record(KEY, run_id="b", history=[(1.0, 0.1, 1)])
    assert [e.run_id for e in ledger.entries(KEY)] == ["b"]


def test_newer_version_asks_to_upgrade(ledger: Ledger):
    ledger.directory.mkdir(parents=True)
    ledger.path(KEY).write_text(json.dumps({"format": FORMAT, "version": VERSION + 1, "key": KEY}))
    with pytest.raises(LedgerError, match="Upgrade mlsec-jupyter"):
        ledger.entries(KEY)


def test_stale_temp_file_is_removed(ledger: Ledger):
    ledger.record(KEY, run_id="a", history=[(1.1, 0.01, 100)])
    stale = ledger.directory / f".{KEY}.json.1234.deadbeef.tmp"
    stale.write_text('{"half": ')
    assert ledger.entries(KEY)[0].run_id == "a"  # readers ignore it
    ledger.record(KEY, run_id="b", history=[(1.1, 0.01, 100)])
    assert not stale.exists()


_WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from mlsec_jupyter.privacy.ledger import Ledger
    ledger = Ledger({directory!r})
    prefix, n = sys.argv[1], int(sys.argv[2])
    for i in range(n if n > 0 else 10**9):
        ledger.record({key!r}, run_id=f"{{prefix}}-{{i}}", history=[(1.0 + i / 1000, 0.01, i + 1)],
                      label="x" * 2000)
        if i == 0:
            print("ready", flush=True)
""")


def _writer(ledger: Ledger) -> str:
    return _WRITER.format(root=str(ROOT), directory=str(ledger.directory), key=KEY)


def _assert_complete(entries: list[Entry]) -> None:
    for e in entries:
        i = int(e.run_id.rsplit("-", 1)[1])
        assert e.history == [(1.0 + i / 1000, 0.01, i + 1)] and e.label == "x" * 2000


def test_two_processes_lose_nothing(ledger: Ledger):
    code = _writer(ledger)
    procs = [subprocess.Popen([sys.executable, "-c", code, p, "50"], stdout=subprocess.DEVNULL)
             for p in ("kernel1", "kernel2")]
    for p in procs:
        assert p.wait(timeout=60) == 0
    entries = ledger.entries(KEY)
    assert len(entries) == 100
    assert {e.run_id for e in entries} == {f"kernel{k}-{i}" for k in (1, 2) for i in range(50)}
    _assert_complete(entries)


def test_kill_9_mid_write_leaves_a_valid_file(ledger: Ledger):
    code = _writer(ledger)
    rng = random.Random(0)
    total = 0
    for trial in range(10):
        proc = subprocess.Popen([sys.executable, "-c", code, f"t{trial}", "0"], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
        entries = Ledger(ledger.directory).entries(KEY)  # parses: never torn
        mine = sorted(int(e.run_id.split("-")[1]) for e in entries if e.run_id.startswith(f"t{trial}-"))
        assert mine == list(range(len(mine))) and mine  # a prefix of the loop: at most the last record lost
        _assert_complete(entries)
        total += len(mine)
    assert len(ledger.entries(KEY)) == total
    ledger.record(KEY, run_id="after", history=[(1.0, 0.1, 1)])  # the next writer cleans killed writers' temp files
    assert [p for p in ledger.directory.iterdir() if p.name.endswith(".tmp")] == []


def test_threads_in_one_kernel_lose_nothing(ledger: Ledger):
    import threading

    def work(prefix: str) -> None:
        for i in range(20):
            ledger.record(KEY, run_id=f"{prefix}-{i}", history=[(1.0 + i / 1000, 0.01, i + 1)], label="x" * 2000)

    threads = [threading.Thread(target=work, args=(f"thread{k}",)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = ledger.entries(KEY)
    assert len(entries) == 60
    _assert_complete(entries)


def test_refuses_a_fifo_without_hanging(ledger: Ledger):
    ledger.directory.mkdir(parents=True)
    os.mkfifo(ledger.path(KEY))
    with pytest.raises(LedgerError, match="not a regular file"):
        ledger.entries(KEY)
