"""A static pickle opcode walker: reads a pickle the way an unpickler would, without running it.

Nothing named in the file is imported or called (no ``find_class``, no ``pickle.load``), and
:mod:`pickletools` is not used on untrusted bytes (``genops`` allocates declared lengths: a
``BINBYTES8`` declaring 2**40 bytes raises ``MemoryError``, reliability P12). Instead:

* every declared length is checked against the bytes left in the stream *before* anything is read,
  and payloads over :data:`KEEP_BYTES` are skipped (seeked or read and dropped in chunks), never stored;
* the stream is read through :class:`Source` in chunks, so memory stays bounded whatever the size;
* opcodes, stack depth, memo entries and bytes read are capped (:class:`Limits`); a cap hit, a parse
  error or a truncated stream raises :class:`ParseError` *after* everything seen so far was reported
  to the :class:`Sink` (a broken pickle can run code before it fails, P10);
* a symbolic stack and memo mirror CPython's unpickler closely enough to resolve ``GLOBAL``,
  ``STACK_GLOBAL`` (names pushed by any string opcode, directly or through the memo: P1, P2), ``INST``
  and ``OBJ`` (P3), ``REDUCE``/``NEWOBJ``/``NEWOBJ_EX`` and ``BUILD`` (P4). Names built at run time,
  extension-registry codes and frames that disagree with the bytes that follow (P11) are problems.

joblib's in-stream arrays are followed too: a ``BUILD`` on a ``joblib.numpy_pickle.NumpyArrayWrapper``
is followed by raw array bytes (skipped, using the wrapper's shape and dtype) or, for object arrays, by
a nested pickle (scanned).
"""

from __future__ import annotations

import codecs
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from . import _allowlist

#: Strings and bytes up to this many bytes are kept as values (to resolve names); longer ones are skipped.
KEEP_BYTES = 64 * 1024
#: Items kept per symbolic list / dict / tuple (the rest are counted, not stored).
KEEP_ITEMS = 256
#: torch's legacy (non-zip) format starts with a pickle of this number.
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
JOBLIB_WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"


@dataclass(frozen=True)
class Limits:
    """Caps that keep a scan bounded in time and memory; the opcode and stack caps are checked every 256
    opcodes."""

    max_opcodes: int = 100_000_000  # per pickle (the time budget is the usual stop)
    max_stack: int = 10_000  # stack items plus marks
    max_memo: int = 1_000_000  # about 150 MB of symbolic values at worst
    max_bytes: int = 64 * 2**30  # bytes read in one scan, decompressed bytes included
    max_decompressed: int = 16 * 2**30  # per compressed stream or zip member
    max_pickles: int = 64  # pickles one after another in one stream
    max_members: int = 100_000  # zip / tar members
    max_nesting: int = 8  # pickles inside pickles (joblib object arrays), zips inside zips
    max_kept_bytes: int = 32 * 2**20  # string bytes kept as values over one pickle


class ParseError(Exception):
    """The bytes are not a well-formed pickle (what was seen before is already reported). ``completed``:
    opcodes read in full before the one that failed (set by :meth:`Walker.run`)."""

    completed = -1


class Stop(ParseError):
    """Both of CPython's unpicklers (C, and the pure-Python one joblib uses) fail at the same point: an
    unknown opcode, a stack or memo underflow, an unreadable memo key, a persistent id with no
    ``persistent_load``, the end of the stream. Any other parse error may be a reading where one of them
    differs, so callers fail closed on it."""


class ArgError(ParseError):
    """An opcode's argument cannot be read (a number, string, name or length). The walker accepts what either
    unpickler accepts, as far as known (two reviews found readings it refused: ``INT 0b1``, a NUL after a
    number), so a lenient caller trusts an ArgError only at the first opcode of bytes no loader is known to
    unpickle (see ``Scanner.pickles``)."""


class Truncated(Stop):
    """The stream ended (or declares more bytes than it has) before the pickle did."""


class LimitHit(ParseError):
    """A cap of :class:`Limits` was reached; the scan stopped there."""


# --------------------------------------------------------------------------------------------------
# the byte source
# --------------------------------------------------------------------------------------------------
class Meter:
    """Counts bytes pulled from every source of one scan; enforces the byte cap and calls ``tick``
    (a budget checkpoint) every few MB."""

    def __init__(self, cap: int, tick: Callable[[], None] | None = None, every: int = 8 * 2**20):
        self.total = 0
        self.cap = cap
        self.tick = tick
        self._every = every
        self._next = every

    def add(self, n: int) -> None:
        self.total += n
        if self.total > self.cap:
            raise LimitHit(f"byte limit of {self.cap:,} reached")
        if self.total >= self._next:
            self._next = self.total + self._every
            if self.tick is not None:
                self.tick()


