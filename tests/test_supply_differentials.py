"""Files that a real loader reads differently from a naive scan (second review of issue 6).

joblib reads raw array bytes after a ``NumpyArrayWrapper``'s BUILD, so the scanner must agree with it
byte for byte or the opcodes joblib runs go unseen; the C unpickler accepts arguments the pure-Python one
refuses. Every malicious fixture is first shown to reach ``os.system`` in the real loader — joblib's
``NumpyUnpickler`` or CPython's ``pickle.Unpickler`` with a ``find_class`` that raises at the first
global outside a few data classes, so nothing is imported or run — and then must not be called safe.
"""

from __future__ import annotations

import datetime
import importlib
import io
import pickle
import struct
import tarfile
import zipfile
import zlib
import zoneinfo

import joblib
import numpy as np
import pytest

from mlsec_jupyter.checks.supply.pickle_scan import scan_path


class _Reached(Exception):
    pass


#: data classes the confirming loaders may really import
_PERMIT = {("numpy", "dtype"), ("numpy", "ndarray"), ("joblib.numpy_pickle", "NumpyArrayWrapper"),
           ("builtins", "object"), ("sklearn.model_selection._split", "KFold")}


def _find(module: str, name: str):
    if (module, name) in _PERMIT:
        return getattr(importlib.import_module(module), name)
    raise _Reached(f"{module}.{name}")


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        return _find(module, name)


def pickle_reaches(data: bytes) -> str | None:
    try:
        _Unpickler(io.BytesIO(data)).load()
    except _Reached as e:
        return str(e)
    except Exception:  # noqa: BLE001 - the loader failed before any global
        return None
    return None


def joblib_reaches(path) -> str | None:
    from joblib.numpy_pickle import NumpyUnpickler
    from joblib.numpy_pickle_utils import _validate_fileobject_and_memmap

    class Unpickler(NumpyUnpickler):
        def find_class(self, module, name):
            return _find(module, name)

    with open(path, "rb") as fh, _validate_fileobject_and_memmap(fh, str(path), None) as (fobj, _):
        try:
            Unpickler(str(path), fobj, ensure_native_byte_order=False).load()
        except _Reached as e:
            return str(e)
        except Exception:  # noqa: BLE001
            return None
    return None


# --------------------------------------------------------------------------------------------------
# hand assembly (protocol 4)
# --------------------------------------------------------------------------------------------------
def sbu(s: str) -> bytes:
    return b"\x8c" + bytes([len(s.encode())]) + s.encode()


def glob(module: str, name: str) -> bytes:
    return sbu(module) + sbu(name) + b"\x93"


PAYLOAD = glob("os", "system") + sbu("id") + b"\x85R0"  # os.system("id"), then POP: the stack is unchanged
WRAPPER = glob("joblib.numpy_pickle", "NumpyArrayWrapper") + b")\x81"


