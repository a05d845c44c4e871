"""supply.pickle: the static pickle scanner (reliability §2, bypass corpus P1–P16).

Every malicious file is assembled here from raw opcodes and written to a temp folder; nothing is ever
unpickled. An audit hook (P16) checks that scanning imports nothing, runs nothing and opens no socket.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsec_jupyter.checks.registry import run_check
from mlsec_jupyter.checks.supply._pickle import Limits
from mlsec_jupyter.checks.supply.pickle_scan import scan_path, torch_advisories
from mlsec_jupyter.findings import Severity


# --------------------------------------------------------------------------------------------------
# hand assembly of pickles
# --------------------------------------------------------------------------------------------------
def su(s: str) -> bytes:
    """SHORT_BINUNICODE."""
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def glob(module: str, name: str) -> bytes:
    """GLOBAL (protocol 0 spelling, valid in every protocol)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def call(module: str, name: str, arg: str = "id") -> bytes:
    """A protocol 2 pickle calling module.name(arg): the classic payload."""
    return b"\x80\x02" + glob(module, name) + b"X" + struct.pack("<I", len(arg)) + arg.encode() + b"\x85R."


def stack_call(module: str, name: str) -> bytes:
    return b"\x80\x04" + su(module) + su(name) + b"\x93" + su("id") + b"\x85R."


EVIL = call("os", "system")