class Source:
    """A forward-only buffered reader over a binary stream.

    ``size`` is how many bytes the stream holds from where this source starts (``None`` if unknown,
    e.g. a decompressing stream); declared lengths are checked against it before reading.
    """

    CHUNK = 1 << 16

    def __init__(self, raw: BinaryIO, *, size: int | None, meter: Meter, seekable: bool = False):
        self.raw = raw
        self.size = size
        self.meter = meter
        self.seekable = seekable and size is not None
        self.buf = b""
        self.i = 0
        self.base = 0  # stream offset of buf[0]
        self.pulled = 0  # bytes taken from raw

    @property
    def pos(self) -> int:
        return self.base + self.i

    def remaining(self) -> int | None:
        return None if self.size is None else max(self.size - self.pos, 0)

    def _pull(self, n: int) -> bytes:
        if self.size is not None:
            n = min(n, self.size - self.pulled)
            if n <= 0:
                return b""
        chunk = self.raw.read(n) or b""
        if chunk:
            self.pulled += len(chunk)
            self.meter.add(len(chunk))
        return chunk

    def _fill(self, n: int) -> bool:
        avail = len(self.buf) - self.i
        if avail >= n:
            return True
        parts = [self.buf[self.i:]]
        self.base += self.i
        self.i = 0
        while avail < n:
            chunk = self._pull(max(self.CHUNK, n - avail))
            if not chunk:
                break
            parts.append(chunk)
            avail += len(chunk)
        self.buf = b"".join(parts)
        return avail >= n

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return self.buf[self.i:self.i + n]

    def at_eof(self) -> bool:
        return not self._fill(1)

    def byte(self) -> int:
        i = self.i
        if i >= len(self.buf) and not self._fill(1):
            raise Truncated(f"stream ends at byte {self.pos:,} inside a pickle")
        i = self.i
        self.i = i + 1
        return self.buf[i]

    def need(self, n: int, what: str) -> None:
        """Raise before reading when ``n`` declared bytes cannot be in the stream."""
        if n < 0:
            raise ArgError(f"{what} declares a negative length ({n})")
        left = self.remaining()
        if left is not None and n > left:
            raise Truncated(f"{what} at byte {self.pos:,} declares {n:,} bytes but only {left:,} remain")

    def read(self, n: int, what: str = "data") -> bytes:
        i = self.i
        j = i + n
        if 0 <= n and j <= len(self.buf):  # buffered bytes are always within ``size``
            self.i = j
            return self.buf[i:j]
        self.need(n, what)
        if not self._fill(n):
            raise Truncated(f"{what} at byte {self.pos:,} declares {n:,} bytes; the stream ends first")
        out = self.buf[self.i:self.i + n]
        self.i += n
        return out

    def skip(self, n: int, what: str = "data") -> None:
        self.need(n, what)
        avail = len(self.buf) - self.i
        if n <= avail:
            self.i += n
            return
        n -= avail
        self.base += len(self.buf)
        self.buf, self.i = b"", 0
        if self.seekable:
            try:
                self.raw.seek(n, 1)
                self.meter.add(n)
                self.pulled += n
                self.base += n
                return
            except (OSError, ValueError, AttributeError):
                self.seekable = False
        while n > 0:
            chunk = self._pull(min(n, 1 << 20))
            if not chunk:
                raise Truncated(f"{what} runs past the end of the stream")
            n -= len(chunk)
            self.base += len(chunk)

    def readline(self, what: str, keep: int = KEEP_BYTES) -> bytes:
        """A newline-terminated argument (without the newline); at most ``keep`` bytes are kept, the
        rest of an overlong line is skipped (the caller gets the cut line and :attr:`line_len`)."""
        kept: list[bytes] = []
        n_kept = total = 0
        while True:
            j = self.buf.find(b"\n", self.i)
            end = j if j >= 0 else len(self.buf)
            seg = self.buf[self.i:end]
            if n_kept < keep:
                kept.append(seg[:keep - n_kept])
                n_kept += min(len(seg), keep - n_kept)
            total += len(seg)
            if j >= 0:
                self.i = j + 1
                self.line_len = total
                return b"".join(kept)
            self.i = len(self.buf)
            if not self._fill(1):
                raise Truncated(f"{what}: the line is not terminated before the end of the stream")

    line_len = 0


# --------------------------------------------------------------------------------------------------
# symbolic values
# --------------------------------------------------------------------------------------------------
class Ref:
    """A global the unpickler would import (``module.name``)."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    @property
    def full(self) -> str:
        return f"{self.module}.{self.name}"


class Obj:
    """What a call would return: ``callee(*args)`` (REDUCE, NEWOBJ, OBJ, INST), plus BUILD's state."""

    __slots__ = ("args", "callee", "kind", "state")

    def __init__(self, callee: Any, args: Any, kind: str):
        self.callee, self.args, self.kind, self.state = callee, args, kind, None

    @property
    def callee_name(self) -> str | None:
        return self.callee.full if isinstance(self.callee, Ref) else None


class Opaque:
    """A value the walker does not keep (a long string, bytes payload, persistent id result...)."""

    __slots__ = ("what",)

    def __init__(self, what: str):
        self.what = what

    def __repr__(self) -> str:
        return f"<{self.what}>"


class SList(list):
    """A symbolic list (or set): at most KEEP_ITEMS items kept."""

    def add(self, v: Any) -> None:
        if len(self) < KEEP_ITEMS:
            self.append(v)


class SDict(dict):
    """A symbolic dict: at most KEEP_ITEMS hashable keys kept; a kept key is always overwritten (the
    unpickler's last write wins). ``lossy`` says a key was dropped, so a value read from it may be stale."""

    lossy = False

    def put(self, k: Any, v: Any) -> None:
        if not isinstance(k, (str, int, float, bytes, bool, type(None), tuple)):
            self.lossy = True
            return
        try:
            if k in self or len(self) < KEEP_ITEMS:
                self[k] = v
                return
        except TypeError:  # a tuple holding unhashable symbolic values
            pass
        self.lossy = True

    def put_pairs(self, items: list) -> None:
        """``put`` each (key, value) of a flat ``[k1, v1, k2, v2, ...]`` list (DICT and SETITEMS)."""
        for i in range(0, len(items) - 1, 2):
            self.put(items[i], items[i + 1])


_BIG_STR = Opaque("long string")
_BIG_BYTES = Opaque("bytes")
_BIG_INT = Opaque("long int")


def _tuple(items: list) -> Any:
    return tuple(items) if len(items) <= KEEP_ITEMS else Opaque("long tuple")