def pad_to(b: bytes, n: int) -> bytes:
    """``b`` followed by stack-neutral opcodes (``N0``, ``K\\x000``) up to exactly ``n`` bytes."""
    rest = n - len(b)
    assert rest >= 0
    if rest % 2:
        b, rest = b + b"K\x000", rest - 3
    return b + b"N0" * (rest // 2)


def dtype(spec: str, *, elsize: bytes = b"J\xff\xff\xff\xff", flags: bytes = b"K\x00") -> bytes:
    """``numpy.dtype(spec, False, True)`` and its BUILD state, as numpy pickles a dtype."""
    return (glob("numpy", "dtype") + sbu(spec) + b"\x89\x88\x87R" + b"(K\x03" + sbu("|") + b"NNN" + elsize
            + b"J\xff\xff\xff\xff" + flags + b"tb")


def state(n: int, dt: bytes, *, align: int | None = None) -> bytes:
    s = (b"}(" + sbu("subclass") + glob("numpy", "ndarray") + sbu("shape") + b"K" + bytes([n]) + b"\x85"
         + sbu("order") + sbu("C") + sbu("dtype") + dt + sbu("allow_mmap") + b"\x89")
    if align is not None:
        s += sbu("numpy_array_alignment_bytes") + b"K" + bytes([align])
    return s + b"u"


U1 = dtype("u1")
OBJECT = dtype("O8", flags=b"K?")  # 63: what numpy writes for an object dtype


def elsize_as_bool() -> bytes:
    """numpy reads a bool elsize as 1: items are 1 byte, not the 5 of 'S5'."""
    n = 12
    return (b"\x80\x04" + WRAPPER + state(n, dtype("S5", elsize=b"\x88")) + b"b" + b"\x00" * n
            + pad_to(PAYLOAD, 4 * n) + b".")


def wrapper_inside_an_object_array() -> bytes:
    """joblib reads an object array's pickle with plain pickle.load: no array bytes follow a wrapper there."""
    inner = b"\x80\x04" + WRAPPER + state(40, U1) + b"b" + pad_to(PAYLOAD, 40) + b"."
    return b"\x80\x04" + WRAPPER + state(1, OBJECT) + b"b" + inner + b"."


def state_merged_over_two_builds() -> bytes:
    """A second BUILD adds to the first one's state: the alignment key stays, so joblib reads a pad byte."""
    payload = pad_to(PAYLOAD, 60)
    return (b"\x80\x04" + WRAPPER + b"\x94" + state(0, U1, align=16) + b"b" + b"\x00" + b"0" + b"h\x00"
            + state(0, U1) + b"b" + b"B" + (62 + len(payload)).to_bytes(4, "little") + b"\x00" * 62 + payload + b".")


def hasobject_from_the_flags() -> bytes:
    """A 'u1' dtype whose flags say 'has objects': joblib unpickles a nested pickle instead of raw bytes."""
    nested = b"\x80\x04" + glob("os", "system") + sbu("id") + b"\x85R."
    return (b"\x80\x04" + WRAPPER + state(40, dtype("u1", flags=b"K\x01")) + b"b" + pad_to(nested[:-1], 39)
            + b"." + b".")


def build_on_a_returned_wrapper() -> bytes:
    """An object array's pickle returns a wrapper; a later BUILD on it makes joblib read array bytes."""
    n = 40
    inner = b"\x80\x04" + WRAPPER + state(0, U1) + b"b."
    return (b"\x80\x04" + WRAPPER + state(1, OBJECT) + b"b" + inner + b"}" + sbu("shape") + b"K" + bytes([n])
            + b"\x85sb" + b"B" + (n - 5 + len(PAYLOAD)).to_bytes(4, "little") + b"\x00" * (n - 5) + PAYLOAD + b".")


def class_swapped_by_slot_state() -> bytes:
    """BUILD's slot state sets ``__class__``: an allowlisted object becomes a wrapper."""
    swap = b"(" + state(5, U1) + b"}" + sbu("__class__") + glob("joblib.numpy_pickle", "NumpyArrayWrapper") + b"st"
    return (b"\x80\x04" + glob("sklearn.model_selection._split", "KFold") + b")\x81" + swap + b"b" + b"B"
            + len(PAYLOAD).to_bytes(4, "little") + PAYLOAD + b".")


def object_dtype_without_the_object_flag() -> bytes:
    """joblib would read 8 file bytes per item as object pointers (a crash): never load it to confirm."""
    return b"\x80\x04" + WRAPPER + state(1, dtype("O8")) + b"b" + b"\x80\x04N.N0N0" + b"."


def wrapper_made_by_calling_its_class() -> bytes:
    """``NumpyArrayWrapper(...)`` runs ``__init__``, whose alignment default (16) makes joblib read padding."""
    args = glob("numpy", "ndarray") + b"K\x00\x85" + sbu("C") + U1 + b"\x94"
    wstate = b"}(" + sbu("shape") + b"K\x00\x85" + sbu("order") + sbu("C") + sbu("dtype") + b"h\x00" + b"u"
    return (b"\x80\x04" + glob("joblib.numpy_pickle", "NumpyArrayWrapper") + b"(" + args + b"tR" + wstate + b"b"
            + b"B" + (62 + len(PAYLOAD)).to_bytes(4, "little") + b"\x00" * 62 + PAYLOAD + b".")


def fields_on_a_fixed_size_dtype() -> bytes:
    """numpy keeps 1 byte per item for a 'u1' whose state carries fields and elsize 100."""
    plain = glob("numpy", "dtype") + sbu("u1") + b"\x89\x88\x87R"
    fields = b"}" + sbu("a") + plain + b"K\x00\x86s"
    dt = (glob("numpy", "dtype") + sbu("u1") + b"\x89\x88\x87R" + b"(K\x03" + sbu("|") + b"N" + sbu("a") + b"\x85"
          + fields + b"Kd" + b"K\x01" + b"K\x00" + b"tb")
    return b"\x80\x04" + WRAPPER + state(1, dt) + b"b" + b"\x00" + pad_to(PAYLOAD, 99) + b"."


def class_swap_behind_256_slot_keys() -> bytes:
    """The ``__class__`` key comes after more slot keys than the walker keeps."""
    filler = b"".join(sbu(f"k{i}") + b"N" for i in range(300))
    swap = (b"(" + state(5, U1) + b"}(" + filler + sbu("__class__") + glob("joblib.numpy_pickle", "NumpyArrayWrapper")
            + b"ut")
    return (b"\x80\x04" + glob("sklearn.model_selection._split", "KFold") + b")\x81" + swap + b"b" + b"B"
            + len(PAYLOAD).to_bytes(4, "little") + PAYLOAD + b".")


def frame_longer_than_the_file() -> bytes:
    """joblib's pure-Python unpickler reads a short FRAME without complaint (the C one refuses it)."""
    return b"\x95" + struct.pack("<Q", 1 << 20) + glob("os", "system") + sbu("id") + b"\x85R."


JOBLIB_CASES = {f.__name__: f for f in (elsize_as_bool, wrapper_inside_an_object_array, state_merged_over_two_builds,
                                        hasobject_from_the_flags, build_on_a_returned_wrapper,
                                        class_swapped_by_slot_state, object_dtype_without_the_object_flag,
                                        wrapper_made_by_calling_its_class, fields_on_a_fixed_size_dtype,
                                        class_swap_behind_256_slot_keys, frame_longer_than_the_file)}


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "zlib"])
@pytest.mark.parametrize("case", list(JOBLIB_CASES))
def test_joblib_reads_the_array_bytes_the_scanner_reads(tmp_path, case, compressed):
    data = JOBLIB_CASES[case]()
    path = tmp_path / "model.joblib"
    path.write_bytes(zlib.compress(data) if compressed else data)
    if case != "object_dtype_without_the_object_flag":
        assert joblib_reaches(path) == "os.system", "the fixture must reach the payload in joblib"
    r = scan_path(path)
    assert r.verdict == "unsafe", (r.format, r.globals, r.problems)


