"""Dataset provenance: content fingerprints and Ed25519-signed manifests (pure; no IPython).

``fingerprint(obj)`` is a blake2b-256 hash over the exact bytes of a dataset, streamed in chunks:

- numpy arrays: dtype, shape and the bytes of a C-contiguous view (F-ordered or strided arrays are
  copied one block of rows at a time, so memory stays bounded);
- pandas: for each column its name, dtype and values (numeric columns as bytes, others value by
  value); the index is not part of the content;
- torch tensors: a detached CPU contiguous view/copy, one block of rows at a time; a tensor and the
  numpy array it was made from hash the same;
- Python scalars and lists: a typed, length-prefixed encoding of each value.

Objects are only read: never copied in full, never changed, never ``repr``'d; iterators and
generators are refused rather than consumed. Signing uses the ``cryptography`` package, imported
inside the functions that need it.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

HASH_NAME = "blake2b-256"
MANIFEST_FORMAT = "mlsec-manifest/1"
CHUNK_BYTES = 4 << 20
_MAGIC = b"mlsec-fingerprint/1\0"


class Unsupported(ValueError):
    """The object cannot be fingerprinted without consuming, converting or repr'ing it."""


@dataclass(frozen=True)
class Part:
    """What one hashed object was: its role (X, y), kind, shape and dtype."""

    role: str
    kind: str
    shape: tuple[int, ...] | None
    dtype: str

    def describe(self) -> str:
        shape = "" if not self.shape else "×".join(f"{d:,}" for d in self.shape) + " "
        return f"{self.role} ({shape}{self.dtype})"

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "kind": self.kind, "shape": None if self.shape is None else list(self.shape),
                "dtype": self.dtype}


@dataclass(frozen=True)
class Fingerprint:
    sha: str
    n_bytes: int
    seconds: float
    parts: tuple[Part, ...] = field(default_factory=tuple)

    @property
    def roles(self) -> str:
        return ", ".join(p.role for p in self.parts)