# --------------------------------------------------------------------------------------------------
# what a parse reports
# --------------------------------------------------------------------------------------------------
@dataclass
class Sink:
    """Everything one scan learns, filled in as it is seen (so a later error keeps it)."""

    globals: dict[str, set[str]] = field(default_factory=dict)  # "module.name" -> raw spellings
    chains: dict[str, str] = field(default_factory=dict)  # "module.name" -> dotted name part
    problems: list[str] = field(default_factory=list)
    critical_problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    storage_keys: set[str] = field(default_factory=set)
    joblib_arrays: int = 0
    max_protocol: int = -1
    kinds: dict[str, str] = field(default_factory=dict)  # problem text -> kind

    def add_global(self, module: str, name: str, proto: int) -> str:
        shown_mod, shown_name = _allowlist.fix_import(module, name, proto)
        full = f"{shown_mod}.{shown_name}"
        self.globals.setdefault(full, set()).add(f"{module}.{name}")
        if "." in name:
            self.chains[full] = name
        return full

    def problem(self, text: str, *, critical: bool = False, kind: str = "") -> None:
        """Record a problem; ``kind`` tags those a second reading of the file may add (``"state injection"``)."""
        target = self.critical_problems if critical else self.problems
        if text not in self.problems and text not in self.critical_problems and len(target) < 200:
            target.append(text)
            if kind:
                self.kinds[text] = kind

    def seen(self) -> int:
        """A count that grows whenever a global or a problem is recorded."""
        return len(self.globals) + len(self.problems) + len(self.critical_problems)

    def note(self, text: str) -> None:
        if text not in self.notes and len(self.notes) < 200:
            self.notes.append(text)


@dataclass
class Parsed:
    """One pickle walked to its STOP."""

    value: Any
    opcodes: int
    protocol: int
    start: int
    end: int
    callables: int  # globals, extension codes and persistent ids seen (0: it cannot run code)


# --------------------------------------------------------------------------------------------------
# the walker
# --------------------------------------------------------------------------------------------------
def _opcode_bytes() -> frozenset[int]:
    """Every one-byte pickle opcode: CPython's unpickler runs a stream that starts with any of them (no
    PROTO needed), so each may begin a pickle (found in review: ``C\\x000`` before a payload passed)."""
    import pickletools  # its opcode table only; its parser is never used on file content

    return frozenset(op.code.encode("latin-1")[0] for op in pickletools.opcodes if len(op.code) == 1)


_PROTO0_PICKLE_STARTS = _opcode_bytes()  # first bytes a pickle without a PROTO header can start with


def looks_like_pickle(head: bytes) -> str | None:
    """``"strict"`` when ``head`` starts like a protocol 2+ pickle, ``"lenient"`` when it starts with an
    opcode protocol 0/1 pickles start with, ``None`` otherwise."""
    if len(head) >= 2 and head[0] == 0x80 and head[1] <= 5:
        return "strict"
    if head and head[0] in _PROTO0_PICKLE_STARTS:
        return "lenient"
    return None