def write(tmp_path, name: str, data: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def scan_bytes(tmp_path, data: bytes, name: str = "model.bin", **kw):
    return scan_path(write(tmp_path, name, data), **kw)


def assert_unsafe(r, name: str | None = None, *, problem: str | None = None):
    assert r.verdict == "unsafe", (r.verdict, r.globals, r.problems)
    assert r.severity >= Severity.HIGH
    if name:
        assert name in r.unsafe_globals, (r.unsafe_globals, r.custom_globals, r.problems)
    if problem:
        assert any(problem in p for p in r.problems), r.problems


def torch_like_zip(members: dict[str, bytes], *, compress: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compress) as zf:
        for n, d in members.items():
            zf.writestr(n, d)
    return buf.getvalue()


BENIGN_DATA_PKL = pickle.dumps({"w": [1.0, 2.0]}, protocol=2)


# --------------------------------------------------------------------------------------------------
# P16: nothing runs while scanning
# --------------------------------------------------------------------------------------------------
_EVENTS: list[tuple[str, tuple]] = []
_WATCH = {"on": False}
# "compile" is left out: the .npy header is read with ast.literal_eval (as numpy does), which compiles to an AST
_BAD_EVENTS = ("exec", "import", "pickle.find_class", "os.system", "os.exec", "os.posix_spawn",
               "os.spawn", "subprocess.Popen", "socket.", "ctypes.", "marshal.loads", "urllib.Request", "webbrowser")


def _hook(event: str, args: tuple) -> None:
    if _WATCH["on"] and event.startswith(_BAD_EVENTS):
        _EVENTS.append((event, args[:1]))


sys.addaudithook(_hook)


class _Guard:
    def __enter__(self):
        _EVENTS.clear()
        _WATCH["on"] = True

    def __exit__(self, *exc):
        _WATCH["on"] = False
        assert not _EVENTS, f"scanning triggered {_EVENTS[:5]}"


@pytest.fixture
def no_exec(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the scanner ran a command")

    monkeypatch.setattr(os, "system", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "load", boom)
    return _Guard()


# --------------------------------------------------------------------------------------------------
# P1–P12, P15: the bypass corpus
# --------------------------------------------------------------------------------------------------
def test_p1_memo_mixing_put_and_memoize_is_resolved(tmp_path, no_exec):
    # MEMOIZE uses len(memo) as its key, whatever keys PUT used before: "system" lands at key 1
    data = (b"\x80\x04" + su("os") + b"q\x05" + su("system") + b"\x94" + b"h\x05h\x01\x93"
            + su("id") + b"\x85R.")
    with no_exec:
        r = scan_bytes(tmp_path, data)
    assert_unsafe(r, "os.system")
    assert r.severity == Severity.CRITICAL


@pytest.mark.parametrize("bad", [b"p1a\n", b"p-1\n", b"g99\n"], ids=["non-int key", "negative key", "missing key"])
def test_p1_invalid_memo_keys_are_unsafe_and_keep_what_was_seen(tmp_path, bad):
    data = b"(" + glob("subprocess", "Popen") + b"p0\n" + bad + b"."
    r = scan_bytes(tmp_path, data)
    assert_unsafe(r, "subprocess.Popen", problem="memo")


@pytest.mark.parametrize("op", [b"S'os'\n", b"T\x02\x00\x00\x00os", b"U\x02os"], ids=["STRING", "BINSTRING",
                                                                                    "SHORT_BINSTRING"])
def test_p2_stack_global_from_byte_strings_is_resolved(tmp_path, op, no_exec):
    data = b"\x80\x04" + op + b"U\x06system\x93" + su("id") + b"\x85R."
    with no_exec:
        r = scan_bytes(tmp_path, data)
    assert_unsafe(r, "os.system")


def test_p2_stack_global_with_names_built_at_run_time_is_unsafe(tmp_path):
    # module name = builtins.str("os"): allowlisted callee, but the STACK_GLOBAL operand is not a literal
    data = b"\x80\x04" + su("builtins") + su("str") + b"\x93" + su("os") + b"\x85R" + su("system") + b"\x93." 
    r = scan_bytes(tmp_path, data)
    assert_unsafe(r, problem="built at run time")
    assert r.severity == Severity.CRITICAL


def test_p3_inst_is_a_global(tmp_path, no_exec):
    with no_exec:
        r = scan_bytes(tmp_path, b"(S'id'\nios\nsystem\n.")
    assert_unsafe(r, "os.system")


def test_p3_obj_then_pop_cannot_hide_the_call(tmp_path):
    data = b"\x80\x02(" + glob("os", "system") + b"S'id'\no0N."
    assert_unsafe(scan_bytes(tmp_path, data), "os.system")


@pytest.mark.parametrize("target", [("numpy", "dtype"), ("numpy", "prod")])
def test_p4_build_on_a_global_is_state_injection(tmp_path, target):
    # BUILD with the global itself as target: sets __dict__ entries on a module-level object
    data = (b"\x80\x02" + glob(*target) + b"}" + b"X\x0c\x00\x00\x00__builtins__" + glob("collections", "OrderedDict")
            + b"sb.")
    r = scan_bytes(tmp_path, data)
    assert_unsafe(r, problem=f"BUILD sets attributes on the global {'.'.join(target)}")
    assert r.severity == Severity.CRITICAL


@pytest.mark.parametrize("module,name,expected", [
    ("pathlib", "os.system", "pathlib.os.system"),
    ("os.path", "join", "os.path.join"),
    ("posixpath", "expanduser", "posixpath.expanduser"),
    ("numpy.testing._private.utils", "runstring", "numpy.testing._private.utils.runstring"),
    ("mymodels", "helpers.os", "mymodels.helpers.os"),
])
def test_p5_dotted_names_and_submodules_of_blocked_modules(tmp_path, module, name, expected):
    r = scan_bytes(tmp_path, stack_call(module, name))
    assert_unsafe(r, expected)


def test_p5_attribute_chain_through_a_function_is_unsafe_even_in_user_code(tmp_path):
    r = scan_bytes(tmp_path, stack_call("mymodels", "make_model.__wrapped__"))
    assert_unsafe(r, "mymodels.make_model.__wrapped__")


@pytest.mark.parametrize("module,name", [
    ("pickle", "loads"), ("_pickle", "loads"), ("torch.serialization", "load"), ("torch", "load"),
    ("torch.storage", "_load_from_bytes"), ("torch.utils._config_module", "ConfigModule.load_config"),
    ("joblib", "load"), ("numpy", "load"), ("dill", "loads"), ("pandas", "read_pickle"),
])
def test_p6_nested_loaders(tmp_path, module, name):
    assert_unsafe(scan_bytes(tmp_path, stack_call(module, name)), f"{module}.{name}")


@pytest.mark.parametrize("module,name", [
    ("importlib", "import_module"), ("marshal", "loads"), ("types", "CodeType"), ("types", "FunctionType"),
    ("cloudpickle.cloudpickle", "subimport"), ("builtins", "__import__"), ("__builtin__", "eval"),
    ("builtins", "exec"), ("runpy", "run_path"), ("torch.utils.collect_env", "run"),
])
def test_p7_import_and_code_object_primitives(tmp_path, module, name):
    r = scan_bytes(tmp_path, stack_call(module, name))
    shown = "builtins.eval" if module == "__builtin__" else f"{module}.{name}"
    assert r.verdict == "unsafe" and r.severity == Severity.CRITICAL
    assert any(g == shown or g.endswith(name) for g in r.unsafe_globals), r.unsafe_globals


def test_getattr_is_judged_by_what_it_reaches(tmp_path):
    """``getattr(zoneinfo.ZoneInfo, "_unpickle")`` is how tz-aware datetimes pickle (a classmethod); any other
    getattr call is critical (found in review: every tz-aware pandas column was called unsafe)."""
    import datetime
    import zoneinfo

    r = scan_bytes(tmp_path, pickle.dumps(datetime.datetime(2020, 1, 1, tzinfo=zoneinfo.ZoneInfo("UTC")), 4))
    assert r.verdict == "safe" and "zoneinfo.ZoneInfo._unpickle" in r.globals, (r.globals, r.problems)
    evil = b"\x80\x04" + su("builtins") + su("getattr") + b"\x93" + su("os") + su("system") + b"\x93" + su("system") \
        + b"\x86R."  # getattr(os.system, "system"): never allowlisted, whatever it names
    assert_unsafe(scan_bytes(tmp_path, evil), problem="builtins.getattr called on")
    r = scan_bytes(tmp_path, stack_call("builtins", "getattr"))  # getattr("id")
    assert r.verdict == "unsafe" and r.severity == Severity.CRITICAL


def test_p8_corrupt_member_before_data_pkl_does_not_stop_the_scan(tmp_path):
    raw = torch_like_zip({"archive/aaa.pkl": b"\x80\x02" + b"x" * 4000, "archive/data.pkl": EVIL},
                         compress=zipfile.ZIP_DEFLATED)
    first = raw.index(b"PK\x03\x04")
    start = first + 30 + len("archive/aaa.pkl")
    raw = raw[:start + 2] + b"\xff" * 10 + raw[start + 12:]  # garbage in the first member's deflate data
    r = scan_bytes(tmp_path, raw, "model.pt")
    assert_unsafe(r, "os.system", problem="archive/aaa.pkl")
    assert "archive/data.pkl" in r.members


def _set_crc(raw: bytes, name: str, crc: int) -> bytes:
    out = bytearray(raw)
    lh = raw.index(b"PK\x03\x04")
    out[lh + 14:lh + 18] = struct.pack("<I", crc)
    ch = raw.index(b"PK\x01\x02")
    out[ch + 16:ch + 20] = struct.pack("<I", crc)
    return bytes(out)


def test_p8_bad_crc_is_reported_and_the_bytes_still_scanned(tmp_path):
    raw = _set_crc(torch_like_zip({"archive/data.pkl": EVIL}), "archive/data.pkl", 0x12345678)
    assert_unsafe(scan_bytes(tmp_path, raw, "model.pt"), "os.system", problem="bad CRC")
    benign = _set_crc(torch_like_zip({"archive/data.pkl": BENIGN_DATA_PKL}), "archive/data.pkl", 1)
    assert_unsafe(scan_bytes(tmp_path, benign, "benign.pt"), problem="bad CRC")


def test_p8_broken_central_directory_is_unsafe_and_local_headers_are_scanned(tmp_path):
    raw = torch_like_zip({"archive/data.pkl": EVIL})
    cd = raw.index(b"PK\x01\x02")
    r = scan_bytes(tmp_path, raw[:cd] + b"PK\x01\x02" + b"\x00" * 10, "model.pt")
    assert_unsafe(r, "os.system", problem="central directory")


def test_p8_hidden_extra_pickles_are_scanned(tmp_path):
    raw = torch_like_zip({"archive/data.pkl": BENIGN_DATA_PKL, "archive/version": b"3\n",
                          "archive/extra.pkl": call("subprocess", "check_output"),
                          "archive/.data/hidden": call("os", "system")})
    r = scan_bytes(tmp_path, raw, "model.pt")
    assert r.format == "torch zip checkpoint"
    assert_unsafe(r, "subprocess.check_output")
    assert "os.system" in r.unsafe_globals
    assert {"archive/extra.pkl", "archive/.data/hidden"} <= set(r.members)


def test_p8_encrypted_member_cannot_be_inspected(tmp_path):
    raw = bytearray(torch_like_zip({"archive/data.pkl": BENIGN_DATA_PKL}))
    lh, ch = raw.index(b"PK\x03\x04"), raw.index(b"PK\x01\x02")
    raw[lh + 6] |= 1
    raw[ch + 8] |= 1
    assert_unsafe(scan_bytes(tmp_path, bytes(raw), "model.pt"), problem="encrypted")


def test_p9_bin_that_is_not_torch_is_sniffed_by_content(tmp_path):
    assert_unsafe(scan_bytes(tmp_path, EVIL, "pytorch_model.bin"), "os.system")
    assert_unsafe(scan_bytes(tmp_path, EVIL, "weights.safetensors"), "os.system")


def test_p9_legacy_magic_number_made_by_reduce(tmp_path):
    # torch's legacy loader unpickles the "magic number" pickle first: it can be a call
    data = call("os", "system") + pickle.dumps(1001, protocol=2)
    assert_unsafe(scan_bytes(tmp_path, data, "model.pt"), "os.system")


def test_p9_zip_pickle_polyglot_scans_both_views(tmp_path):
    zpart = torch_like_zip({"archive/data.pkl": call("subprocess", "Popen")})
    r = scan_bytes(tmp_path, EVIL + zpart, "model.pt")
    assert_unsafe(r, "os.system", problem="polyglot")
    assert "subprocess.Popen" in r.unsafe_globals


def test_p9_object_npy_runs_its_pickle(tmp_path):
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    data = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + EVIL
    r = scan_bytes(tmp_path, data, "array.npy")
    assert r.format == "numpy .npy (object array)"
    assert_unsafe(r, "os.system")


def test_p9_old_joblib_zfile_is_decompressed_and_scanned(tmp_path):
    import zlib

    data = b"ZF" + b"0x" + format(len(EVIL), "x").ljust(17).encode() + zlib.compress(EVIL)
    r = scan_bytes(tmp_path, data, "old.pkl")
    assert r.format == "joblib (zlib)"
    assert_unsafe(r, "os.system")


def test_p9_7z_wrapping_cannot_be_inspected(tmp_path):
    assert_unsafe(scan_bytes(tmp_path, b"7z\xbc\xaf\x27\x1c" + b"\x00" * 64, "model.7z"), problem="7z")


def test_p10_broken_pickle_that_ran_before_failing(tmp_path):
    data = b"\x80\x02" + glob("os", "system") + b"S'id'\n\x85R" + b"\xff\xfe"
    r = scan_bytes(tmp_path, data)
    assert_unsafe(r, "os.system", problem="unknown opcode 0xff")


def test_p11_opcode_crossing_a_frame_boundary(tmp_path):
    body = su("builtins") + su("set") + b"\x93)R."
    data = b"\x80\x04\x95" + struct.pack("<Q", 5) + body  # the frame ends in the middle of an opcode
    r = scan_bytes(tmp_path, data)
    assert_unsafe(r, problem="FRAME")
    late = b"\x80\x04\x95" + struct.pack("<Q", 1 << 20) + body  # frame longer than the file
    assert_unsafe(scan_bytes(tmp_path, late, "late.bin"), problem="FRAME")


def test_p12_huge_declared_length_is_refused_before_reading(tmp_path):
    data = b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"abc."
    t = time.perf_counter()
    r = scan_bytes(tmp_path, data)
    assert time.perf_counter() - t < 1.0
    assert_unsafe(r, problem="declares 1,099,511,627,776 bytes")


@pytest.mark.parametrize("data,limits,problem", [
    (b"\x80\x02]" + b"(" * 600 + b".", Limits(max_stack=20), "stack depth"),  # caps are checked every 256 opcodes
    (b"\x80\x02N" + b"2" * 600 + b".", Limits(max_opcodes=50), "opcode limit"),
    (b"\x80\x02N" + b"".join(b"r" + struct.pack("<I", i) for i in range(30)) + b".", Limits(max_memo=10), "memo limit"),
], ids=["deep nesting", "opcodes", "memo"])
def test_p12_limits_stop_the_scan_and_make_it_unsafe(tmp_path, data, limits, problem):
    assert_unsafe(scan_bytes(tmp_path, data, limits=limits), problem=problem)


@pytest.mark.parametrize("module,name", [("fickling", "load"), ("picklescan.scanner", "scan_file_path"),
                                         ("modelscan.modelscan", "ModelScan")])
def test_p15_pickles_that_import_scanners(tmp_path, module, name):
    assert_unsafe(scan_bytes(tmp_path, stack_call(module, name)), f"{module}.{name}")


def test_p16_scanning_the_whole_corpus_runs_nothing(tmp_path, no_exec):
    corpus = [EVIL, call("subprocess", "Popen"), b"(S'id'\nios\nsystem\n.", stack_call("builtins", "eval"),
              torch_like_zip({"archive/data.pkl": EVIL}), EVIL + torch_like_zip({"a/data.pkl": EVIL}),
              b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40),
              b"\x93NUMPY\x01\x00\x1f\x00{'descr': '|O', 'shape': (1,)}\n" + EVIL]
    paths = [write(tmp_path, f"f{i}.bin", d) for i, d in enumerate(corpus)]
    for p in paths:  # warm up: the scanner's own lazy imports happen here
        scan_path(p)
    with no_exec:
        results = [scan_path(p) for p in paths]
    assert all(r.verdict == "unsafe" for r in results)


def test_p16_the_guard_sees_a_real_unpickle():
    import collections

    blob = pickle.dumps(collections.OrderedDict(), protocol=2)
    with pytest.raises(AssertionError, match="pickle.find_class"), _Guard():
        pickle.loads(blob)


# --------------------------------------------------------------------------------------------------
# custom code, benign files
# --------------------------------------------------------------------------------------------------
def test_user_classes_are_custom_code_and_named(tmp_path):
    data = b"\x80\x04" + su("mymodels") + su("Net") + b"\x93)\x81}b."
    r = scan_bytes(tmp_path, data)
    assert (r.verdict, r.severity, r.custom_globals) == ("custom code", Severity.MEDIUM, ["mymodels.Net"])
    (f,) = run_check("supply.pickle", path=write(tmp_path, "net.pt", data), loader="torch.load")
    assert f.title == "Model file needs custom code: mymodels.Net"
    assert f.metrics["custom_globals"] == ["mymodels.Net"] and f.severity == Severity.MEDIUM


def corpus(folder) -> dict[str, tuple[str, str]]:
    """One representative file per file-borne row of the bypass catalogue (P13 and P14 are about loader
    functions and torch versions, not files), written to ``folder``: id → (path, what it plants). Used by
    bench/supply.py to run every scanner on the same files."""
    from pathlib import Path

    folder = Path(folder)
    frame = su("builtins") + su("set") + b"\x93)R."
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    bad_zip = torch_like_zip({"archive/aaa.pkl": b"\x80\x02" + b"x" * 4000, "archive/data.pkl": EVIL},
                             compress=zipfile.ZIP_DEFLATED)
    start = bad_zip.index(b"PK\x03\x04") + 30 + len("archive/aaa.pkl")
    cases = {
        "P1": ("memo: PUT mixed with MEMOIZE", "model.pkl", b"\x80\x04" + su("os") + b"q\x05" + su("system") + b"\x94"
               + b"h\x05h\x01\x93" + su("id") + b"\x85R."),
        "P2": ("STACK_GLOBAL from BINSTRING", "model.pkl", b"\x80\x04T\x02\x00\x00\x00osU\x06system\x93" + su("id")
               + b"\x85R."),
        "P3": ("INST os.system", "model.pkl", b"(S'id'\nios\nsystem\n."),
        "P4": ("BUILD on the global numpy.prod", "model.pkl", b"\x80\x02" + glob("numpy", "prod") + b"}"
               + b"X\x0c\x00\x00\x00__builtins__" + glob("collections", "OrderedDict") + b"sb."),
        "P5": ("dotted name pathlib → os.system", "model.pkl", stack_call("pathlib", "os.system")),
        "P6": ("nested loader pickle.loads", "model.pkl", call("pickle", "loads")),
        "P7": ("importlib.import_module", "model.pkl", call("importlib", "import_module")),
        "P8": ("torch zip: corrupt member before data.pkl", "model.pt",
               bad_zip[:start + 2] + b"\xff" * 10 + bad_zip[start + 12:]),
        "P8b": ("torch zip: hidden extra pickle", "model.pt",
                torch_like_zip({"archive/data.pkl": BENIGN_DATA_PKL, "archive/extra.pkl": EVIL})),
        "P9": ("object .npy running a pickle", "array.npy",
               b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + EVIL),
        "P9b": ("zip + pickle polyglot", "model.pt", EVIL + torch_like_zip({"archive/data.pkl": BENIGN_DATA_PKL})),
        "P10": ("broken after REDUCE", "model.pkl", b"\x80\x02" + glob("os", "system") + b"S'id'\n\x85R\xff\xfe"),
        "P11": ("opcode crossing a FRAME end", "model.pkl", b"\x80\x04\x95" + struct.pack("<Q", 5) + frame),
        "P12": ("BINBYTES8 declaring 2^40 bytes", "model.pkl", call("os", "system")[:-1]
                + b"\x8e" + struct.pack("<Q", 1 << 40) + b"abc."),
        "P15": ("imports a scanner (picklescan)", "model.pkl", stack_call("picklescan.scanner", "scan_file_path")),
    }
    out = {}
    for case_id, (what, name, data) in cases.items():
        path = folder / f"{case_id}-{name}"
        path.write_bytes(data)
        out[case_id] = (str(path), what)
    return out


def benign_corpus(folder) -> dict[str, tuple[str, str]]:
    """Benign files saved by the current torch, scikit-learn, joblib and numpy: kind → (path, kind)."""
    return {kind: (path, kind) for kind, path in write_benign_files(folder).items()}


@pytest.fixture(scope="module")
def benign_files(tmp_path_factory):
    return write_benign_files(tmp_path_factory.mktemp("benign"))


def write_benign_files(d) -> dict[str, str]:
    """Write the benign files to folder ``d``; returns kind → path."""
    from pathlib import Path

    import joblib
    import torch
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    d = Path(d)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), np.arange(60) % 2
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                  torch.nn.Flatten(), torch.nn.Linear(4, 2), torch.nn.Dropout())
    files = {}
    torch.save(net.state_dict(), files.setdefault("torch state_dict", str(d / "sd.pt")))
    torch.save(torch.randn(3, 3), files.setdefault("torch tensor", str(d / "t.pt")))
    torch.save(net, files.setdefault("torch full Sequential", str(d / "full.pt")))
    torch.save(net.state_dict(), files.setdefault("torch legacy", str(d / "legacy.pt")),
               _use_new_zipfile_serialization=False)
    pipe = Pipeline([("s", StandardScaler()), ("l", LogisticRegression())]).fit(X, y)
    joblib.dump(pipe, files.setdefault("joblib pipeline", str(d / "p.joblib")))
    joblib.dump(pipe, files.setdefault("joblib pipeline compress=3", str(d / "pc.joblib")), compress=3)
    joblib.dump({"x": np.array([1, "a"], dtype=object)}, files.setdefault("joblib object array", str(d / "o.joblib")))
    rf = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    for proto in (2, 3, 4, 5):
        with open(files.setdefault(f"random forest protocol {proto}", str(d / f"rf{proto}.pkl")), "wb") as fh:
            pickle.dump(rf, fh, protocol=proto)
    np.save(files.setdefault("npy float", str(d / "f.npy")), np.zeros(5))
    np.save(files.setdefault("npy object ints/strings", str(d / "o.npy")), np.array([1, "a", 3], dtype=object),
            allow_pickle=True)
    np.savez(files.setdefault("npz", str(d / "z.npz")), a=np.zeros(3), b=np.arange(4))
    return files