# --------------------------------------------------------------------------------------------------
# the C unpickler's readings, polyglots, identity calls
# --------------------------------------------------------------------------------------------------
C_ONLY = b"F1\x00junk\n0"  # the C unpickler reads FLOAT 1.0 (it stops at the NUL), then POP


def polyglots() -> dict[str, tuple[str, bytes]]:
    payload = b"\x80\x04" + PAYLOAD[:-1] + b"."
    name = (C_ONLY + b"B" + (0x240).to_bytes(4, "little")).decode("latin-1")  # BINBYTES over the header
    member = b"A" * (len(C_ONLY) + 5 + 0x240 - 512) + b"0" + payload
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT, encoding="latin-1") as tf:
        info = tarfile.TarInfo(name)
        info.size = len(member)
        tf.addfile(info, io.BytesIO(member))
    return {
        "GGUF": ("m.gguf", b"GGUF" + b"\x03\x00\x00\x00\x00" + b"0" + C_ONLY + payload),
        "safetensors": ("m.safetensors", (0x0855).to_bytes(8, "little") + b'{"' + b"0" + C_ONLY + payload),
        "tar": ("m.tar", buf.getvalue()),
        "NUL in INT": ("m.pkl", b"I1\x00x\n0" + payload),
        "INT with no digits": ("m.pkl", b"I\x00junk\n0" + payload),  # strtol reads nothing and takes 0
    }