class Walker:
    """Walks one pickle from ``src``; reports into ``sink``; raises :class:`ParseError` on bad input.

    ``persid`` says what persistent ids mean here: ``"torch"`` (storages of a torch checkpoint),
    or ``None`` (an unpickler without ``persistent_load`` stops at one: :class:`Stop`).
    ``joblib`` says whether to read the stream as ``joblib.load`` reads a file (array bytes follow a
    wrapper's BUILD) or as ``pickle.load`` does (those bytes are more opcodes; also how joblib reads the
    nested pickle of an object array).
    """

    def __init__(self, src: Source, sink: Sink, limits: Limits, *, persid: str | None = None,
                 nesting: int = 0, tick: Callable[[], None] | None = None, where: str = "",
                 joblib: bool = True):
        self.src, self.sink, self.limits = src, sink, limits
        self.persid = persid
        self.joblib = joblib
        self.nesting = nesting
        self.tick = tick
        self.where = where
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.proto = 0
        self.kept = 0
        self.callables = 0
        self.frame_end: int | None = None
        self.below = 0  # items (and marks) on the stack below the current MARK

    # ---- helpers ---------------------------------------------------------------------------------
    def _at(self) -> str:
        return f"{self.where} at byte {self.src.pos:,}" if self.where else f"at byte {self.src.pos:,}"

    def pop(self) -> Any:
        if not self.stack:
            raise Stop(f"stack underflow {self._at()}")
        return self.stack.pop()

    def pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise Stop(f"no MARK to pop to {self._at()}")
        items = self.stack
        self.stack = self.metastack.pop()
        self.below -= len(self.stack) + 1
        return items

    def _arg_byte(self) -> int:
        """A one-byte opcode argument (from the buffer when it is there)."""
        src = self.src
        i = src.i
        if i < len(src.buf):
            src.i = i + 1
            return src.buf[i]
        return src.byte()

    def push(self, v: Any) -> None:
        self.stack.append(v)

    def _keep_str(self, raw: bytes, decode: Callable[[bytes], str]) -> Any:
        self.kept += len(raw)
        if self.kept > self.limits.max_kept_bytes:
            return _BIG_STR
        try:
            return decode(raw)
        except (UnicodeDecodeError, ValueError) as e:
            raise ArgError(f"undecodable string {self._at()}: {e}") from None

    def _counted_str(self, n: int, what: str, decode: Callable[[bytes], str]) -> Any:
        if n > KEEP_BYTES:
            self.src.skip(n, what)
            return _BIG_STR
        return self._keep_str(self.src.read(n, what), decode)

    def _counted_bytes(self, n: int, what: str, kind: type = bytes) -> Any:
        if n > 256:  # bytes are never names; only small ones matter (e.g. numpy scalars)
            self.src.skip(n, what)
            return _BIG_BYTES
        return kind(self.src.read(n, what))

    def _uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.src.read(size, what), "little")

    def _line(self, what: str) -> bytes:
        return self.src.readline(what)

    def _global(self, module: Any, name: Any, how: str) -> Ref:
        if not (isinstance(module, str) and isinstance(name, str)):
            kinds = f"{_describe(module)}, {_describe(name)}"
            self.sink.problem(f"{how} with a module/name that is not a plain string ({kinds}): the object "
                              "it loads is chosen at run time and cannot be checked (names built at run time)",
                              critical=True)
            self.callables += 1
            return Ref("<unresolved>", "<built at run time>")
        self.callables += 1
        full = self.sink.add_global(module, name, self.proto)
        return Ref(*full.rsplit(".", 1)) if "." in full else Ref(module, name)

    def _memo_key(self, raw: bytes, what: str) -> int:
        try:
            key = int(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise Stop(f"{what} with an invalid memo key {raw[:40]!r} {self._at()}") from None
        if key < 0:
            raise Stop(f"{what} with a negative memo key {self._at()}")
        return key

    def _put(self, key: int) -> None:
        if not self.stack:
            raise Stop(f"memo PUT with an empty stack {self._at()}")
        if key not in self.memo and len(self.memo) >= self.limits.max_memo:
            raise LimitHit(f"memo limit of {self.limits.max_memo:,} entries reached {self._at()}")
        self.memo[key] = self.stack[-1]

    def _get(self, key: int) -> None:
        try:
            self.push(self.memo[key])
        except KeyError:
            raise Stop(f"memo GET of key {key}, which was never PUT, {self._at()}") from None

    def _call(self, callee: Any, args: Any, kind: str) -> Any:
        if isinstance(callee, Ref):
            if callee.full == "builtins.getattr":
                return self._getattr(args)
            problem = _allowlist.call_problem(callee.full, args)
            if problem:
                self.sink.problem(problem, critical=True)
            passed = _passed_through(callee.full, args)
            if passed is not _NOTHING:
                return passed  # numpy.object_(x) is x itself: a later BUILD acts on x
        return Obj(callee, args, kind)

    def _getattr(self, args: Any) -> Any:
        """``getattr(cls, name)``: the attribute as a global of its own when it is allowlisted (a classmethod
        such as ``zoneinfo.ZoneInfo._unpickle``, how the standard library pickles them); any other use runs a
        lookup that cannot be checked."""
        if isinstance(args, tuple) and len(args) == 2 and isinstance(args[0], Ref) and isinstance(args[1], str):
            full = f"{args[0].full}.{args[1]}"
            if full in _allowlist.SAFE_ATTRIBUTES:
                return Ref(*self.sink.add_global(args[0].full, args[1], self.proto).rsplit(".", 1))
        self.sink.problem(f"builtins.getattr called on {_describe(args)} {self._at()}: an attribute lookup that "
                          "cannot be checked", critical=True)
        return Obj(Ref("builtins", "getattr"), args, "REDUCE")

    # ---- the loop --------------------------------------------------------------------------------
    def run(self) -> Parsed:
        """Walk to the pickle's STOP. A :class:`ParseError` from an opcode carries ``completed``: how many
        opcodes were read in full before it."""
        src, limits = self.src, self.limits
        start = src.pos
        n = 0
        ops = self._ops
        max_ops, max_stack = limits.max_opcodes, limits.max_stack
        while True:
            buf, i = src.buf, src.i
            if i < len(buf):
                code = buf[i]
                src.i = i + 1
            else:
                code = src.byte()
            n += 1
            if not n & 0xFF:  # caps are checked every 256 opcodes (a stack grows by one item an opcode at most)
                if n > max_ops:
                    raise LimitHit(f"opcode limit of {max_ops:,} reached {self._at()}")
                if len(self.stack) + self.below > max_stack:
                    raise LimitHit(f"stack depth limit of {max_stack:,} reached {self._at()}")
                if not n & 0x3FFF and self.tick is not None:
                    self.tick()
            if code == 0x2E:  # STOP
                self._frame_check()
                if not self.stack:
                    raise Stop(f"STOP with an empty stack {self._at()}")
                value = self.stack[-1]
                if self.metastack:
                    self.sink.note(f"a pickle ends with {len(self.metastack)} unclosed MARK(s)"
                                   f"{' in ' + self.where if self.where else ''}")
                self.sink.max_protocol = max(self.sink.max_protocol, self.proto)
                return Parsed(value, n, self.proto, start, src.pos, self.callables)
            op = ops.get(code)
            if op is None:
                raise Stop(f"unknown opcode 0x{code:02x} {self._at()}")
            try:
                op(self)
            except ParseError as e:
                e.completed = n - 1
                raise
            end = self.frame_end
            if end is not None and src.base + src.i >= end:
                self._frame_check()

    def _frame_check(self) -> None:
        end = self.frame_end
        if end is None:
            return
        pos = self.src.pos
        if pos == end:
            self.frame_end = None
        elif pos > end:
            self.frame_end = None
            raise ParseError(f"an opcode crosses the end of its FRAME {self._at()} (frame ended at byte "
                             f"{end:,}): the C and Python unpicklers read this differently (P11)")

    # ---- opcodes ---------------------------------------------------------------------------------
    def op_mark(self):
        self.metastack.append(self.stack)
        self.below += len(self.stack) + 1
        self.stack = []

    def op_pop(self):
        if self.stack:
            self.stack.pop()
        else:
            self.pop_mark()

    def op_pop_mark(self):
        self.pop_mark()

    def op_dup(self):
        if not self.stack:
            raise Stop(f"DUP with an empty stack {self._at()}")
        self.push(self.stack[-1])

    def _number_line(self, what: str) -> bytes:
        """A number argument as the C unpickler reads it: up to the first NUL (``b"1\\x00junk"`` is 1;
        found in review)."""
        return self._line(what).split(b"\0", 1)[0]

    def op_float(self):
        line = self._number_line("FLOAT")
        try:
            self.push(float(line))
        except ValueError:
            raise ArgError(f"bad FLOAT {line[:40]!r} {self._at()}") from None

    def op_int(self):
        line = self._number_line("INT")
        if not line.strip() and self.src.line_len:
            return self.push(0)  # "I\\x00\\n": the C unpickler's strtol reads no digits and takes 0 (found in review)
        if line == b"00":
            return self.push(False)
        if line == b"01":
            return self.push(True)
        self.push(self._parse_int(line, "INT"))

    def _parse_int(self, line: bytes, what: str) -> Any:
        """INT/LONG as CPython reads them: ``int(line, 0)`` (``0x``, ``0o``, ``0b``, underscores, spaces);
        the C unpickler's ``strtol`` also takes ``010`` (octal)."""
        if self.src.line_len > 4000:
            return _BIG_INT
        for base in (0, 8, 10):
            try:
                return int(line, base)
            except ValueError:
                continue
        raise ArgError(f"bad {what} {line[:40]!r} {self._at()}")

    def op_long(self):
        line = self._line("LONG")
        if line.endswith(b"L"):
            line = line[:-1]
        line = line.split(b"\0", 1)[0]
        self.push(self._parse_int(line, "LONG"))

    def op_binint(self):
        self.push(struct.unpack("<i", self.src.read(4, "BININT"))[0])

    def op_binint1(self):
        self.stack.append(self._arg_byte())

    def op_binint2(self):
        self.stack.append(self._uint(2, "BININT2"))

    def op_none(self):
        self.push(None)

    def op_newtrue(self):
        self.push(True)

    def op_newfalse(self):
        self.push(False)

    def op_binfloat(self):
        self.push(struct.unpack(">d", self.src.read(8, "BINFLOAT"))[0])

    def op_long1(self):
        self._long(self.src.byte(), "LONG1")

    def op_long4(self):
        n = struct.unpack("<i", self.src.read(4, "LONG4"))[0]
        self._long(n, "LONG4")

    def _long(self, n: int, what: str):
        if n > 64:
            self.src.skip(n, what)
            return self.push(_BIG_INT)
        self.push(int.from_bytes(self.src.read(n, what), "little", signed=True))

    # strings
    def op_string(self):
        line = self._line("STRING")
        if self.src.line_len > KEEP_BYTES:
            return self.push(_BIG_STR)
        if len(line) >= 2 and line[0] == line[-1] and line[0] in b"\"'":
            try:
                raw = codecs.escape_decode(line[1:-1])[0]
            except ValueError:
                raise ArgError(f"bad STRING escape {self._at()}") from None
            return self.push(self._keep_str(raw, lambda b: b.decode("latin-1")))
        raise ArgError(f"the STRING argument must be quoted {self._at()}")

    def op_binstring(self):
        n = struct.unpack("<i", self.src.read(4, "BINSTRING"))[0]
        self.push(self._counted_str(n, "BINSTRING", lambda b: b.decode("latin-1")))

    def op_short_binstring(self):
        self.push(self._counted_str(self.src.byte(), "SHORT_BINSTRING", lambda b: b.decode("latin-1")))

    def op_unicode(self):
        line = self._line("UNICODE")
        if self.src.line_len > KEEP_BYTES:
            return self.push(_BIG_STR)
        self.push(self._keep_str(line, lambda b: b.decode("raw-unicode-escape")))

    def op_binunicode(self):
        self.push(self._counted_str(self._uint(4, "BINUNICODE"), "BINUNICODE", _utf8))

    def op_short_binunicode(self):
        src = self.src
        n = self._arg_byte()
        i = src.i
        raw = src.buf[i:i + n]
        if len(raw) == n:  # the common case: already buffered, no length check or copy needed
            src.i = i + n
            self.kept += n
            if self.kept <= self.limits.max_kept_bytes:
                try:
                    return self.stack.append(raw.decode("utf-8", "surrogatepass"))
                except UnicodeDecodeError as e:
                    raise ArgError(f"undecodable string {self._at()}: {e}") from None
            return self.stack.append(_BIG_STR)
        self.stack.append(self._counted_str(n, "SHORT_BINUNICODE", _utf8))

    def op_binunicode8(self):
        self.push(self._counted_str(self._uint(8, "BINUNICODE8"), "BINUNICODE8", _utf8))

    def op_binbytes(self):
        self.push(self._counted_bytes(self._uint(4, "BINBYTES"), "BINBYTES"))

    def op_short_binbytes(self):
        self.push(self._counted_bytes(self.src.byte(), "SHORT_BINBYTES"))

    def op_binbytes8(self):
        self.push(self._counted_bytes(self._uint(8, "BINBYTES8"), "BINBYTES8"))

    def op_bytearray8(self):
        self.push(self._counted_bytes(self._uint(8, "BYTEARRAY8"), "BYTEARRAY8", bytearray))

    def op_next_buffer(self):
        self.sink.problem("the pickle refers to an out-of-band buffer (NEXT_BUFFER): the loader supplies "
                          "data the file does not hold")
        self.push(Opaque("out-of-band buffer"))

    def op_readonly_buffer(self):
        if not self.stack:
            raise Stop(f"READONLY_BUFFER with an empty stack {self._at()}")

    # containers
    def op_empty_list(self):
        self.push(SList())

    def op_empty_dict(self):
        self.push(SDict())

    def op_empty_tuple(self):
        self.push(())

    def op_empty_set(self):
        self.push(SList())

    def op_list(self):
        items = self.pop_mark()
        lst = SList()
        for v in items[:KEEP_ITEMS]:
            lst.add(v)
        self.push(lst)

    def op_tuple(self):
        self.push(_tuple(self.pop_mark()))

    def op_tuple1(self):
        self.push((self.pop(),))

    def op_tuple2(self):
        b = self.pop()
        self.push((self.pop(), b))

    def op_tuple3(self):
        c = self.pop()
        b = self.pop()
        self.push((self.pop(), b, c))

    def op_frozenset(self):
        self.pop_mark()
        self.push(Opaque("frozenset"))

    def op_dict(self):
        d = SDict()
        d.put_pairs(self.pop_mark())
        self.push(d)

    def op_append(self):
        v = self.pop()
        self._extend([v])

    def op_appends(self):
        items = self.pop_mark()
        self._extend(items)

    def _extend(self, items: list) -> None:
        if not self.stack:
            raise Stop(f"APPEND(S) with nothing to append to {self._at()}")
        target = self.stack[-1]
        if isinstance(target, SList):
            for v in items[:KEEP_ITEMS]:
                target.add(v)

    def op_additems(self):
        items = self.pop_mark()
        self._extend(items)

    def op_setitem(self):
        v = self.pop()
        k = self.pop()
        if not self.stack:
            raise Stop(f"SETITEM with no dict {self._at()}")
        if isinstance(self.stack[-1], SDict):
            self.stack[-1].put(k, v)

    def op_setitems(self):
        items = self.pop_mark()
        if not self.stack:
            raise Stop(f"SETITEMS with no dict {self._at()}")
        d = self.stack[-1]
        if isinstance(d, SDict):
            d.put_pairs(items)

    # memo
    def op_put(self):
        self._put(self._memo_key(self._number_line("PUT"), "PUT"))

    def op_binput(self):
        self._put(self._arg_byte())

    def op_long_binput(self):
        self._put(self._uint(4, "LONG_BINPUT"))

    def op_memoize(self):
        memo = self.memo
        if self.stack and len(memo) < self.limits.max_memo:
            memo[len(memo)] = self.stack[-1]
        else:
            self._put(len(memo))

    def op_get(self):
        self._get(self._memo_key(self._number_line("GET"), "GET"))

    def op_binget(self):
        key = self._arg_byte()
        try:
            self.stack.append(self.memo[key])
        except KeyError:
            raise Stop(f"memo GET of key {key}, which was never PUT, {self._at()}") from None

    def op_long_binget(self):
        self._get(self._uint(4, "LONG_BINGET"))

    # globals and calls
    def op_global(self):
        self.push(self._line_global("GLOBAL"))

    def _line_global(self, how: str) -> Ref:
        module = self._line(f"{how} module")
        long_line = self.src.line_len > len(module)
        name = self._line(f"{how} name")
        if long_line or self.src.line_len > len(name):
            self.sink.problem(f"a {how} name longer than {KEEP_BYTES:,} bytes {self._at()}: it cannot be checked",
                              critical=True)
            self.callables += 1
            return Ref("<unresolved>", "<overlong name>")
        return self._global(_utf8_or_fail(self, module), _utf8_or_fail(self, name), how)

    def op_stack_global(self):
        name = self.pop()
        module = self.pop()
        self.push(self._global(module, name, "STACK_GLOBAL"))

    def op_inst(self):
        ref = self._line_global("INST")
        args = _tuple(self.pop_mark())
        self.push(self._call(ref, args, "INST"))

    def op_obj(self):
        items = self.pop_mark()
        if not items:
            raise Stop(f"OBJ with no class {self._at()}")
        self.push(self._call(items[0], _tuple(items[1:]), "OBJ"))

    def op_reduce(self):
        args = self.pop()
        func = self.pop()
        self.push(self._call(func, args, "REDUCE"))

    def op_newobj(self):
        args = self.pop()
        cls = self.pop()
        self.push(self._call(cls, args, "NEWOBJ"))

    def op_newobj_ex(self):
        self.pop()  # kwargs
        args = self.pop()
        cls = self.pop()
        self.push(self._call(cls, args, "NEWOBJ_EX"))

    def op_build(self):
        state = self.pop()
        if not self.stack:
            raise Stop(f"BUILD with no object {self._at()}")
        target = self.stack[-1]
        if isinstance(target, Ref):
            self.sink.problem(f"BUILD sets attributes on the global {target.full} itself (state injection into "
                              "a module-level object; P4)", critical=True, kind="state injection")
            return
        slots = state[1] if isinstance(state, tuple) and len(state) == 2 else None
        if isinstance(slots, SDict) and (slots.lossy or any(isinstance(k, str) and k.startswith("__") for k in slots)):
            self.sink.problem(f"BUILD sets {_names_of(slots)} on an object {self._at()}: it changes what the object "
                              "is (e.g. its __class__)", critical=True, kind="state injection")
        if isinstance(target, Obj):
            target.state = _merged_state(target.state, state)  # BUILD updates __dict__; a second BUILD adds to it
            if not self.joblib:
                return
            built = _built_class(target)
            if built == JOBLIB_WRAPPER:
                if not _without_init(target):
                    raise ParseError(f"a joblib NumpyArrayWrapper made by calling its class {self._at()}: its "
                                     "__init__ sets attributes the walker cannot see (joblib writes it with NEWOBJ)")
                self._joblib_array(target)
            elif built is None and JOBLIB_WRAPPER in self.sink.globals:
                raise ParseError(f"BUILD on an object of unknown class in a joblib file {self._at()}: whether "
                                 "array bytes follow it (and where they end) cannot be known")

    def op_ext(self, size: int):
        code = self._uint(size, f"EXT{size}")
        self.callables += 1
        self.sink.problem(f"extension-registry code {code} (EXT{size}): the object it loads depends on the "
                          "loading process's copyreg registry and cannot be checked")
        self.push(Ref("<extension registry>", str(code)))

    def op_persid(self):
        pid = self._line("PERSID")
        self._persistent(self._keep_str(pid, lambda b: b.decode("ascii")))

    def op_binpersid(self):
        self._persistent(self.pop())

    def _persistent(self, pid: Any) -> None:
        if self.persid != "torch":
            raise Stop(f"a persistent id (PERSID/BINPERSID) outside a torch checkpoint {self._at()}: an unpickler "
                       "without persistent_load stops here")
        self.callables += 1
        if isinstance(pid, tuple) and pid and pid[0] == "storage" and len(pid) >= 3:
            if isinstance(pid[2], str):
                self.sink.storage_keys.add(pid[2])
        elif isinstance(pid, tuple) and pid and pid[0] == "module" and len(pid) >= 2:
            self.sink.problem("a legacy torch persistent id of type 'module' (source code stored in the file)")
        else:
            self.sink.problem(f"a torch persistent id of unknown type {_describe(pid)}")
        self.push(Opaque("persistent object"))

    def op_proto(self):
        p = self.src.byte()
        if p > 5:
            raise Stop(f"unsupported pickle protocol {p} {self._at()}")
        self.proto = p

    def op_frame(self):
        n = self._uint(8, "FRAME")
        if self.frame_end is not None and self.src.pos - 9 < self.frame_end:
            raise ParseError(f"a FRAME starts before the previous frame ended {self._at()} (P11)")
        left = self.src.remaining()
        if left is not None and n > left:  # the C unpickler refuses it; the Python one (joblib's) reads on: so do we
            self.sink.problem(f"a FRAME {self._at()} declares {n:,} bytes but only {left:,} remain: the two "
                              "unpicklers read this file differently (P11)")
            n = left
        self.frame_end = self.src.pos + n if n else None

    # joblib arrays (NumpyArrayWrapper.read_array)
    def _joblib_array(self, wrapper: Obj) -> None:
        state = wrapper.state
        self.sink.joblib_arrays += 1
        if self.frame_end is not None and self.src.pos != self.frame_end:
            raise ParseError(f"a joblib array starts inside a FRAME {self._at()}: joblib reads it from the frame's end")
        self.frame_end = None
        if not isinstance(state, SDict):
            raise ParseError(f"a joblib NumpyArrayWrapper without a state dict {self._at()}")
        if state.lossy:
            raise ParseError(f"a joblib NumpyArrayWrapper whose state has too many keys to read {self._at()}")
        shape = state.get("shape")
        info = _dtype_info(state.get("dtype"))
        if not (isinstance(shape, tuple) and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                 for s in shape)):
            raise ParseError(f"a joblib array with an unreadable shape {_describe(shape)} {self._at()}")
        if info is None:
            raise ParseError(f"a joblib array with an unreadable dtype {self._at()}: where its data ends is unknown")
        itemsize, hasobject = info
        if hasobject:  # joblib reads object arrays with a plain pickle.load: no array bytes inside
            if self.nesting >= self.limits.max_nesting:
                raise LimitHit(f"nesting limit of {self.limits.max_nesting} pickles reached {self._at()}")
            inner = Walker(self.src, self.sink, self.limits, persid=None, nesting=self.nesting + 1,
                           tick=self.tick, where=f"{self.where} (joblib object array)".strip(), joblib=False)
            # what that pickle returns replaces the wrapper on the stack (it need not be an array)
            self.stack[-1] = inner.run().value
            return
        self.stack[-1] = Opaque("ndarray")  # the wrapper becomes the array, like joblib's load_build
        if state.get("numpy_array_alignment_bytes") is not None:
            pad = self.src.byte()
            self.src.skip(pad, "joblib array padding")
        count = 1
        for s in shape:
            count *= s
        self.src.skip(count * itemsize, "joblib array data")