@pytest.mark.parametrize("kind", [
    "torch state_dict", "torch tensor", "torch full Sequential", "torch legacy", "joblib pipeline",
    "joblib pipeline compress=3", "joblib object array", "random forest protocol 2", "random forest protocol 3",
    "random forest protocol 4", "random forest protocol 5", "npy float", "npy object ints/strings", "npz"])
def test_benign_files_from_current_libraries_are_safe(benign_files, kind):
    r = scan_path(benign_files[kind])
    assert r.verdict == "safe", (r.format, r.unsafe_globals, r.custom_globals, r.problems)
    assert r.severity == Severity.INFO


def test_formats_are_named(benign_files):
    fmt = {k: scan_path(p).format for k, p in benign_files.items()}
    assert fmt["torch state_dict"] == "torch zip checkpoint"
    assert fmt["torch legacy"] == "torch legacy"
    assert fmt["joblib pipeline compress=3"] == "joblib (zlib)"
    assert fmt["random forest protocol 4"] == "pickle protocol 4"
    assert fmt["npy float"] == "numpy .npy" and fmt["npz"] == "numpy .npz"
    assert fmt["npy object ints/strings"] == "numpy .npy (object array)"


def test_safe_finding_has_the_stable_metrics_and_references(benign_files):
    (f,) = run_check("supply.pickle", path=benign_files["torch state_dict"], loader="torch.load")
    assert f.severity == Severity.INFO and f.title.startswith("Model file is safe to load: only tensors")
    assert {"globals", "unsafe_globals", "format", "custom_globals", "problems", "verdict", "bytes_scanned",
            "seconds"} <= set(f.metrics)
    assert "torch._utils._rebuild_tensor_v2" in f.metrics["globals"] and f.metrics["unsafe_globals"] == []
    assert any("AML.T0011.000" in r for r in f.references) and any("ML06" in r for r in f.references)