@pytest.mark.parametrize("case", list(polyglots()))
def test_arguments_the_c_unpickler_accepts_cannot_hide_a_payload(tmp_path, case):
    name, data = polyglots()[case]
    assert pickle_reaches(data) == "os.system", "the fixture must reach the payload in CPython"
    (tmp_path / name).write_bytes(data)
    r = scan_path(tmp_path / name)
    assert r.verdict == "unsafe" and "os.system" in r.unsafe_globals, (r.format, r.problems)


@pytest.mark.parametrize("prefix", [C_ONLY, b"I\x00junk\n0"], ids=["NUL in FLOAT", "INT with no digits"])
@pytest.mark.parametrize("archive", ["zip", "tar"])
def test_the_only_member_of_an_archive_is_scanned_like_pandas_reads_it(tmp_path, archive, prefix):
    """``pd.read_pickle("x.zip")`` / ``("x.tar")`` unpickles the only member, whatever its name."""
    member = prefix + b"\x80\x04" + PAYLOAD[:-1] + b"."
    assert pickle_reaches(member) == "os.system"
    if archive == "zip":
        with zipfile.ZipFile(tmp_path / "x.zip", "w") as zf:
            zf.writestr("model.bin", member)
    else:
        with tarfile.open(tmp_path / "x.tar", "w") as tf:
            info = tarfile.TarInfo("model")
            info.size = len(member)
            tf.addfile(info, io.BytesIO(member))
    r = scan_path(tmp_path / f"x.{archive}")
    assert r.verdict == "unsafe", (r.format, r.problems)


def test_a_function_an_allowlisted_rebuild_calls_must_be_the_one_its_library_pickles(tmp_path):
    """``_rebuild_from_type_v2(getattr, dict, (module_function, "__globals__"), None)`` returns a module's
    globals, which the pickle then edits (third review): it must not pass as safe."""
    data = (b"\x80\x04" + glob("torch._tensor", "_rebuild_from_type_v2") + b"(" + glob("builtins", "getattr")
            + glob("builtins", "dict") + glob("torch.serialization", "_get_layout") + sbu("__globals__") + b"\x86"
            + b"Nt" + b"R" + sbu("_default_to_weights_only") + glob("collections", "Counter") + b"s" + b".")
    (tmp_path / "m.pkl").write_bytes(data)
    r = scan_path(tmp_path / "m.pkl")
    assert r.verdict == "unsafe" and any("_rebuild_from_type_v2 called with" in p for p in r.problems), r.problems


def test_an_old_joblib_header_is_any_zf_and_hex(tmp_path):
    """joblib takes any file that starts with "ZF" and 19 characters ``int(text, 16)`` reads."""
    payload = b"\x80\x04" + PAYLOAD[:-1] + b"."
    (tmp_path / "m.pkl").write_bytes(b"ZF" + format(len(payload), "x").rjust(19).encode() + zlib.compress(payload))
    r = scan_path(tmp_path / "m.pkl")
    assert r.verdict == "unsafe" and "os.system" in r.unsafe_globals, (r.format, r.problems)


def test_bytes_after_the_pickle_that_are_no_opcode_are_a_note(tmp_path):
    """Found in review: padding after STOP made a benign file unsafe ("(pickle 2): not a pickle")."""
    for tail in (b"\x00" * 16, b"trailing text", b"x"):
        (tmp_path / "m.pkl").write_bytes(pickle.dumps({"a": 1}, protocol=4) + tail)
        r = scan_path(tmp_path / "m.pkl")
        assert r.verdict == "safe" and any("not a pickle" in n for n in r.notes), (tail, r.problems)