_OPS: dict[int, Callable[[Walker], None]] = {}
for _code, _meth in {
    "(": "mark", "0": "pop", "1": "pop_mark", "2": "dup", "F": "float", "I": "int", "L": "long",
    "J": "binint", "K": "binint1", "M": "binint2", "N": "none", "G": "binfloat",
    "\x88": "newtrue", "\x89": "newfalse", "\x8a": "long1", "\x8b": "long4",
    "S": "string", "T": "binstring", "U": "short_binstring", "V": "unicode", "X": "binunicode",
    "\x8c": "short_binunicode", "\x8d": "binunicode8", "B": "binbytes", "C": "short_binbytes",
    "\x8e": "binbytes8", "\x96": "bytearray8", "\x97": "next_buffer", "\x98": "readonly_buffer",
    "]": "empty_list", "}": "empty_dict", ")": "empty_tuple", "\x8f": "empty_set", "l": "list", "t": "tuple",
    "\x85": "tuple1", "\x86": "tuple2", "\x87": "tuple3", "\x91": "frozenset", "d": "dict", "a": "append",
    "e": "appends", "\x90": "additems", "s": "setitem", "u": "setitems",
    "p": "put", "q": "binput", "r": "long_binput", "\x94": "memoize", "g": "get", "h": "binget", "j": "long_binget",
    "c": "global", "\x93": "stack_global", "i": "inst", "o": "obj", "R": "reduce", "\x81": "newobj",
    "\x92": "newobj_ex", "b": "build", "P": "persid", "Q": "binpersid", "\x80": "proto", "\x95": "frame",
}.items():
    _OPS[ord(_code)] = getattr(Walker, f"op_{_meth}")
