"""data.provenance and %mlsec sign / verify: fingerprints, signed manifests, file hashes."""

from __future__ import annotations

import hashlib
import json
import os
import stat

import numpy as np
import pytest
from IPython.core.error import UsageError

from conftest import card_bundles, run
from guards import rng_unchanged, unchanged
from mlsec_jupyter import provenance as pv
from mlsec_jupyter.checks.budget import Budget
from mlsec_jupyter.checks.registry import run_check
from mlsec_jupyter.findings import Severity

pytest.importorskip("cryptography")


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(300, 7)), rng.integers(0, 3, size=300)


# -- fingerprint --------------------------------------------------------------------------------------

def test_fingerprint_is_stable_and_equal_for_equal_content():
    X, y = _data()
    first = pv.fingerprint(X)
    assert pv.fingerprint(X) == first and len(first) == 64
    assert pv.fingerprint(X.copy()) == first
    assert pv.fingerprint(np.asfortranarray(X)) == first  # same values, other memory layout
    assert pv.fingerprint(X[:, ::-1][:, ::-1]) == first  # a strided view
    assert pv.fingerprint_data(X, y).sha == pv.fingerprint_data(X.copy(), y.copy()).sha
    assert pv.fingerprint_data(X).sha == first


def test_fingerprint_changes_when_one_value_changes_in_place():
    X, y = _data()
    before, pair = pv.fingerprint(X), pv.fingerprint_data(X, y).sha
    X[123, 4] = np.nextafter(X[123, 4], np.inf)  # the smallest possible edit
    assert pv.fingerprint(X) != before
    X2, y2 = _data()
    y2[7] = (y2[7] + 1) % 3
    assert pv.fingerprint_data(X2, y2).sha != pair  # labels count
    assert pv.fingerprint_data(X2, None).sha != pair
    assert pv.fingerprint(X2.astype(np.float32)) != pv.fingerprint(X2)  # dtype is content
    assert pv.fingerprint(X2.reshape(7, 300)) != pv.fingerprint(X2)  # so is shape


def test_pandas_and_torch_inputs():
    import pandas as pd
    import torch

    X, y = _data()
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(7)])
    frame["cat"] = pd.Categorical(np.where(y == 0, "a", "b"))
    frame["text"] = pd.array(["x", None] * 150, dtype="string")
    frame["n"] = pd.array([1, None, 3] * 100, dtype="Int64")
    frame["obj"] = ["s", 1, 2.5] * 100
    labels = pd.Series(y, name="target")
    sha = pv.fingerprint_data(frame, labels).sha
    assert pv.fingerprint_data(frame.copy(deep=True), labels.copy()).sha == sha
    assert pv.fingerprint(frame.rename(columns={"f0": "g0"})) != pv.fingerprint(frame)  # names count
    edited = frame.copy(deep=True)
    edited.iloc[5, 0] += 1e-9
    assert pv.fingerprint(edited) != pv.fingerprint(frame)
    edited = frame.copy(deep=True)
    edited.loc[4, "text"] = "y"
    assert pv.fingerprint(edited) != pv.fingerprint(frame)

    t = torch.tensor(X, requires_grad=True)
    assert pv.fingerprint(t) == pv.fingerprint(X)  # a tensor hashes like the array it mirrors
    assert pv.fingerprint(t.T) == pv.fingerprint(np.ascontiguousarray(X.T))  # non-contiguous
    assert pv.fingerprint(torch.tensor(X, dtype=torch.bfloat16)) != pv.fingerprint(torch.tensor(X, dtype=torch.float16))


@pytest.mark.parametrize("kind", ["numpy", "read-only", "fortran", "pandas", "torch"])
def test_fingerprint_never_mutates_and_leaves_rngs_alone(kind):
    import pandas as pd
    import torch

    X, y = _data()
    if kind == "read-only":
        X.flags.writeable = False
    elif kind == "fortran":
        X = np.asfortranarray(X)
    elif kind == "pandas":
        X, y = pd.DataFrame(X, columns=list("abcdefg")), pd.Series(y, name="t")
    elif kind == "torch":
        X, y = torch.tensor(X, requires_grad=True), torch.tensor(y)
    with unchanged(X, y), rng_unchanged():
        pv.fingerprint_data(X, y)
        (finding,) = run_check("data.provenance", X=X, y=y)
    assert finding.severity is Severity.INFO and finding.title.startswith("Fingerprint ")
    assert finding.title.endswith("(X, y)") and finding.metrics["sha"][:16] in finding.title


