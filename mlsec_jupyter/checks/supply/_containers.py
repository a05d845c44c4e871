"""Find every pickle in a model file: sniff formats by their magic bytes (never by file name) and walk
containers — zip (torch checkpoints, ``.npz``), tar (torch's oldest format), compressed joblib streams,
``.npy`` object arrays, torch's legacy pickle sequence — handing each pickle to the opcode walker.

Containers fail closed: a member that cannot be read, an encrypted member, a broken central directory,
a bad CRC or a file that is two formats at once (a zip+pickle polyglot) is a problem, and the scan goes
on with the rest (reliability P8, P9).
"""

from __future__ import annotations

import ast
import bz2
import io
import lzma
import re
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from . import _allowlist
from ._pickle import (
    TORCH_LEGACY_MAGIC,
    ArgError,
    LimitHit,
    Limits,
    Meter,
    ParseError,
    Sink,
    Source,
    Stop,
    Walker,
    looks_like_pickle,
)

#: How much of a scanned zip member is read to check its CRC (bigger members: CRC not checked).
CRC_CHECK_BYTES = 64 * 2**20
#: .npy headers larger than this are refused (numpy's own default limit is 10,000 bytes).
NPY_MAX_HEADER = 2**20
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, OSError, EOFError, NotImplementedError,
               RuntimeError, ValueError, struct.error, KeyError, UnicodeDecodeError)