_OPS[0x82] = lambda w: w.op_ext(1)
_OPS[0x83] = lambda w: w.op_ext(2)
_OPS[0x84] = lambda w: w.op_ext(4)
Walker._ops = _OPS  # type: ignore[attr-defined]


def _utf8(b: bytes) -> str:
    return b.decode("utf-8", "surrogatepass")


def _utf8_or_fail(w: Walker, b: bytes) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        raise ArgError(f"a GLOBAL/INST name that is not UTF-8 {w._at()}") from None


def _describe(v: Any) -> str:
    if isinstance(v, Ref):
        return f"global {v.full}"
    if isinstance(v, Obj):
        return f"the result of calling {v.callee_name or 'a computed callable'}"
    if isinstance(v, Opaque):
        return v.what
    if isinstance(v, (str, bytes)):
        return f"{type(v).__name__} {v[:60]!r}"
    return type(v).__name__


_NOTHING = object()
#: Constructors that can return their argument itself (``numpy.object_(x) is x``), so a BUILD after the
#: call may act on a global passed in (reviewer's P4 variant).
_IDENTITY_CALLS = frozenset({"numpy.object_"})
_CLASS_FIRST = frozenset({"copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__"})


def _passed_through(callee: str, args: Any) -> Any:
    """What an identity-like call returns when it returns one of its arguments, else ``_NOTHING``:
    ``numpy.object_(x)``, ``copyreg.__newobj__(numpy.object_, x)``, ``copyreg.__newobj_ex__(numpy.object_,
    (x,), {})``, ``copyreg._reconstructor(cls, numpy.object_, x)`` (``object_.__new__`` returns ``x``)."""
    if not isinstance(args, tuple):
        return _NOTHING
    if callee in _IDENTITY_CALLS and len(args) == 1:
        return args[0]
    if callee == "copyreg.__newobj__" and len(args) == 2 and _ref_name(args[0]) in _IDENTITY_CALLS:
        return args[1]
    if callee == "copyreg.__newobj_ex__" and len(args) == 3 and _ref_name(args[0]) in _IDENTITY_CALLS \
            and isinstance(args[1], tuple) and len(args[1]) == 1:
        return args[1][0]
    if callee == "copyreg._reconstructor" and len(args) == 3 and _ref_name(args[1]) in _IDENTITY_CALLS:
        return args[2]
    if callee in _NUMPY_SCALAR and len(args) == 2 and _is_object_dtype(args[0]):
        return args[1]  # numpy < 2 returned the object itself for an object dtype
    return _NOTHING