def test_unsafe_finding_title_names_the_call(tmp_path):
    (f,) = run_check("supply.pickle", path=write(tmp_path, "m.pkl", EVIL), loader="pickle.load")
    assert f.title == "Unsafe model file: it calls os.system when loaded"
    assert f.severity == Severity.CRITICAL and f.metrics["unsafe_globals"] == ["os.system"]


def test_missing_file_is_a_low_finding(tmp_path):
    (f,) = run_check("supply.pickle", path=str(tmp_path / "nope.pt"))
    assert f.severity == Severity.LOW and "could not be scanned" in f.title


def test_p14_torch_version_gate(tmp_path, benign_files):
    assert torch_advisories("2.5.1+cpu") == ["CVE-2025-32434", "CVE-2026-24747"]
    assert torch_advisories("2.9.0") == ["CVE-2026-24747"]
    assert torch_advisories("2.13.0+cpu") == [] and torch_advisories(None) == []
    (f,) = run_check("supply.pickle", path=benign_files["torch tensor"], loader="torch.load", torch_version="2.5.1")
    assert f.metrics["torch_advisories"] == ["CVE-2025-32434", "CVE-2026-24747"] and f.severity == Severity.LOW
    data = b"\x80\x04" + su("mymodels") + su("Net") + b"\x93)\x81."
    (f,) = run_check("supply.pickle", path=write(tmp_path, "n.pt", data), loader="torch.load", torch_version="2.9")
    assert f.severity == Severity.HIGH
    (f,) = run_check("supply.pickle", path=benign_files["torch tensor"], loader="pickle.load", torch_version="2.5")
    assert "torch_advisories" not in f.metrics