def test_newobj_ex_of_numpy_object_cannot_hide_state_injection(tmp_path):
    """``copyreg.__newobj_ex__(numpy.object_, (KFold,), {})`` is the class itself; BUILD then patches it."""
    data = (b"\x80\x04" + glob("copyreg", "__newobj_ex__") + glob("numpy", "object_")
            + glob("sklearn.model_selection._split", "KFold") + b"\x85}\x87R" + b"N}" + sbu("split") + sbu("hijacked")
            + b"s\x86b.")
    (tmp_path / "m.pkl").write_bytes(data)
    r = scan_path(tmp_path / "m.pkl")
    assert r.verdict == "unsafe" and any("KFold itself" in p for p in r.problems), r.problems


def test_zstd_is_named_not_called_an_unparsable_pickle(tmp_path):
    (tmp_path / "m.pkl.zst").write_bytes(b"\x28\xb5\x2f\xfd" + bytes(20))
    r = scan_path(tmp_path / "m.pkl.zst")
    assert r.verdict == "unsafe" and r.format == "zstd (not inspected)", (r.format, r.problems)


# --------------------------------------------------------------------------------------------------
# benign objects the first version called unsafe or custom code
# --------------------------------------------------------------------------------------------------
def _benign_objects() -> dict:
    import pandas as pd
    import scipy.sparse
    from sklearn import ensemble, feature_selection, linear_model, naive_bayes, preprocessing
    from sklearn.datasets import make_classification

    X, y = make_classification(60, 5, random_state=0)
    return {
        "tz-aware pandas series": pd.Series(pd.date_range("2020", periods=3, tz="Europe/Paris")),
        "datetime with ZoneInfo": datetime.datetime(2020, 1, 1, tzinfo=zoneinfo.ZoneInfo("UTC")),
        "pandas NaT": pd.NaT,
        "pandas IntervalIndex": pd.interval_range(0, 3),
        "VotingClassifier": ensemble.VotingClassifier([("a", linear_model.LogisticRegression()),
                                                       ("b", naive_bayes.GaussianNB())]).fit(X, y),
        "StackingClassifier": ensemble.StackingClassifier([("a", linear_model.LogisticRegression())]).fit(X, y),
        "SplineTransformer": preprocessing.SplineTransformer().fit(X),
        "SelectKBest (f_classif)": feature_selection.SelectKBest(k=2).fit(X, y),
        "structured array with a subarray field": np.zeros(2, dtype=[("c", "<f8", (2,)), ("d", "u1")]),
        "record array": np.rec.array([(1, 2.0)], dtype=[("x", "i4"), ("y", "f8")]),
        "scipy sparse matrix": scipy.sparse.random(5, 5, density=0.3, format="csr", random_state=0),
        "object array of tz-aware datetimes": np.array([datetime.datetime(2020, 1, 1, tzinfo=zoneinfo.ZoneInfo("UTC"))],
                                                       dtype=object),
        "HistGradientBoosting with categorical features": ensemble.HistGradientBoostingClassifier(
            categorical_features=[0], max_iter=3).fit(np.c_[np.arange(60) % 3, X[:, 1:]], y),
        "numpy random generators": [np.random.default_rng(0), np.random.RandomState(0)],
    }


@pytest.mark.parametrize("writer", ["joblib", "pickle"])
def test_benign_objects_found_in_review_are_safe(tmp_path, writer):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        objects = _benign_objects()
    for kind, obj in objects.items():
        path = tmp_path / f"obj.{writer}"
        if writer == "joblib":
            joblib.dump(obj, path)
        else:
            path.write_bytes(pickle.dumps(obj, protocol=5))
        r = scan_path(path)
        assert r.verdict == "safe", (kind, r.custom_globals, r.unsafe_globals, r.problems)