#: Leading bytes → format, checked in order.
_MAGIC = ((b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (_NPY_MAGIC, "npy"), (b"\x1f\x8b", "gzip"),
          (b"\xfd7zXZ\x00", "xz"), (b"\x5d\x00\x00", "lzma"), (b"\x04\x22\x4d\x18", "lz4"),
          (b"7z\xbc\xaf\x27\x1c", "7z"), (b"\x28\xb5\x2f\xfd", "zstd"))
#: bz2: "BZh", a block size digit, then a block or the end-of-stream magic (not just any text "BZh...").
_BZ2 = re.compile(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)")
#: Formats that are not pickles and that no pickle loader reads (what ``%mlsec scanfile`` may be given).
_OTHER_FORMATS = ((b"\x89HDF\r\n\x1a\n", "HDF5"), (b"\x89PNG\r\n\x1a\n", "PNG image"), (b"GGUF", "GGUF"),
                  (b"PAR1", "Parquet"), (b"ARROW1", "Arrow"), (b"\xff\xd8\xff", "JPEG image"))


def sniff(head: bytes) -> str:
    """The format ``head`` (the first bytes of a file) announces: a container or compression kind,
    ``"pickle"`` (protocol 2+ header), ``"pickle?"`` (starts with a protocol 0/1 opcode), ``"other:NAME"``
    (a known non-pickle format) or ``"other"``."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if _BZ2.match(head):
        return "bz2"
    if _old_joblib(head):
        return "joblib-zf"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    for magic, name in _OTHER_FORMATS:
        if head.startswith(magic):
            return f"other:{name}"
    if _is_safetensors(head):
        return "other:safetensors"
    if len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        return "zlib"
    mode = looks_like_pickle(head)
    if mode:
        return "pickle" if mode == "strict" else "pickle?"
    return "other"


def _unpicklers_stop(e: ParseError, *, loaded: bool) -> bool:
    """Whether CPython's unpicklers surely fail where the walk did (see ``Scanner.pickles``)."""
    return isinstance(e, Stop) or (not loaded and isinstance(e, ArgError) and e.completed == 0)


def _old_joblib(head: bytes) -> bool:
    """joblib < 0.10's zlib files: "ZF" and the length in 19 characters that ``int(text, 16)`` reads (joblib
    takes any file that starts so; found in review: only "ZF0x" was recognised)."""
    if not head.startswith(b"ZF") or len(head) < 21:
        return False
    try:
        int(head[2:21].decode("ascii"), 16)
    except ValueError:
        return False
    return True


def _is_safetensors(head: bytes) -> bool:
    """safetensors: an 8-byte little-endian JSON header length, then the JSON header."""
    if len(head) < 10:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n < 100 * 2**20 and head[8:9] == b"{" and head[9:10] in b'"}'


class _SourceIO(io.RawIOBase):
    """A file-like view of a :class:`Source` (feeds a decompressor from a counted, bounded stream)."""

    def __init__(self, src: Source):
        self.src = src

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = 1 << 16 if n is None or n < 0 else n
        if not self.src._fill(1):
            return b""
        out = self.src.buf[self.src.i:self.src.i + n]
        self.src.i += len(out)
        return out


class _Decompressed(io.RawIOBase):
    """Streams decompressed bytes (``max_length`` per call, so a bomb never expands in memory);
    concatenated streams are followed like gzip/xz/joblib do; at most ``cap`` bytes come out."""

    def __init__(self, raw: Any, make: Callable[[], Any], cap: int):
        self.raw, self.make, self.cap = raw, make, cap
        self.d = make()
        self.out = 0
        self.pending = b""
        self.done = False

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = 1 << 16 if n is None or n < 0 else min(n, 1 << 20)
        while not self.done:
            d = self.d
            if d.eof:
                rest = d.unused_data or self.raw.read(1 << 16)
                if not rest:
                    self.done = True
                    break
                self.d = self.make()
                self.pending = rest
                continue
            data, self.pending = self.pending, b""
            if hasattr(d, "unconsumed_tail"):  # zlib
                data = d.unconsumed_tail or data or self.raw.read(1 << 16)
                if not data:
                    raise EOFError("the compressed stream ends before its end marker")
            elif d.needs_input and not data:  # bz2, lzma, lz4
                data = self.raw.read(1 << 16)
                if not data:
                    raise EOFError("the compressed stream ends before its end marker")
            out = d.decompress(data, n)
            if out:
                self.out += len(out)
                if self.out > self.cap:
                    raise LimitHit(f"decompressed size limit of {self.cap:,} bytes reached (a compression bomb?)")
                return out
        return b""


def _decompressor(kind: str) -> Callable[[], Any] | None:
    if kind == "gzip":
        return lambda: zlib.decompressobj(31)
    if kind == "zlib":
        return lambda: zlib.decompressobj(15)
    if kind == "deflate":
        return lambda: zlib.decompressobj(-15)
    if kind == "bz2":
        return bz2.BZ2Decompressor
    if kind in ("xz", "lzma"):
        return lambda: lzma.LZMADecompressor(lzma.FORMAT_AUTO)
    if kind == "lz4":
        try:
            import lz4.frame  # optional; never a requirement
        except ImportError:
            return None
        return lz4.frame.LZ4FrameDecompressor
    return None


#: A .npy ``descr`` string of plain data as ``numpy.lib.format`` writes it (no objects possible).
_PLAIN_DESCR = re.compile(r"[<>|=]?([biufc][0-9]+|[SUVa][0-9]+|[Mm]8(\[[0-9]*[A-Za-z]+\])?|\?)")


def _plain_descr(descr: Any) -> bool:
    """Whether a .npy ``descr`` certainly holds no Python objects (else a pickle may follow the header).

    An allowlist of the forms numpy writes: a type string (``'<f8'``, ``'|S3'``, ``'<M8[ns]'``) or a list
    of ``(name, descr[, shape])`` fields. Anything else (``'O'``, ``'object'``, ``'i4,O'``, ``'(2,)O'``,
    ``('O', (2,))``...) is read as an object array, as numpy may (found in review).
    """
    if isinstance(descr, str):
        return _PLAIN_DESCR.fullmatch(descr) is not None
    if not isinstance(descr, list) or not descr:
        return False
    for f in descr:
        if not (isinstance(f, tuple) and len(f) in (2, 3)):
            return False
        name = f[0]
        if not (isinstance(name, str) or (isinstance(name, tuple) and len(name) == 2
                                          and all(isinstance(x, str) for x in name))):
            return False
        if len(f) == 3 and not (isinstance(f[2], tuple) and all(type(d) is int for d in f[2])):
            return False
        if not _plain_descr(f[1]):
            return False
    return True


@dataclass
class Scanner:
    """One scan: the sink it reports to, its limits, byte meter and budget tick."""

    sink: Sink
    limits: Limits
    meter: Meter
    tick: Callable[[], None]
    members: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)

    # ---- pickles ---------------------------------------------------------------------------------
    def _walk(self, src: Source, where: str, *, persid: str | None = None, nesting: int = 0) -> Walker:
        return Walker(src, self.sink, self.limits, persid=persid, nesting=nesting, tick=self.tick, where=where)

    def pickles(self, src: Source, where: str, *, strict: bool, persid: str | None = None,
                loaded: bool = False) -> str | None:
        """Scan a pickle (and the pickles that follow it). ``None`` if, being lenient, it is not one.

        Lenient (bytes that merely start with an opcode): they are "not a pickle" only when the walk stops
        before anything callable where CPython's unpickler stops too (:class:`Stop`), or, for bytes no loader
        is known to unpickle (not ``loaded``: a tar header, an archive member), on an unreadable argument of
        the very first opcode (text such as a tar member name ``"pd_df.pkl"``). Any other parse error is a
        problem: the unpickler may read those bytes differently (found in review: ``INT 0b1`` and
        ``FLOAT 1\\x00junk``, which the C unpickler accepts, hid payloads behind a "parse error").
        """
        w = self._walk(src, where, persid=persid)
        try:
            first = w.run()
        except ParseError as e:
            if strict or w.callables or not _unpicklers_stop(e, loaded=loaded):
                self.sink.problem(f"{where}: {e}" if where else str(e))
                return "pickle (broken)" if strict or w.callables else "pickle (unparsable)"
            return None
        if first.value == TORCH_LEGACY_MAGIC and type(first.value) is int:
            self._torch_legacy(src, where)
            return "torch legacy"
        fmt = f"pickle protocol {first.protocol}" if first.protocol >= 2 else "pickle protocol 0/1"
        if self.sink.joblib_arrays:
            fmt = f"joblib ({fmt})"
        for count in range(1, self.limits.max_pickles + 1):
            if src.at_eof():
                break
            if count == self.limits.max_pickles:
                self.sink.problem(f"{where}: more than {self.limits.max_pickles} pickles in one stream; the rest "
                                  "was not scanned")
                break
            start = src.pos
            mode = looks_like_pickle(src.peek(2))
            w = self._walk(src, f"{where} (pickle {count + 1})".strip())
            try:
                if mode is None:
                    raise Stop("not a pickle")
                w.run()
            except ParseError as e:
                if mode == "strict" or w.callables or not _unpicklers_stop(e, loaded=loaded):
                    self.sink.problem(f"{where} (pickle {count + 1}): {e}".strip())
                else:
                    self.sink.note(f"{where + ': ' if where else ''}bytes from offset {start:,} on are not a "
                                   "pickle (pickle.load ignores them)")
                break
        return fmt

    def _torch_legacy(self, src: Source, where: str) -> None:
        """torch's pre-1.6 format: magic, protocol, sys info, the model pickle, storage keys, raw data."""
        for i, what in enumerate(("protocol version", "sys info", "model", "storage keys")):
            w = self._walk(src, f"{where} (legacy {what})".strip(), persid="torch" if what == "model" else None)
            try:
                w.run()
            except ParseError as e:
                self.sink.problem(f"torch legacy file, {what} pickle: {e}")
                return
        if not src.at_eof():
            self.sink.note("torch legacy file: raw tensor data follows the pickles (torch never unpickles it)")

    # ---- numpy -----------------------------------------------------------------------------------
    def npy(self, src: Source, where: str) -> str:
        head = src.read(8, ".npy magic")
        major = head[6]
        if major == 1:
            hlen = struct.unpack("<H", src.read(2, ".npy header length"))[0]
        elif major in (2, 3):
            hlen = struct.unpack("<I", src.read(4, ".npy header length"))[0]
        else:
            self.sink.problem(f"{where}: .npy version {major} is unknown")
            return "numpy .npy (unknown version)"
        if hlen > NPY_MAX_HEADER:
            self.sink.problem(f"{where}: .npy header of {hlen:,} bytes is too large to inspect")
            return "numpy .npy (bad header)"
        raw = src.read(hlen, ".npy header")
        try:
            header = ast.literal_eval(raw.decode("utf-8" if major == 3 else "latin-1").strip())
            descr = header["descr"]
        except Exception as e:  # noqa: BLE001 - any malformed header (SyntaxError, ValueError, RecursionError...)
            self.sink.problem(f"{where}: unreadable .npy header ({type(e).__name__})")
            return "numpy .npy (bad header)"
        if _plain_descr(descr):
            return "numpy .npy"
        self.pickles(src, f"{where} (object array)".strip(), strict=True)
        return "numpy .npy (object array)"

    def pickle_prefix(self, src: Source, where: str) -> str | None:
        """Read the start of another format leniently as a pickle (``pickle.load`` reads any file from byte 0):
        the pickle format when that names a global or breaks after one (a polyglot), else ``None``."""
        before = self.sink.seen()
        fmt = self.pickles(src, where, strict=False)
        return None if self.sink.seen() == before else (fmt or "pickle")

    # ---- any stream ------------------------------------------------------------------------------
    def stream(self, src: Source, where: str, *, nesting: int = 0, top: bool = False, loaded: bool = False,
               persid: str | None = None, name_says_pickle: bool = False) -> str:
        """Sniff a stream and scan what it holds. ``top``: the file itself; ``loaded``: bytes a loader
        unpickles (the file, or what its compression holds)."""
        head = src.peek(512)
        kind = sniff(head)
        if not head:
            return "empty"
        if kind == "npy":
            return self.npy(src, where)
        if kind.startswith("other:"):  # a known non-pickle format; a pickle hiding at its start still shows
            fmt = self.pickle_prefix(src, where)
            if fmt is None:  # e.g. a PNG's "P" is a persistent id: every unpickler stops there
                return f"{kind[6:]} (not a pickle)"
            self.sink.problem(f"{where + ': ' if where else ''}the file starts like a {kind[6:]} file and is also "
                              "read as a pickle (a polyglot)")
            return f"{kind[6:]} + {fmt} (polyglot)"
        if kind in ("pickle", "pickle?") or name_says_pickle:
            strict = kind == "pickle" or name_says_pickle
            fmt = self.pickles(src, where, strict=strict, persid=persid, loaded=top or loaded)
            return fmt or "not a pickle"
        if kind == "joblib-zf":  # joblib < 0.10: "ZF" + the length in hex (19 chars), then a zlib stream
            src.skip(21, "old joblib header")
            kind = "zlib"
        make = _decompressor(kind) if kind in ("gzip", "zlib", "bz2", "xz", "lzma", "lz4") else None
        if make is not None:
            if nesting >= self.limits.max_nesting:
                self.sink.problem(f"{where}: compressed streams nested too deeply")
                return f"{kind} (nested)"
            inner = Source(_Decompressed(_SourceIO(src), make, self.limits.max_decompressed), size=None,
                           meter=self.meter)
            try:
                inner_fmt = self.stream(inner, where, nesting=nesting + 1, loaded=top or loaded)
            except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as e:
                self.sink.problem(f"{where + ': ' if where else ''}the {kind} stream is corrupt ({e})")
                inner_fmt = "corrupt"
            if inner_fmt.startswith(("pickle", "joblib")):
                return f"joblib ({kind})"
            return f"{kind} ({inner_fmt})"
        if kind == "lz4":
            self.sink.problem(f"{where + ': ' if where else ''}lz4-compressed and the lz4 module is not installed: "
                              "cannot be inspected")
            return "joblib (lz4, not inspected)"
        if kind in ("7z", "zstd"):
            self.sink.problem(f"{where + ': ' if where else ''}{kind}-compressed: its contents cannot be inspected")
            return f"{kind} (not inspected)"
        if kind in ("zip", "tar") and not top:
            if nesting >= self.limits.max_nesting:
                self.sink.problem(f"{where}: archives nested too deeply")
                return f"{kind} (nested)"
            self.sink.note(f"{where}: a {kind} archive inside an archive (scanned)")
            data = _spool(src, self.limits)
            if data is None:
                self.sink.problem(f"{where}: a nested {kind} archive too large to inspect")
                return f"{kind} (nested, not inspected)"
            return self.zip(data, where, nesting + 1) if kind == "zip" else self.tar(data, where, nesting + 1)
        return "not a pickle"

    # ---- zip -------------------------------------------------------------------------------------
    def zip(self, fh: BinaryIO, where: str = "", nesting: int = 0) -> str:
        declared = _zip_declared_entries(fh)
        if declared is not None and declared > self.limits.max_members:
            self.sink.problem(f"{where + ': ' if where else ''}the zip declares {declared:,} members, over the limit of "
                              f"{self.limits.max_members:,}; its first members were scanned by their local headers")
            self._walk_local_headers(fh, where, nesting)
            return "zip (too many members)"
        try:
            fh.seek(0)
            zf = zipfile.ZipFile(fh)
            infos = zf.infolist()
        except _ZIP_ERRORS as e:
            self.sink.problem(f"{where + ': ' if where else ''}broken zip central directory ({e}); the local "
                              "headers were scanned instead")
            self._walk_local_headers(fh, where, nesting)
            return "zip (broken central directory)"
        if len(infos) > self.limits.max_members:
            self.sink.problem(f"{len(infos):,} zip members; only the first {self.limits.max_members:,} were scanned")
            infos = infos[: self.limits.max_members]
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            self.sink.problem("the zip has duplicate member names: loaders may read a different copy than a "
                              "scanner (all were scanned)")
        prefixes = {n[: -len("data.pkl")] for n in names if n == "data.pkl" or n.endswith("/data.pkl")}
        is_torch = bool(prefixes)
        ordered = [info for _, info in sorted(enumerate(infos),
                                              key=lambda p: (not p[1].filename.endswith(".pkl"), p[0]))]
        n_npy = n_scanned = 0
        for info in ordered:
            self.tick()
            name = info.filename
            label = f"{where}/{name}" if where else name
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                self.sink.problem(f"zip member {label!r} is encrypted: it cannot be inspected")
                continue
            if is_torch and any(name == f"{p}data/{k}" for p in prefixes for k in self.sink.storage_keys):
                continue  # raw tensor bytes named by a storage persistent id: torch never unpickles them
            if info.file_size > self.limits.max_decompressed:
                self.sink.problem(f"zip member {label!r} declares {info.file_size:,} bytes, over the size cap")
                continue
            try:
                fmt = self._zip_member(zf, info, label, nesting, persid="torch" if is_torch else None)
            except _ZIP_ERRORS + (ParseError,) as e:
                self.sink.problem(f"zip member {label!r} could not be read ({e}); the other members were scanned")
                continue
            if fmt and fmt not in ("not a pickle", "empty"):
                self.members.append(label)
                n_scanned += 1
                n_npy += fmt.startswith("numpy .npy")
        if is_torch:
            return "torch zip checkpoint"
        if n_npy and n_npy == n_scanned:
            return "numpy .npz"
        return "zip (not torch)"

    def _zip_member(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, nesting: int,
                    persid: str | None) -> str:
        with zf.open(info) as raw:
            if hasattr(raw, "_expected_crc"):
                raw._expected_crc = None  # torch ignores CRCs: read the bytes anyway, check the CRC below
            crc = _Crc(raw)
            src = Source(crc, size=info.file_size, meter=self.meter)
            fmt = self.stream(src, label, nesting=nesting, persid=persid,
                              name_says_pickle=label.endswith(".pkl"))
            if fmt not in ("not a pickle", "empty") and info.file_size <= CRC_CHECK_BYTES:
                rest = src.remaining()
                if rest:
                    src.skip(rest, "rest of member")
                if crc.value != info.CRC:
                    self.sink.problem(f"zip member {label!r} has a bad CRC (torch ignores CRCs; its bytes were "
                                      "scanned as they are)")
        return fmt

    def _walk_local_headers(self, fh: BinaryIO, where: str, nesting: int) -> None:
        """Scan members by their local headers when the central directory is unusable."""
        pos = 0
        for _ in range(self.limits.max_members):
            self.tick()
            fh.seek(pos)
            hdr = fh.read(30)
            if len(hdr) < 30 or hdr[:4] != b"PK\x03\x04":
                return
            _, _, flags, method, _, _, _, csize, _usize, nlen, xlen = struct.unpack("<IHHHHHIIIHH", hdr)
            name = fh.read(nlen).decode("utf-8", "replace")
            start = pos + 30 + nlen + xlen
            label = f"{where}/{name}" if where else name
            if flags & 0x1:
                self.sink.problem(f"zip member {label!r} is encrypted: it cannot be inspected")
            elif flags & 0x8 and csize == 0:
                self.sink.problem(f"zip member {label!r} has no size in its local header; the members after it "
                                  "could not be found")
                return
            elif method in (0, 8):
                fh.seek(start)
                src = Source(fh, size=csize, meter=self.meter)
                if method == 8:
                    src = Source(_Decompressed(_SourceIO(src), _decompressor("deflate"),
                                               self.limits.max_decompressed), size=None, meter=self.meter)
                try:
                    fmt = self.stream(src, label, nesting=nesting, persid="torch",
                                      name_says_pickle=name.endswith(".pkl"))
                    if fmt not in ("not a pickle", "empty"):
                        self.members.append(label)
                except _ZIP_ERRORS + (ParseError,) as e:
                    self.sink.problem(f"zip member {label!r} could not be read ({e})")
            else:
                self.sink.problem(f"zip member {label!r} uses compression method {method}, not inspected")
            pos = start + csize

    # ---- joblib read by pickle.load -------------------------------------------------------------------
    def plain_view(self, fh: BinaryIO, size: int) -> None:
        """Read an uncompressed joblib file as ``pickle.load`` would: the bytes joblib takes as array data
        are then more opcodes, which may hide a payload from a joblib-aware scan (found in review)."""
        fh.seek(0)
        sink = Sink()
        walker = Walker(Source(fh, size=size, meter=self.meter, seekable=True), sink, self.limits,
                        joblib=False, tick=self.tick, where="read by pickle.load")
        try:
            walker.run()
        except ParseError:
            pass  # array bytes seldom parse: pickle.load fails there too, after what it saw
        # Only what can do harm is kept: an object array's nested pickle read with the outer memo names junk
        # (``NumpyArrayWrapper.dtype``) that pickle.load fails to import, which is not worth a finding.
        risky = [g for g in sink.globals if g not in self.sink.globals and
                 _allowlist.classify(g, sink.globals[g], sink.chains.get(g))[0] in ("unsafe", "critical")]
        for g in risky:
            self.sink.globals[g] = sink.globals[g]
            if g in sink.chains:
                self.sink.chains[g] = sink.chains[g]
        if risky:
            self.sink.problem("read by pickle.load instead of joblib.load, the bytes joblib takes as array data are "
                              f"pickle opcodes that import {', '.join(risky[:5])}")
        for text in sink.critical_problems:
            if sink.kinds.get(text) == "state injection":  # array bytes seldom name globals by chance; they can
                self.sink.problem(f"read by pickle.load: {text}", critical=True)  # reach a BUILD on one easily

    # ---- tar (torch < 0.4) -------------------------------------------------------------------------
    def tar(self, fh: BinaryIO, where: str = "", nesting: int = 0) -> str:
        try:
            tf = tarfile.open(fileobj=fh, mode="r:")  # noqa: SIM115 - closed with fh by the caller
            infos = []
            for info in tf:
                infos.append(info)
                if len(infos) >= self.limits.max_members:
                    self.sink.problem(f"more than {self.limits.max_members:,} tar members; the rest was not scanned")
                    break
        except (tarfile.TarError, OSError, EOFError, ValueError, struct.error) as e:
            self.sink.problem(f"{where + ': ' if where else ''}broken tar archive ({e})")
            return "tar (broken)"
        names = {i.name for i in infos}
        is_torch = {"pickle", "storages", "tensors"} <= names
        for info in infos:
            self.tick()
            if not info.isfile():
                continue
            label = f"{where}/{info.name}" if where else info.name
            try:
                member = tf.extractfile(info)
                if member is None:
                    continue
                src = Source(member, size=info.size, meter=self.meter)
                if is_torch and info.name == "storages":
                    self._tar_storages(src, label)
                    self.members.append(label)
                elif is_torch and info.name == "tensors":
                    self._tar_tensors(src, label)
                    self.members.append(label)
                else:
                    fmt = self.stream(src, label, nesting=nesting, persid="torch" if is_torch else None,
                                      name_says_pickle=is_torch and info.name in ("pickle", "sys_info"))
                    if fmt not in ("not a pickle", "empty"):
                        self.members.append(label)
            except (ParseError, tarfile.TarError, OSError, EOFError, ValueError, struct.error) as e:
                self.sink.problem(f"tar member {label!r} could not be read ({e})")
        return "torch legacy (tar)" if is_torch else "tar (not torch)"

    def _count(self, src: Source, label: str) -> int:
        parsed = self._walk(src, label).run()
        if not isinstance(parsed.value, int) or parsed.value < 0:
            raise ParseError(f"{label}: the count is not a number")
        return min(parsed.value, self.limits.max_members)

    def _tar_storages(self, src: Source, label: str) -> None:
        from ._allowlist import storage_element_size

        for _ in range(self._count(src, label)):
            args = self._walk(src, label).run().value
            size = storage_element_size(args[2]) if isinstance(args, tuple) and len(args) == 3 else None
            if size is None:
                raise ParseError(f"{label}: a storage record of unknown type")
            numel = struct.unpack("<q", src.read(8, "storage size"))[0]
            src.skip(numel * size, "storage data")
        if not src.at_eof():
            self._walk(src, label).run()  # storage views

    def _tar_tensors(self, src: Source, label: str) -> None:
        for _ in range(self._count(src, label)):
            self._walk(src, label).run()
            ndim = struct.unpack("<i", src.read(4, "tensor ndim"))[0]
            src.skip(4 + 16 * ndim + 8, "tensor shape")