# --------------------------------------------------------------------------------------------------
# streaming, properties
# --------------------------------------------------------------------------------------------------
def test_a_1gb_pickle_is_streamed_not_loaded(tmp_path):
    p = tmp_path / "big.pkl"
    n = 1 << 30
    with open(p, "wb") as fh:  # a sparse file: BINBYTES8 of 1 GiB, then the STOP
        fh.write(b"\x80\x04\x8e" + struct.pack("<Q", n))
        fh.seek(n, 1)
        fh.write(b".")
    tracemalloc.start()
    t = time.perf_counter()
    r = scan_path(str(p))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert r.verdict == "safe" and r.format == "pickle protocol 4"
    assert peak < 16 * 2**20 and time.perf_counter() - t < 2.0


def test_truncated_benign_pickle_is_unsafe(tmp_path, benign_files):
    data = Path(benign_files["random forest protocol 4"]).read_bytes()
    for cut in (len(data) // 3, len(data) - 1):
        assert_unsafe(scan_bytes(tmp_path, data[:cut], f"cut{cut}.pkl"), problem="")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=4096), prefix=st.sampled_from([b"", b"\x80\x04", b"\x80\x02(", b"PK\x03\x04"]))
def test_random_bytes_never_raise_and_are_fast(tmp_path, blob, prefix):
    data = prefix + blob
    t = time.perf_counter()
    r = scan_bytes(tmp_path, data, "fuzz.bin")
    assert time.perf_counter() - t < 0.2 + len(data) / 2**20
    assert r.verdict in ("safe", "custom code", "unsafe")
    if prefix.startswith(b"\x80") and not r.format.startswith("pickle protocol"):
        assert r.verdict == "unsafe"