def test_iterators_are_refused_without_being_consumed():
    gen = (r for r in [[1.0], [2.0]])
    with pytest.raises(pv.Unsupported):
        pv.fingerprint(gen)
    assert next(gen) == [1.0]
    (finding,) = run_check("data.provenance", X=(r for r in [[1.0]]))
    assert finding.severity is Severity.INFO and "not checked" in finding.summary.lower()


def test_check_reports_sha_bytes_seconds_and_stops_at_its_time_budget():
    X, y = _data()
    (f,) = run_check("data.provenance", X=X, y=y)
    assert f.metrics["sha"] == pv.fingerprint_data(X, y).sha
    assert f.metrics["n_bytes"] == X.nbytes + y.nbytes and f.metrics["seconds"] >= 0
    (late,) = run_check("data.provenance", X=X, y=y, budget=Budget(seconds=0.0))
    assert late.title == "Fingerprint not finished" and late.severity is Severity.INFO


def test_check_hashes_the_source_file(tmp_path):
    X, _ = _data()
    path = tmp_path / "data.csv"
    np.savetxt(path, X, delimiter=",")
    (f,) = run_check("data.provenance", X=X, path=str(path))
    assert f.metrics["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert f.metrics["file_bytes"] == path.stat().st_size
    (gone,) = run_check("data.provenance", X=X, path=str(tmp_path / "missing.csv"))
    assert "file_sha256" not in gone.metrics


def test_check_with_a_manifest_is_high_only_on_mismatch(tmp_path):
    X, y = _data()
    key, _ = pv.load_or_create_key(tmp_path / "k.pem")
    manifest, _ = pv.sign_data(X, y, name="X", labels="y", private_key=key)
    (ok,) = run_check("data.provenance", X=X, y=y, manifest=manifest)
    assert ok.severity is Severity.INFO and ok.metrics["manifest_status"] == "verified"
    X[0, 0] += 1
    (bad,) = run_check("data.provenance", X=X, y=y, manifest=manifest)
    assert bad.severity is Severity.HIGH and bad.metrics["manifest_status"] == "mismatch"


# -- pure signing --------------------------------------------------------------------------------------

def test_sign_and_verify_without_ipython(tmp_path):
    X, y = _data()
    key, created = pv.load_or_create_key(tmp_path / "key.pem")
    assert created
    manifest, _ = pv.sign_data(X, y, name="X", labels="y", private_key=key)
    path = pv.write_manifest(manifest, tmp_path / "m.json")
    assert pv.verify_manifest(path, X, y).ok
    assert pv.verify_manifest(path, X).status == "mismatch"  # labels left out
    other, _ = pv.load_or_create_key(tmp_path / "other.pem")
    raw = pv._raw_public(other)
    assert pv.verify_manifest(path, X, y, trusted_public_key=raw).status == "untrusted_key"
    assert pv.verify_manifest(tmp_path / "nope.json", X, y).status == "unreadable"


# -- %mlsec sign / verify in a real shell --------------------------------------------------------------

def _line(ip, line: str) -> str:
    _, _, out, err = run(ip, f"%mlsec {line}")
    assert not err, err
    return out


def test_sign_then_verify_in_the_shell(ip, in_tmp):
    run(ip, "import numpy as np\nA = np.arange(60.0).reshape(20, 3)\nb = np.arange(20) % 2")
    out = _line(ip, "sign A b")
    key = in_tmp / ".mlsec" / "signing_key.pem"
    manifest = in_tmp / ".mlsec" / "manifests" / "A.json"
    assert "created signing key" in out and "public key fingerprint" in out
    assert key.exists() and manifest.exists()
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    body = json.loads(manifest.read_text())
    payload = body["payload"]
    assert payload["name"] == "A" and payload["labels"] == "b" and payload["public_key"]
    assert [p["shape"] for p in payload["parts"]] == [[20, 3], [20]]
    assert payload["library"].startswith("mlsec-jupyter") and payload["created"]
    assert payload["sha"] == pv.fingerprint_data(ip.user_ns["A"], ip.user_ns["b"]).sha

    out = _line(ip, "verify A b .mlsec/manifests/A.json")
    assert "OK" in out and "verified" in out
    key_before = key.read_bytes()
    out = _line(ip, "sign A b")  # a second signature reuses the key, never overwrites it
    assert "created signing key" not in out and key.read_bytes() == key_before

    run(ip, "A[3, 1] = -1.0")  # data changes after signing
    out = _line(ip, "verify A b .mlsec/manifests/A.json")
    assert "FAILED" in out and "hash mismatch: data changed since signing" in out
    assert len(out.strip().splitlines()) == 1


def test_tampered_manifest_is_a_bad_signature(ip, in_tmp):
    run(ip, "import numpy as np\nX = np.ones((5, 2))")
    _line(ip, "sign X --out signed.json")
    body = json.loads((in_tmp / "signed.json").read_text())
    body["payload"]["sha"] = pv.fingerprint(np.zeros((5, 2)))
    (in_tmp / "signed.json").write_text(json.dumps(body))
    run(ip, "X = np.zeros((5, 2))")  # the data the attacker wants accepted
    out = _line(ip, "verify X signed.json")
    assert "FAILED" in out and "bad signature" in out
    (in_tmp / "broken.json").write_text("{not json")
    assert "manifest unreadable" in _line(ip, "verify X broken.json")


def test_verify_with_trusted_key_and_explicit_key_file(ip, in_tmp):
    run(ip, "import numpy as np\nX = np.ones((5, 2))")
    pv.load_or_create_key(in_tmp / "mine.pem")
    out = _line(ip, "sign X --key mine.pem --out m.json")
    assert "created signing key" not in out
    assert "verified" in _line(ip, "verify X m.json --trust mine.pem")
    pv.load_or_create_key(in_tmp / "theirs.pem")
    assert "untrusted key" in _line(ip, "verify X m.json --trust theirs.pem")


@pytest.mark.parametrize("line", ["sign nothing_here", "verify nothing_here m.json", "sign", "verify",
                                  "verify X a b c", "sign X --key missing.pem", "sign G",
                                  "verify G m.json", "sign X --bogus"])
def test_bad_arguments_are_one_line_usage_errors(ip, in_tmp, line):
    run(ip, "import numpy as np\nX = np.ones((3, 2))\nG = (i for i in range(3))")
    ip.run_line_magic("mlsec", "sign X --out m.json")
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("mlsec", line)
    assert "\n" not in str(info.value) and str(info.value).startswith("%mlsec")
    assert next(ip.user_ns["G"]) == 0  # the generator was not consumed


def test_watched_loadtxt_cell_card_shows_the_file_sha(ip, in_tmp):
    rng = np.random.default_rng(1)
    np.savetxt(in_tmp / "file.csv", rng.normal(size=(50, 4)), delimiter=",")
    digest = hashlib.sha256((in_tmp / "file.csv").read_bytes()).hexdigest()
    result, outputs, _, err = run(ip, "import numpy as np\nX = np.loadtxt('file.csv', delimiter=',')")
    assert result.success and not err
    (card,) = card_bundles(outputs)
    (finding,) = [f for f in card["findings"] if f["check"] == "data.provenance"]
    assert finding["severity"] == "info" and finding["title"].startswith("Fingerprint ")
    assert finding["metrics"]["file_sha256"] == digest
    assert finding["metrics"]["file_path"] == str(in_tmp / "file.csv")
    assert finding["metrics"]["sha"] == pv.fingerprint(ip.user_ns["X"])
    assert digest in finding["summary"]


def test_unreadable_values_are_named_not_repred():
    import pandas as pd

    class Loud:
        def __repr__(self):  # pragma: no cover - must never be called
            raise AssertionError("repr called")

    (f,) = run_check("data.provenance", X=pd.DataFrame({"a": [Loud()]}))
    assert f.severity is Severity.INFO and "Loud values" in f.summary
    assert pv.fingerprint([np.ones(3), np.zeros((2, 2))]) != pv.fingerprint([np.ones(3), np.ones((2, 2))])