def _zip_declared_entries(fh: BinaryIO) -> int | None:
    """How many members a zip's end-of-central-directory record declares (zip64 too), read before
    ``zipfile`` builds one object per member; ``None`` if the record is not found."""
    try:
        fh.seek(0, 2)
        size = fh.tell()
        tail_len = min(size, 22 + 65535 + 20)
        fh.seek(size - tail_len)
        tail = fh.read(tail_len)
    except (OSError, ValueError):
        return None
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return None
    count = struct.unpack("<H", tail[at + 10:at + 12])[0]
    if count == 0xFFFF and at >= 20 and tail[at - 20:at - 16] == b"PK\x06\x07":  # zip64 locator
        offset = struct.unpack("<Q", tail[at - 12:at - 4])[0]
        try:
            fh.seek(offset)
            rec = fh.read(56)
        except (OSError, ValueError, OverflowError):
            return None
        if len(rec) == 56 and rec[:4] == b"PK\x06\x06":
            count = struct.unpack("<Q", rec[32:40])[0]
    return count


class _Crc:
    """Wraps a member stream and computes the CRC-32 of what was read."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.value = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.value = zlib.crc32(data, self.value)
        return data


def _spool(src: Source, limits: Limits) -> BinaryIO | None:
    """A nested archive copied to a temporary spooled file (zipfile needs to seek)."""
    import tempfile

    left = src.remaining()
    if left is not None and left > limits.max_decompressed:
        return None
    out = tempfile.SpooledTemporaryFile(max_size=32 * 2**20)  # noqa: SIM115 - returned to the caller
    while src._fill(1):
        out.write(src.buf[src.i:])
        src.i = len(src.buf)
    out.seek(0)
    return out