def test_the_benchmark_corpus_is_all_unsafe(tmp_path):
    """bench/supply.py runs every scanner on ``corpus()``: each of its files must be unsafe for ours."""
    cases = corpus(tmp_path)
    assert {c.rstrip("b") for c in cases} == {f"P{i}" for i in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15)}
    for case_id, (path, what) in cases.items():
        assert scan_path(path).verdict == "unsafe", (case_id, what)


def test_a_non_ascii_dtype_digit_is_unreadable_not_a_crash(tmp_path):
    """A joblib dtype with a non-ASCII digit once escaped the walker as ValueError (found in review)."""
    spec = "u\u00b2"
    data = (b"\x80\x02cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81}(X\x05\x00\x00\x00shapeK\x01\x85"
            b"X\x05\x00\x00\x00dtypecnumpy\ndtype\nX" + struct.pack("<I", len(spec.encode())) + spec.encode()
            + b"\x89\x88\x87Rub" + b"\x00" + EVIL)
    r = scan_bytes(tmp_path, data, "m.joblib")
    assert r.verdict == "unsafe" and any("unreadable dtype" in p for p in r.problems), r.problems


def test_a_scanner_error_fails_closed(tmp_path, monkeypatch):
    """Fault injection: any exception inside the walker makes the file unsafe, never safe."""
    from mlsec_jupyter.checks.supply import _pickle

    def broken(self):
        raise ValueError("injected")

    monkeypatch.setitem(_pickle.Walker._ops, ord("b"), broken)  # BUILD
    with open(tmp_path / "ok.pkl", "wb") as fh:
        pickle.dump(np.arange(3), fh, protocol=2)  # numpy arrays are rebuilt with BUILD
    r = scan_path(tmp_path / "ok.pkl")
    assert r.verdict == "unsafe" and any("could not finish (ValueError)" in p for p in r.problems), r.problems


@pytest.mark.parametrize("prefix", [b"C\x000", b"\x880", b"\x8c\x000"], ids=["SHORT_BINBYTES", "NEWTRUE", "SHORT_BINUNICODE"])
def test_a_pickle_without_proto_may_start_with_any_opcode(tmp_path, prefix):
    """CPython runs these (found in review); they used to sniff as 'not a pickle'."""
    assert_unsafe(scan_bytes(tmp_path, prefix + b"cos\nsystem\n(S'echo'\ntR."), "os.system")


def test_a_frame_first_pickle_is_walked(tmp_path):
    body = b"cos\nsystem\n(S'echo'\ntR."
    assert_unsafe(scan_bytes(tmp_path, b"\x95" + struct.pack("<Q", len(body)) + body), "os.system")


# --------------------------------------------------------------------------------------------------
# second review of #6: parser differentials, containers, joblib arrays, identity calls
# --------------------------------------------------------------------------------------------------
class _Reached(Exception):
    pass


class _FindClassRaises(pickle.Unpickler):
    """CPython's own unpickler, stopped at the first global it would import (nothing imported or run)."""

    def find_class(self, module, name):
        raise _Reached(f"{module}.{name}")

    def persistent_load(self, pid):
        raise _Reached(f"persistent id {pid!r}")


def cpython_reaches(data: bytes) -> str | None:
    """The global CPython's unpickler would import first from ``data``, or ``None`` if it never gets there."""
    try:
        _FindClassRaises(io.BytesIO(data)).load()
    except _Reached as e:
        return str(e)
    except Exception:  # noqa: BLE001 - any other failure: the unpickler stopped before a global
        return None
    return None


PAYLOAD0 = b"cos\nsystem\n(S'echo pwned'\ntR."


@pytest.mark.parametrize("prefix", [b"I0b1\n0", b"L0b1L\n0", b"I0x1f\n0", b"I010\n0", b"I1_0\n0", b"I 7 \n0"],
                         ids=["INT 0b", "LONG 0b", "INT 0x", "INT octal", "INT underscore", "INT spaces"])
def test_int_and_long_are_read_as_cpython_reads_them(tmp_path, prefix, no_exec):
    data = prefix + PAYLOAD0
    assert cpython_reaches(data) == "os.system", "the fixture must reach the global in CPython"
    with no_exec:
        assert_unsafe(scan_bytes(tmp_path, data, "m.pkl"), "os.system")


def test_bytes_that_start_like_a_pickle_but_do_not_parse_are_not_safe(tmp_path):
    """An argument the walker cannot read fails closed in a file a loader unpickles: CPython may read it."""
    assert_unsafe(scan_bytes(tmp_path, b"I12z\n" + PAYLOAD0, "m.pkl"), problem="bad INT")
    assert_unsafe(scan_bytes(tmp_path, b"(I12z\n" + PAYLOAD0, "m.pkl"), problem="bad INT")
    for text in (b"Name,Age\nAda,36\n", b"0.5,1.5\n", b"(hello)\n"):  # where CPython's unpickler stops too
        r = scan_bytes(tmp_path, text, "notes.txt")
        assert r.verdict == "safe" and r.format == "not a pickle", (text, r.format, r.problems)