def _merged_state(old: Any, new: Any) -> Any:
    """An object's state after one more BUILD: dict states are merged (``__dict__.update``)."""
    if isinstance(old, SDict) and isinstance(new, SDict):
        merged = SDict(old)
        merged.lossy = old.lossy or new.lossy
        for k, v in new.items():
            merged.put(k, v)
        return merged
    return new


def _names_of(d: SDict) -> str:
    return ", ".join(sorted(repr(k) for k in d if isinstance(k, str))[:3])


_NUMPY_SCALAR = frozenset({"numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar"})


def _is_object_dtype(v: Any) -> bool:
    return (isinstance(v, Obj) and v.callee_name in _allowlist.NUMPY_DTYPE and isinstance(v.args, tuple)
            and bool(v.args) and isinstance(v.args[0], str) and v.args[0].lstrip("<>|=").startswith("O"))


def _ref_name(v: Any) -> str | None:
    return v.full if isinstance(v, Ref) else None


def _without_init(obj: Obj) -> bool:
    """Whether the object was made without running ``__init__``: NEWOBJ / NEWOBJ_EX, or ``copyreg``'s
    ``__newobj__``/``__newobj_ex__``/``_reconstructor(cls, object, None)``."""
    if obj.kind in ("NEWOBJ", "NEWOBJ_EX"):
        return True
    if obj.callee_name in ("copyreg.__newobj__", "copyreg.__newobj_ex__"):
        return True
    return (obj.callee_name == "copyreg._reconstructor" and isinstance(obj.args, tuple) and len(obj.args) == 3
            and _ref_name(obj.args[1]) == "builtins.object")