class Fingerprinter:
    """One streamed hash over several objects. ``check`` is called between chunks (budget, cancel).

    ``n_bytes`` counts the content bytes hashed so far, so an interrupted run can say how far it got.
    """

    def __init__(self, check: Callable[[], None] | None = None, chunk_bytes: int = CHUNK_BYTES) -> None:
        self._h = hashlib.blake2b(digest_size=32)
        self._h.update(_MAGIC)
        self._check = check or (lambda: None)
        self.chunk = max(1, int(chunk_bytes))
        self.n_bytes = 0
        self.parts: list[Part] = []

    # -- feeding ------------------------------------------------------------------------------------
    def _raw(self, data: Any) -> None:
        self._h.update(data)

    def _content(self, data: Any, n: int) -> None:
        self._h.update(data)
        self.n_bytes += n

    def _header(self, **fields: Any) -> None:
        blob = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
        self._raw(struct.pack("<Q", len(blob)))
        self._raw(blob)

    def add(self, obj: Any, role: str) -> Part:
        try:
            return self._add(obj, role)
        except Unsupported as exc:
            text = str(exc)
            raise Unsupported(f"{role}: {text}" if text.startswith("it ") else text) from None

    def _add(self, obj: Any, role: str) -> Part:
        tp = type(obj)
        module = tp.__module__ or ""
        try:
            mro = {c.__name__ for c in tp.__mro__}
        except Exception:
            mro = set()
        if isinstance(obj, np.ndarray):
            part = self._array(np.asarray(obj), role)
        elif module.startswith("pandas") and tp.__name__ == "DataFrame":
            part = self._frame(obj, role)
        elif module.startswith("pandas") and tp.__name__ == "Series":
            part = self._series_part(obj, role)
        elif module.startswith("torch") and "Tensor" in mro:
            part = self._tensor(obj, role)
        elif module.startswith("scipy.sparse"):
            part = self._sparse(obj, role)
        elif isinstance(obj, (list, tuple)):
            self._header(role=role, kind="list", n=len(obj))
            self._values(obj)
            part = Part(role, "list", (len(obj),), "object")
        elif obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, np.generic)):
            self._header(role=role, kind="scalar")
            self._values([obj])
            part = Part(role, "scalar", None, type(obj).__name__)
        elif callable(getattr(tp, "__next__", None)) or "Generator" in mro:
            raise Unsupported(f"{role} is a {tp.__name__} (an iterator); it is not checked, because "
                              "hashing it would consume it")
        elif module.startswith("dask"):
            raise Unsupported(f"{role} is a lazy {tp.__name__}; it is not checked, because hashing it would "
                              "compute it (call .compute() first)")
        elif callable(getattr(tp, "__array__", None)):
            try:
                arr = np.asarray(obj)
            except Exception as exc:
                raise Unsupported(f"{role} is a {tp.__name__} that numpy cannot read ({type(exc).__name__})") from None
            part = self._array(arr, role)
        else:
            raise Unsupported(f"{role} is a {tp.__name__}; only arrays, DataFrames, tensors, sparse matrices, "
                              "lists and scalars are fingerprinted")
        self.parts.append(part)
        return part

    def result(self, started: float) -> Fingerprint:
        return Fingerprint(self._h.hexdigest(), self.n_bytes, time.perf_counter() - started, tuple(self.parts))

    # -- numpy --------------------------------------------------------------------------------------
    def _array(self, a: np.ndarray, role: str, kind: str = "array") -> Part:
        dtype = str(a.dtype.descr) if a.dtype.names else a.dtype.str
        self._header(role=role, kind="array", dtype=dtype, shape=list(a.shape))
        self._array_bytes(a)
        return Part(role, kind, tuple(int(d) for d in a.shape), str(a.dtype))

    def _array_bytes(self, a: np.ndarray) -> None:
        if a.dtype.hasobject:
            self._values(a.flat, total=a.size)
            return
        if a.size == 0:
            return
        if a.flags.c_contiguous:
            flat = a.reshape(-1).view(np.uint8)
            for i in range(0, flat.size, self.chunk):
                self._check()
                piece = flat[i:i + self.chunk]
                self._content(piece, piece.size)
            return
        rows = a.reshape(1, *a.shape) if a.ndim == 0 else a
        row_bytes = max(1, rows[:1].nbytes)
        step = max(1, self.chunk // row_bytes)
        for i in range(0, rows.shape[0], step):
            self._check()
            block = np.ascontiguousarray(rows[i:i + step])  # a copy of this block only
            self._content(block.reshape(-1).view(np.uint8), block.nbytes)

    # -- python values ------------------------------------------------------------------------------
    def _values(self, values: Iterable[Any], total: int | None = None) -> None:
        buf = bytearray()
        for k, v in enumerate(values):
            _encode(v, buf)
            if len(buf) >= self.chunk or (k & 0xFFFF) == 0xFFFF:
                self._check()
                self._content(bytes(buf), len(buf))
                buf.clear()
        if buf:
            self._content(bytes(buf), len(buf))

    # -- pandas -------------------------------------------------------------------------------------
    def _frame(self, df: Any, role: str) -> Part:
        n_rows, n_cols = (int(d) for d in df.shape)
        self._header(role=role, kind="frame", shape=[n_rows, n_cols])
        names = bytearray()
        for name in list(df.columns):
            _encode(name, names)
        self._content(bytes(names), len(names))
        for j in range(n_cols):
            self._check()
            self._column(df.iloc[:, j])
        return Part(role, "frame", (n_rows, n_cols), "mixed" if n_cols and len({str(t) for t in df.dtypes}) > 1
                    else (str(df.dtypes.iloc[0]) if n_cols else "none"))

    def _series_part(self, s: Any, role: str) -> Part:
        self._header(role=role, kind="series", shape=[int(len(s))])
        buf = bytearray()
        _encode(s.name, buf)
        self._content(bytes(buf), len(buf))
        self._column(s)
        return Part(role, "series", (int(len(s)),), str(s.dtype))

    def _column(self, s: Any) -> None:
        dtype = s.dtype
        self._header(dtype=str(dtype))
        if isinstance(dtype, np.dtype) and not dtype.hasobject:
            self._array_bytes(s.to_numpy(copy=False))
        elif str(dtype) == "category":
            cat = s.array
            self._array_bytes(np.asarray(cat.codes))
            self._values(list(cat.categories))
        else:  # object columns and extension arrays (Int64, string, arrow...): value by value
            self._values(s.array, total=len(s))

    # -- torch --------------------------------------------------------------------------------------
    def _tensor(self, t: Any, role: str) -> Part:
        import torch

        if type(t).__torch_dispatch__ is not torch.Tensor.__torch_dispatch__:  # FakeTensor, DTensor... (B24)
            raise Unsupported(f"{role} is a {type(t).__module__}.{type(t).__qualname__} tensor; pass a plain "
                              f"tensor to fingerprint it")
        d = t.detach()
        if type(d) not in (torch.Tensor, torch.nn.Parameter):  # a plain subclass (torchvision's Image...)
            d = d.as_subclass(torch.Tensor)
        if getattr(d, "is_nested", False):
            raise Unsupported(f"{role} is a nested tensor; convert its parts to plain tensors to fingerprint it")
        if d.is_meta:
            raise Unsupported(f"{role} is a meta tensor (it has no data)")
        if d.layout != torch.strided:
            raise Unsupported(f"{role} is a {d.layout} tensor; convert it with .to_dense() to fingerprint it")
        try:
            dtype = torch.empty(0, dtype=d.dtype).numpy().dtype.str  # same as the numpy array it mirrors
        except Exception:
            dtype = str(d.dtype)
        shape = [int(s) for s in d.shape]
        self._header(role=role, kind="array", dtype=dtype, shape=shape)
        if d.numel():
            rows = d.reshape(1) if d.dim() == 0 else d
            row_bytes = max(1, (rows[:1].numel()) * rows.element_size())
            step = max(1, self.chunk // row_bytes)
            for i in range(0, rows.shape[0], step):
                self._check()
                block = rows[i:i + step].to("cpu").contiguous()  # a view when already CPU + contiguous
                raw = block.reshape(-1).view(torch.uint8).numpy()
                self._content(raw, raw.size)
        return Part(role, "tensor", tuple(shape), str(d.dtype).replace("torch.", ""))

    # -- scipy.sparse -------------------------------------------------------------------------------
    def _sparse(self, m: Any, role: str) -> Part:
        fmt = str(getattr(m, "format", type(m).__name__))
        shape = [int(s) for s in m.shape]
        self._header(role=role, kind="sparse", format=fmt, shape=shape, dtype=np.dtype(m.dtype).str)
        for attr in ("data", "indices", "indptr", "row", "col", "coords", "offsets"):
            value = getattr(m, attr, None)
            if isinstance(value, np.ndarray):
                self._header(attr=attr, dtype=value.dtype.str, shape=list(value.shape))
                self._array_bytes(value)
            elif isinstance(value, tuple) and all(isinstance(v, np.ndarray) for v in value):
                for k, v in enumerate(value):
                    self._header(attr=f"{attr}{k}", dtype=v.dtype.str, shape=list(v.shape))
                    self._array_bytes(v)
        return Part(role, "sparse", tuple(shape), str(m.dtype))


def _encode(v: Any, buf: bytearray) -> None:
    """A typed, length-prefixed, repr-free encoding of one Python value."""
    tp = type(v)
    if v is None:
        buf += b"N"
    elif tp is bool or tp is np.bool_:
        buf += b"?1" if v else b"?0"
    elif isinstance(v, int) and not isinstance(v, bool):
        n = int(v)
        raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
        buf += b"i" + struct.pack("<I", len(raw)) + raw
    elif isinstance(v, float):
        buf += b"f" + struct.pack("<d", v)
    elif isinstance(v, complex):
        buf += b"c" + struct.pack("<dd", v.real, v.imag)
    elif isinstance(v, str):
        raw = v.encode("utf-8", "surrogatepass")
        buf += b"s" + struct.pack("<Q", len(raw)) + raw
    elif isinstance(v, (bytes, bytearray, memoryview)):
        raw = bytes(v)
        buf += b"b" + struct.pack("<Q", len(raw)) + raw
    elif isinstance(v, np.ndarray) and not v.dtype.hasobject:  # e.g. a list of images
        head = json.dumps([v.dtype.str, list(v.shape)]).encode()
        buf += b"a" + struct.pack("<H", len(head)) + head + np.ascontiguousarray(v).tobytes()
    elif isinstance(v, np.generic):
        arr = np.asarray(v)
        if arr.dtype.hasobject:
            raise Unsupported("an object scalar cannot be fingerprinted")
        tag = arr.dtype.str.encode()
        buf += b"g" + struct.pack("<H", len(tag)) + tag + arr.tobytes()
    elif isinstance(v, (tuple, list)):
        buf += (b"t" if isinstance(v, tuple) else b"l") + struct.pack("<Q", len(v))
        for item in v:
            _encode(item, buf)
    elif tp.__name__ in ("NAType", "NaTType") and (tp.__module__ or "").startswith("pandas"):
        buf += b"A" if tp.__name__ == "NAType" else b"T"
    elif isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
        iso = v.isoformat().encode()
        nanos = getattr(v, "nanosecond", 0)
        buf += b"d" + struct.pack("<HI", len(iso), int(nanos or 0)) + iso
    elif isinstance(v, _dt.timedelta):
        buf += b"D" + struct.pack("<qqq", v.days, v.seconds, v.microseconds)
    else:
        raise Unsupported(f"it holds {tp.__name__} values, which cannot be fingerprinted without repr()")


def fingerprint_data(X: Any, y: Any = None, *, check: Callable[[], None] | None = None,
                     roles: tuple[str, str] = ("X", "y")) -> Fingerprint:
    """The fingerprint of features ``X`` and (if given) labels ``y`` together.

    Raises :class:`Unsupported` for objects that cannot be read without consuming or repr'ing
    them; exceptions from ``check`` (time budget, cancel) pass through.
    """
    started = time.perf_counter()
    fp = Fingerprinter(check)
    fp.add(X, roles[0])
    if y is not None:
        fp.add(y, roles[1])
    return fp.result(started)


def fingerprint(obj: Any) -> str:
    """Hex blake2b-256 fingerprint of ``obj``'s exact content (equals ``fingerprint_data(obj).sha``)."""
    return fingerprint_data(obj).sha


# --------------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileHash:
    path: str
    size: int
    sha256: str | None  # None when the time ran out before the end of the file
    hashed_bytes: int
    seconds: float


def hash_file(path: str | os.PathLike[str], *, deadline: float | None = None,
              chunk_bytes: int = 1 << 20) -> FileHash:
    """sha256 of a regular file, streamed; stops (``sha256=None``) when ``time.monotonic()`` passes
    ``deadline``. Raises ``OSError`` when the file cannot be read."""
    started = time.perf_counter()
    h = hashlib.sha256()
    done = 0
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        while True:
            if deadline is not None and time.monotonic() > deadline:
                return FileHash(str(path), size, None, done, time.perf_counter() - started)
            block = fh.read(chunk_bytes)
            if not block:
                break
            h.update(block)
            done += len(block)
    return FileHash(str(path), size, h.hexdigest(), done, time.perf_counter() - started)


# --------------------------------------------------------------------------------------------------
# keys and signed manifests
# --------------------------------------------------------------------------------------------------
class MissingCryptography(ImportError):
    pass


class KeyFileError(ValueError):
    """A key file that cannot be used."""


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise MissingCryptography("signing needs the cryptography package: pip install cryptography") from None
    return serialization, ed25519


def public_key_id(raw_public: bytes) -> str:
    """A short fingerprint of a raw Ed25519 public key: first 16 hex digits of its sha256."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


def _raw_public(private_key: Any) -> bytes:
    serialization, _ = _crypto()
    return private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_or_create_key(path: str | os.PathLike[str], *, create: bool = True) -> tuple[Any, bool]:
    """``(private_key, created)``. A missing key file is created with mode 0600 when ``create``;
    an existing one is never overwritten. Raises ``KeyFileError`` for unusable key files."""
    serialization, ed25519 = _crypto()
    path = Path(path)
    if path.exists():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except TypeError:
            raise KeyFileError(f"{path} is encrypted; use an unencrypted Ed25519 key file") from None
        except (ValueError, OSError) as exc:
            raise KeyFileError(f"{path} is not a readable PEM private key ({exc})") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise KeyFileError(f"{path} holds a {type(key).__name__}; an Ed25519 key is needed")
        return key, False
    if not create:
        raise KeyFileError(f"key file {path} not found")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never overwrite
    except FileExistsError:  # created meanwhile by someone else: use theirs
        return load_or_create_key(path, create=False)[0], False
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.chmod(path, 0o600)
    return key, True


def _canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def build_payload(fp: Fingerprint, *, name: str, labels: str | None = None) -> dict[str, Any]:
    from . import __version__

    return {
        "name": name, "labels": labels, "hash": HASH_NAME, "sha": fp.sha, "n_bytes": fp.n_bytes,
        "parts": [p.to_dict() for p in fp.parts],
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "library": f"mlsec-jupyter {__version__}",
    }


def sign_manifest(payload: dict[str, Any], private_key: Any) -> dict[str, Any]:
    """A signed manifest: the payload plus the signer's public key, signed over canonical JSON."""
    raw = _raw_public(private_key)
    body = {**payload, "public_key": base64.b64encode(raw).decode(), "key_id": public_key_id(raw)}
    signature = private_key.sign(_canonical(body))
    return {"format": MANIFEST_FORMAT, "payload": body, "signature": base64.b64encode(signature).decode()}


def write_manifest(manifest: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write atomically (temp file + rename) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def sign_data(X: Any, y: Any = None, *, name: str, labels: str | None = None,
              private_key: Any) -> tuple[dict[str, Any], Fingerprint]:
    fp = fingerprint_data(X, y)
    return sign_manifest(build_payload(fp, name=name, labels=labels), private_key), fp


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`verify_manifest`. ``status`` is one of ``verified``, ``mismatch``,
    ``bad_signature``, ``untrusted_key``, ``unreadable`` (the manifest) or ``unsupported`` (the data)."""

    status: str
    message: str
    key_id: str = ""
    expected_sha: str = ""
    actual_sha: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "verified"


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a manifest file; raises ``ValueError`` with a one-line reason when it is unusable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path} is not an {MANIFEST_FORMAT} manifest")
    payload, sig = manifest.get("payload"), manifest.get("signature")
    if not isinstance(payload, dict) or not isinstance(sig, str) or not isinstance(payload.get("sha"), str) \
            or not isinstance(payload.get("public_key"), str):
        raise ValueError(f"{path} lacks a payload, sha, public key or signature")
    return manifest


def verify_manifest(manifest: dict[str, Any] | str | os.PathLike[str], X: Any, y: Any = None, *,
                    trusted_public_key: bytes | None = None) -> Verdict:
    """Check the manifest's signature, then whether ``X`` (and ``y``) still hash to its ``sha``.

    The signature is checked against the public key embedded in the manifest; pass
    ``trusted_public_key`` (raw 32 bytes) to also require that it was signed by that key.
    """
    _, ed25519 = _crypto()
    from cryptography.exceptions import InvalidSignature

    if not isinstance(manifest, dict):
        try:
            manifest = read_manifest(manifest)
        except ValueError as exc:
            return Verdict("unreadable", f"manifest unreadable: {exc}")
    payload = manifest.get("payload")
    try:
        raw_pub = base64.b64decode(payload["public_key"], validate=True)
        signature = base64.b64decode(manifest["signature"], validate=True)
        public = ed25519.Ed25519PublicKey.from_public_bytes(raw_pub)
    except Exception as exc:  # malformed base64 / key length / missing fields
        return Verdict("unreadable", f"manifest unreadable: bad key or signature encoding ({type(exc).__name__})")
    key_id = public_key_id(raw_pub)
    try:
        public.verify(signature, _canonical(payload))
    except InvalidSignature:
        return Verdict("bad_signature", f"bad signature: the manifest was altered after signing, or not signed "
                                        f"by key {key_id}", key_id=key_id, expected_sha=str(payload.get("sha")))
    if trusted_public_key is not None and bytes(trusted_public_key) != raw_pub:
        return Verdict("untrusted_key", f"untrusted key: signed by {key_id}, not by the trusted key "
                                        f"{public_key_id(bytes(trusted_public_key))}", key_id=key_id)
    expected = payload["sha"]
    parts = payload.get("parts") or []
    if payload.get("hash", HASH_NAME) != HASH_NAME:
        return Verdict("unreadable", f"manifest unreadable: unknown hash {payload.get('hash')!s:.40}")
    if len(parts) == 2 and y is None:
        return Verdict("mismatch", f"hash mismatch: the manifest covers {payload.get('name')} and labels "
                                   f"{payload.get('labels')}; pass the labels too", key_id=key_id,
                       expected_sha=expected)
    try:
        fp = fingerprint_data(X, y)
    except Unsupported as exc:
        return Verdict("unsupported", f"cannot fingerprint the data: {exc}", key_id=key_id)
    if fp.sha != expected:
        diffs = []
        for old, new in zip(parts, fp.parts):
            if isinstance(old, dict) and (old.get("shape") != (None if new.shape is None else list(new.shape))
                                          or old.get("dtype") != new.dtype):
                diffs.append(f"{new.role} was {_shape_text(old.get('shape'))} {old.get('dtype')}, now "
                             f"{_shape_text(new.shape)} {new.dtype}")
        if len(parts) != len(fp.parts):
            diffs.append(f"the manifest covers {len(parts)} object(s), {len(fp.parts)} given")
        detail = f" ({'; '.join(diffs)})" if diffs else ""
        return Verdict("mismatch", f"hash mismatch: data changed since signing{detail}", key_id=key_id,
                       expected_sha=expected, actual_sha=fp.sha)
    return Verdict("verified", f"verified: content matches sha {expected[:16]}… signed by key {key_id} "
                               f"on {payload.get('created', '?')}", key_id=key_id, expected_sha=expected,
                   actual_sha=fp.sha)


def _shape_text(shape: Any) -> str:
    return "×".join(str(d) for d in shape) if shape else "scalar"