def test_a_tar_member_name_that_is_not_a_pickle_is_no_polyglot(tmp_path):
    """Found in review: a tar of 'pd_df.pkl' was called a tar+pickle polyglot ('p' reads as PUT)."""
    import tarfile

    (tmp_path / "pd_df.pkl").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    with tarfile.open(tmp_path / "models.tar", "w") as tf:
        tf.add(tmp_path / "pd_df.pkl", arcname="pd_df.pkl")
    r = scan_path(tmp_path / "models.tar")
    assert r.verdict == "safe", (r.format, r.problems)


@pytest.mark.parametrize("head,name", [
    (b"\x89HDF\r\n\x1a\n" + bytes(64), "HDF5"),
    (struct.pack("<Q", 40) + b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}' + bytes(8), "safetensors"),
    (b"\x89PNG\r\n\x1a\n" + bytes(32), "PNG image"),
], ids=["hdf5", "safetensors", "png"])
def test_known_non_pickle_formats_are_safe_and_named(tmp_path, head, name):
    r = scan_bytes(tmp_path, head, "weights.bin")
    assert r.verdict == "safe" and r.format == f"{name} (not a pickle)", (r.format, r.problems)


def test_a_tar_whose_header_is_a_pickle_is_a_polyglot(tmp_path, no_exec):
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        info = tarfile.TarInfo(name=PAYLOAD0.decode("latin-1"))
        tf.addfile(info)
    data = buf.getvalue()
    assert cpython_reaches(data) == "os.system"
    with no_exec:
        r = scan_bytes(tmp_path, data, "m.pt")
    assert_unsafe(r, "os.system", problem="polyglot")


def _npy(descr_src: str, body: bytes) -> bytes:
    header = ("{'descr': %s, 'fortran_order': False, 'shape': (1,), }" % descr_src).encode("latin-1")
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body


@pytest.mark.parametrize("descr", ["'object'", "'i4,O'", "'(2,)O'", "('O', (2,))", "[('a', '(2,)O')]", "'O8'",
                                   "[('a', '<f8'), ('b', [('c', 'O')])]"])
def test_every_npy_descr_numpy_may_read_as_objects_is_scanned(tmp_path, descr):
    """numpy accepts these spellings of object dtypes (found in review: only '|O' was recognised)."""
    import ast

    from numpy.lib import format as npformat

    try:
        assert npformat.descr_to_dtype(ast.literal_eval(descr)).hasobject
    except (TypeError, ValueError):
        pass  # numpy refuses the spelling: the file cannot load, flagging it costs nothing
    assert_unsafe(scan_bytes(tmp_path, _npy(descr, EVIL), "a.npy"), "os.system")


def test_plain_npy_dtypes_stay_safe(tmp_path):
    arrays = {"structured": np.zeros(2, dtype=[("a", "<f4"), ("b", "<i8", (2,)), (("title", "c"), "S3")]),
              "nested": np.zeros(2, dtype=[("a", [("x", "u1"), ("y", "<M8[ns]")])]),
              "unicode": np.array(["ab", "c"]), "timedelta": np.array([1, 2], dtype="m8[s]"),
              "complex": np.ones(2, dtype=np.complex128), "bool": np.ones(2, dtype=bool)}
    for kind, a in arrays.items():
        np.save(tmp_path / f"{kind}.npy", a)
        r = scan_path(tmp_path / f"{kind}.npy")
        assert r.verdict == "safe" and r.format == "numpy .npy", (kind, r.format, r.problems)


JOB = "joblib.numpy_pickle"


def _u2(s: str) -> bytes:
    return b"X" + struct.pack("<I", len(s.encode())) + s.encode()


def _dtype(spec: str, elsize: int = -1) -> bytes:
    state = b"(J\x03\x00\x00\x00" + _u2("|") + b"NNN" + b"J" + struct.pack("<i", elsize) + b"J\x01\x00\x00\x00J\x00\x00\x00\x00t"
    return glob("numpy", "dtype") + _u2(spec) + b"\x89\x88\x87R" + state + b"b"


def _wrapper_state(shape: bytes, dtype: bytes, extra: bytes = b"") -> bytes:
    return (b"}(" + _u2("subclass") + glob("numpy", "ndarray") + _u2("shape") + shape + _u2("order") + _u2("C")
            + _u2("dtype") + dtype + _u2("allow_mmap") + b"\x89" + _u2("numpy_array_alignment_bytes") + b"N"
            + extra + b"u")


def test_joblib_array_size_ignores_a_state_elsize_numpy_ignores(tmp_path, no_exec):
    """A 'u1' dtype whose pickled state claims 1000 bytes: numpy keeps 1 byte, so joblib reads 5 bytes of
    array data and then the payload (the walker used to skip 5000 bytes over it)."""
    head = b"\x80\x02" + glob(JOB, "NumpyArrayWrapper") + b")\x81" + _wrapper_state(b"K\x05\x85", _dtype("u1", 1000)) + b"b"
    body = b"\x00" * 5 + b"0" + PAYLOAD0[:-1] + b"0"
    data = head + body + b"\x00" * (5000 - len(body)) + b"."
    with no_exec:
        assert_unsafe(scan_bytes(tmp_path, data, "m.joblib"), "os.system")


def test_a_joblib_wrapper_built_through_copyreg_is_followed(tmp_path, no_exec):
    """joblib checks the type of what BUILD builds, not how it was made: copyreg._reconstructor counts."""
    payload = b"0" + PAYLOAD0[:-1] + b"0"
    data = (b"\x80\x02" + glob("copyreg", "_reconstructor") + glob(JOB, "NumpyArrayWrapper") + glob("builtins", "object")
            + b"N\x87R" + _wrapper_state(b"K\x05\x85", _dtype("u1")) + b"b"
            + b"B" + struct.pack("<I", len(payload)) + payload + b".")  # 5 array bytes hide the payload from a walk
    with no_exec:
        assert_unsafe(scan_bytes(tmp_path, data, "m.joblib"), "os.system")