def _built_class(obj: Obj) -> str | None:
    """The class of the object a call builds: the callee itself (``NEWOBJ``, ``OBJ``, a class called by
    ``REDUCE``), or the class ``copyreg`` helpers are given; ``None`` if the callee is computed."""
    name = obj.callee_name
    if name in _CLASS_FIRST and isinstance(obj.args, tuple) and obj.args:
        return _ref_name(obj.args[0])
    return name


_DTYPE_SPEC = re.compile(r"([biufcOSUVamM?BhHIlLqQpPedgFDG])([0-9]*)(\[[A-Za-z0-9]+\])?")
_FLEXIBLE = frozenset("SUVa")
_HASOBJECT_FLAG = 0x01  # NPY_ITEM_HASOBJECT (= NPY_ITEM_REFCOUNT)


def _as_index(v: Any) -> int | None:
    """An int as ``operator.index`` reads it (bools count); ``None`` for anything else."""
    return int(v) if isinstance(v, int) else None


def _spec_itemsize(spec: str) -> int | None:
    """numpy's own itemsize for a plain type string (``'f8'``, ``'l'``, ``'g'``: the sizes of this platform,
    as joblib on this machine reads them). The string was checked against :data:`_DTYPE_SPEC`; building a
    dtype from a type string runs no code from the file."""
    import numpy as np

    try:
        return int(np.dtype(spec).itemsize)
    except (TypeError, ValueError):
        return None


def _dtype_info(dt: Any) -> tuple[int, bool] | None:
    """(itemsize, has objects) of a pickled ``numpy.dtype(spec, align, copy)`` call with its BUILD state
    ``(3, byteorder, subarray, names, fields, elsize, alignment, flags)``, or ``None`` if it cannot be read
    for certain (then the caller fails closed).

    As numpy's ``dtype.__setstate__`` (found in two reviews, several ways to make joblib and the walker
    disagree): the state's elsize counts only for the flexible kinds S, U and V (read as an index: ``True``
    is 1), the only kinds numpy gives fields or a subarray; the has-objects bit comes from the state's
    flags. An object dtype whose flags clear that bit would make joblib read raw bytes as object pointers,
    so it is unreadable; other sizes are numpy's own on this platform.
    """
    if not (isinstance(dt, Obj) and dt.callee_name in _allowlist.NUMPY_DTYPE and isinstance(dt.args, tuple)
            and dt.args and isinstance(dt.args[0], str)):
        return None
    m = _DTYPE_SPEC.fullmatch(dt.args[0])
    if m is None:
        return None
    kind = m.group(1)
    state = dt.state if isinstance(dt.state, tuple) else ()
    subarray = state[2] if len(state) > 2 else None
    fields = state[4] if len(state) > 4 else None
    if (subarray is not None or fields is not None) and kind not in _FLEXIBLE:
        return None  # numpy never writes this; what it would make of it is not worth guessing
    parts: list[tuple[int, bool]] = []
    if subarray is not None:  # (base dtype, shape)
        base = _dtype_info(subarray[0]) if isinstance(subarray, tuple) and len(subarray) == 2 else None
        if base is None:
            return None
        parts.append(base)
    if fields is not None:
        if not isinstance(fields, SDict) or fields.lossy:
            return None
        for v in fields.values():
            sub = _dtype_info(v[0]) if isinstance(v, tuple) and v else None
            if sub is None:
                return None
            parts.append(sub)
    hasobject = kind == "O" or any(p[1] for p in parts)
    if len(state) > 7:
        flags = _as_index(state[7])
        if flags is None:
            return None
        if hasobject and not flags & _HASOBJECT_FLAG:
            return None  # objects stored as raw pointers: joblib would read memory addresses from the file
        hasobject = hasobject or bool(flags & _HASOBJECT_FLAG)
    if kind in _FLEXIBLE:
        elsize = _as_index(state[5]) if len(state) > 5 else -1
        if elsize is None:
            return None
        if elsize > 0:
            return elsize, hasobject
        if parts:
            return None
    size = _spec_itemsize(dt.args[0])
    return None if size is None else (size, hasobject)