def test_array_bytes_read_by_pickle_load_are_scanned_too(tmp_path, no_exec):
    """pickle.load of a joblib-style file reads the array bytes as opcodes."""
    payload = b"0" + PAYLOAD0[:-1]
    data = (b"\x80\x02" + glob(JOB, "NumpyArrayWrapper") + b")\x81"
            + _wrapper_state(b"K" + bytes([len(payload)]) + b"\x85", _dtype("u1")) + b"b" + payload + b".")
    with no_exec:
        r = scan_bytes(tmp_path, data, "m.pkl")
    assert_unsafe(r, "os.system", problem="read by pickle.load")


def test_a_wrapper_state_key_set_after_256_others_is_not_lost(tmp_path, no_exec):
    """joblib reads the last value of each key; the walker keeps 256 keys per dict (found in review: a
    'shape' overwritten after 256 keys was dropped, so the walker skipped 1000 bytes over a payload)."""
    junk = b"".join(_u2(f"k{i}") + b"N" for i in range(250))
    body = b"\x00" + b"0" + PAYLOAD0[:-1] + b"0"
    tail = b"b" + body + b"\x00" * (1000 - len(body)) + b"."
    head = b"\x80\x02" + glob(JOB, "NumpyArrayWrapper") + b")\x81"
    shape_again = _wrapper_state(b"M\xe8\x03\x85", _dtype("u1"), junk) + _u2("shape") + b"K\x01\x85s"
    with no_exec:
        assert_unsafe(scan_bytes(tmp_path, head + shape_again + tail, "m.joblib"), "os.system")
    more = junk + b"".join(_u2(f"z{i}") + b"N" for i in range(20))  # keys past the 256 kept: the state is lossy
    lossy = _wrapper_state(b"M\xe8\x03\x85", _dtype("u1"), more)
    assert_unsafe(scan_bytes(tmp_path, head + lossy + tail, "m.joblib"), problem="too many keys")


def test_identity_calls_cannot_hide_state_injection_into_a_module(tmp_path):
    """numpy.object_(x) returns x: BUILD then sets attributes on the torch module itself."""
    data = (b"\x80\x02" + glob("numpy", "object_") + glob("torch.nn.functional", "torch") + b"\x85R"
            + b"}" + _u2("load") + glob("builtins", "dict") + b"sb.")
    r = scan_bytes(tmp_path, data, "m.pkl")
    assert_unsafe(r, problem="BUILD sets attributes on the global torch.nn.functional.torch")
    assert r.severity == Severity.CRITICAL
    from mlsec_jupyter.checks.supply._allowlist import classify

    assert classify("torch.nn.functional.torch")[0] != "safe", "a module re-exported by F is not an activation"
    assert classify("torch.nn.functional.relu")[0] == "safe"


def test_an_overlong_global_name_is_unsafe(tmp_path):
    from mlsec_jupyter.checks.supply._pickle import KEEP_BYTES

    data = b"cos" + b"x" * (KEEP_BYTES + 10) + b"\nsystem\n(S'id'\ntR."
    assert_unsafe(scan_bytes(tmp_path, data, "m.pkl"), problem="longer than")


def test_a_zip_declaring_more_members_than_the_limit_is_walked_by_local_headers(tmp_path):
    members = {f"archive/data/{i}": b"x" for i in range(40)}
    members["archive/data.pkl"] = EVIL
    r = scan_path(write(tmp_path, "m.pt", torch_like_zip(members)), limits=Limits(max_members=30))
    assert_unsafe(r, problem="declares 41 members")


def test_bz2_is_sniffed_by_its_block_magic_not_by_three_letters():
    import bz2

    from mlsec_jupyter.checks.supply._containers import sniff

    assert sniff(bz2.compress(b"x")) == "bz2" and sniff(bz2.compress(b"")) == "bz2"
    assert sniff(b"BZh is not compressed\n") != "bz2"


def test_pandas_objects_are_safe(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": pd.to_datetime(["2020-01-01", "2021-01-01"]),
                          "d": pd.Categorical(["u", "v"]), "e": pd.array([1, None], dtype="Int64")},
                         index=pd.MultiIndex.from_tuples([(1, "a"), (2, "b")]))
    series = pd.Series([1.0, 2.0], index=pd.date_range("2020", periods=2, tz="UTC"), name="s")
    for name, obj in {"frame": frame, "series": series}.items():
        obj.to_pickle(tmp_path / f"{name}.pkl")
        r = scan_path(tmp_path / f"{name}.pkl")
        if r.custom_globals == ["pyarrow.lib._restore_array"]:  # strings held as Arrow arrays: next test
            continue
        assert r.verdict == "safe", (name, r.custom_globals, r.unsafe_globals, r.problems)


def test_pandas_objects_holding_arrow_data_name_only_the_unvalidated_arrow_rebuild(tmp_path):
    """With pyarrow installed pandas keeps strings (and every ArrowDtype column) as Arrow arrays, which pickle
    through ``pyarrow.lib._restore_array``: it builds an array from the pickle's raw buffers without
    validating them (crafted offsets read out of bounds), so it stays custom code; the type factories
    around it are data and are not named."""
    pa = pytest.importorskip("pyarrow")
    import pandas as pd

    frame = pd.DataFrame({
        "s": pd.array(["x", None], dtype=pd.ArrowDtype(pa.string())),
        "l": pd.array([[1], None], dtype=pd.ArrowDtype(pa.list_(pa.int64()))),
        "t": pd.array([{"a": 1}, None], dtype=pd.ArrowDtype(pa.struct([("a", pa.int64())]))),
        "ts": pd.array(pd.to_datetime(["2020-01-01", None]).tz_localize("UTC"),
                       dtype=pd.ArrowDtype(pa.timestamp("ns", tz="UTC")))})
    frame.to_pickle(tmp_path / "arrow.pkl")
    r = scan_path(tmp_path / "arrow.pkl")
    assert r.verdict == "custom code" and r.custom_globals == ["pyarrow.lib._restore_array"], r.custom_globals
    assert r.unsafe_globals == []


