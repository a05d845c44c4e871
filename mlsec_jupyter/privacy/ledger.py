"""A privacy ledger per data set: every DP training or DP release made on it, composed, persisted.

::

    from mlsec_jupyter.privacy.ledger import Ledger
    ledger = Ledger(".mlsec/privacy")
    ledger.set_budget(key, epsilon=3.0, delta=1e-5)
    ledger.record(key, run_id="opacus-7f3a…", history=[(1.1, 0.004, 2000)], label="train cell 5")
    ledger.spent(key, delta=1e-5)                 # tight ε of everything recorded on ``key``
    ledger.would_exceed(key, [(1.1, 0.004, 500)])  # (ε after, budget ε) or None

What it records
---------------
``key`` names a data set (a content fingerprint from :func:`mlsec_jupyter.provenance.fingerprint`;
any string of letters, digits, ``.``, ``_``, ``-`` works). Each *release* on it is one entry,
identified by ``run_id``, holding the Opacus-style history ``[(noise_multiplier, sample_rate,
steps), …]`` of that release. Recording the same ``run_id`` again **replaces** its history: an
Opacus accountant reports its *whole* history every time a training cell is re-run, so adding it
again would count the first epochs twice. A new ``run_id`` (a new accountant) **composes** with
the others. What was spent is ``epsilon_of_history`` (:mod:`.accounting`, tight PLD accountant) of
the concatenation of all entries: sequential composition of adaptive mechanisms, which is how
Opacus composes its own history, so several trainings on the same rows are accounted exactly like
one longer training with the same segments.

File format
-----------
One JSON file per key, ``<directory>/<key>.json`` (never pickle; S5 in notes/reliability.md)::

    {"format": "mlsec-privacy-ledger", "version": 1, "key": "<key>",
     "budget": {"epsilon": 3.0, "delta": 1e-05} | null,
     "entries": [{"run_id": "…", "history": [[1.1, 0.004, 2000]], "label": "…", "source": "…",
                  "time": 1712345678.123, "delta_hint": 1e-05 | null}]}

Writes and locking
------------------
Every change is a read-modify-write under an exclusive ``fcntl.flock`` on ``<directory>/ledger.lock``
(one lock for the directory: changes are rare and tiny, and one lock cannot deadlock), so two kernels
recording at once lose nothing. Acquiring the lock gives up after :data:`LOCK_TIMEOUT` seconds with a
:class:`LedgerError` rather than hang a cell (a lock held by a killed process is released by the
kernel at once). The new content is written to a fresh temp file in the same directory (created
``O_EXCL``, mode 0600), ``fsync``-ed, then ``rename``-d over the old file and the directory
``fsync``-ed: POSIX ``rename`` is atomic, so a reader, or a process restarted after ``kill -9``,
sees either the old or the new file, never a torn one (reliability L9); at most the record in
flight is lost. A temp file left by a killed writer is removed by the next writer (under the lock
no other writer can own one). Reads do not lock: atomic replacement makes them consistent.

Files are opened relative to a directory descriptor opened with ``O_NOFOLLOW | O_DIRECTORY``, and
every file with ``O_NOFOLLOW``: a symlinked ledger directory, a symlinked ``.mlsec`` above it, or a
symlinked ledger or lock file is refused with a :class:`LedgerError` instead of followed (S5).
Directories are created 0700, files 0600. Other components above are trusted (a home or temp
directory may legitimately be a symlink, e.g. ``/tmp`` on macOS).

Corrupt files
-------------
A ledger file that is not valid JSON, has the wrong shape, an unknown ``version`` or invalid values
(a hand edit, a disk error; ``kill -9`` cannot cause it, see above) raises :class:`LedgerError`
naming the file and what to do. It is **not** silently recovered: treating a lost record as
"nothing spent" would *under*-state ε, the unsafe direction for a privacy budget. Reads
(:meth:`Ledger.spent`, :meth:`Ledger.budget`, …) and writes both refuse; a corrupt file is never
overwritten. :meth:`Ledger.keys` still lists it and :meth:`Ledger.forget` still deletes it, so the
user can fix or remove the file and carry on.

This module imports only the standard library; :mod:`.accounting` (numpy) loads on the first
:meth:`Ledger.spent`.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import re
import secrets
import stat
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["DEFAULT_DIRECTORY", "FORMAT", "VERSION", "Entry", "Ledger", "LedgerError"]

#: Where the extension keeps ledgers, relative to the notebook's folder.
DEFAULT_DIRECTORY = os.path.join(".mlsec", "privacy")
FORMAT = "mlsec-privacy-ledger"
VERSION = 1
LOCK_FILE = "ledger.lock"
#: Seconds to wait for another kernel's write before giving up.
LOCK_TIMEOUT = 10.0
_KEY_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
_SUFFIX = ".json"
_TMP_SUFFIX = ".tmp"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIR_FD = os.open in os.supports_dir_fd and os.rename in os.supports_dir_fd and os.unlink in os.supports_dir_fd

Segment = tuple[float, float, int]


class LedgerError(RuntimeError):
    """A ledger file or directory that cannot be used safely (corrupt, symlinked, locked)."""


@dataclass(frozen=True)
class Entry:
    """One DP training or release recorded on a data set."""

    run_id: str
    history: list[Segment] = field(default_factory=list)
    label: str = ""
    source: str = ""
    time: float = 0.0
    delta_hint: float | None = None

    @property
    def steps(self) -> int:
        return sum(s for _, _, s in self.history)

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "history": [list(s) for s in self.history], "label": self.label,
                "source": self.source, "time": self.time, "delta_hint": self.delta_hint}


# -- validation -------------------------------------------------------------------------------------
def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(float(value)):
        raise ValueError(f"{name} must be a real number, found {type(value).__name__} {value!r}.")
    return float(value)


def _check_sigma(value: object, name: str) -> float:
    x = _real(name, value)
    if not 0 < x < math.inf:
        raise ValueError(f"{name} must be a finite number > 0, found {x!r} (the noise multiplier σ).")
    return x


def _check_rate(value: object, name: str) -> float:
    x = _real(name, value)
    if not 0 < x <= 1:
        raise ValueError(f"{name} must be in (0, 1], found {x!r}; use batch_size / dataset_size.")
    return x


def _check_steps(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (Integral, Real)):
        raise ValueError(f"{name} must be a whole number >= 0, found {type(value).__name__} {value!r}.")
    x = float(value)
    if math.isnan(x) or x < 0 or not x.is_integer():
        raise ValueError(f"{name} must be a whole number >= 0, found {value!r}.")
    return int(x)


def _check_delta(value: object, name: str = "delta") -> float:
    x = _real(name, value)
    if not 0 < x < 1:
        raise ValueError(f"{name} must be in (0, 1), found {x!r}; a common choice is below 1 / dataset_size.")
    return x


def _check_epsilon(value: object, name: str = "epsilon") -> float:
    x = _real(name, value)
    if not 0 < x < math.inf:
        raise ValueError(f"{name} must be a finite number > 0, found {x!r}.")
    return x


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ValueError(f"key must be a data-set fingerprint: 1-200 letters, digits, '.', '_' or '-', not "
                         f"starting with '.', found {key!r}. Use mlsec_jupyter.provenance.fingerprint(X).")
    return key


def _check_text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a str, found {type(value).__name__}.")
    return value


def _check_history(history: object, name: str = "history") -> list[Segment]:
    if isinstance(history, (str, bytes)) or not isinstance(history, Iterable):
        raise ValueError(f"{name} must be a list of (noise_multiplier, sample_rate, steps) triples, "
                         f"found {type(history).__name__}.")
    out: list[Segment] = []
    for k, item in enumerate(history):
        if isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) != 3:
            raise ValueError(f"{name}[{k}] must be a (noise_multiplier, sample_rate, steps) triple, "
                             f"found {item!r}.")
        sigma, q, steps = item
        out.append((_check_sigma(sigma, f"{name}[{k}] noise_multiplier"),
                    _check_rate(q, f"{name}[{k}] sample_rate"),
                    _check_steps(steps, f"{name}[{k}] steps")))
    return out


@functools.lru_cache(maxsize=256)
def _epsilon(history: tuple[Segment, ...], delta: float, accountant: str) -> float:
    from .accounting import epsilon_of_history

    return float(epsilon_of_history(list(history), delta=delta, accountant=accountant))  # type: ignore[arg-type]


# -- the ledger ---------------------------------------------------------------------------------------
class Ledger:
    """Per-data-set privacy ledger persisted as JSON files under ``directory`` (see module docs)."""

    def __init__(self, directory: str | os.PathLike[str] = DEFAULT_DIRECTORY) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"Ledger({str(self.directory)!r})"

    def path(self, key: str) -> Path:
        """The JSON file holding ``key``'s records."""
        return self.directory / (_check_key(key) + _SUFFIX)

    # -- writing --------------------------------------------------------------------------------------
    def record(self, key: str, *, run_id: str, history: Iterable[Sequence[object]],
               delta_hint: float | None = None, label: str = "", source: str = "") -> Entry:
        """Upsert the release ``run_id`` on ``key``: a known ``run_id`` has its history replaced.

        Returns the stored :class:`Entry`.
        """
        _check_key(key)
        run_id = _check_text(run_id, "run_id")
        if not run_id:
            raise ValueError("run_id must be a non-empty string identifying the training or release.")
        entry = Entry(run_id=run_id, history=_check_history(history), label=_check_text(label, "label"),
                      source=_check_text(source, "source"), time=round(time.time(), 3),
                      delta_hint=None if delta_hint is None else _check_delta(delta_hint, "delta_hint"))

        def change(doc: dict[str, Any]) -> None:
            entries: list[Entry] = doc["entries"]
            for i, old in enumerate(entries):
                if old.run_id == run_id:
                    entries[i] = entry
                    return
            entries.append(entry)

        self._update(key, change)
        return entry

    def set_budget(self, key: str, *, epsilon: float, delta: float) -> None:
        """Set the (ε, δ) budget of ``key`` (replacing any earlier budget)."""
        _check_key(key)
        budget = (_check_epsilon(epsilon), _check_delta(delta))
        self._update(key, lambda doc: doc.__setitem__("budget", budget))

    def clear_budget(self, key: str) -> None:
        """Remove ``key``'s budget (its records stay)."""
        _check_key(key)
        if self._exists(key):
            self._update(key, lambda doc: doc.__setitem__("budget", None))

    def forget(self, key: str) -> bool:
        """Delete everything recorded on ``key`` (also a corrupt file). Returns whether a file existed."""
        _check_key(key)
        if not self._dir_exists():
            return False
        with self._locked() as d:
            try:
                d.unlink(key + _SUFFIX)
            except FileNotFoundError:
                return False
            d.fsync()
        return True

    # -- reading --------------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        """Data sets with a ledger file, sorted (corrupt files included: see :meth:`forget`)."""
        if not self._dir_exists():
            return []
        with self._dir() as d:
            names = d.listdir()
        return sorted(n[: -len(_SUFFIX)] for n in names
                      if n.endswith(_SUFFIX) and _KEY_RE.fullmatch(n[: -len(_SUFFIX)]))

    def entries(self, key: str) -> list[Entry]:
        """The releases recorded on ``key``, in the order they were first recorded."""
        return list(self._read(key)["entries"])

    def budget(self, key: str) -> tuple[float, float] | None:
        """``(epsilon, delta)`` budget of ``key``, or ``None`` when none is set."""
        return self._read(key)["budget"]

    def history(self, key: str, exclude_run: str | None = None) -> list[Segment]:
        """All recorded ``(noise_multiplier, sample_rate, steps)`` segments of ``key``, concatenated."""
        return [seg for e in self._read(key)["entries"] if e.run_id != exclude_run for seg in e.history]

    def spent(self, key: str, *, delta: float, exclude_run: str | None = None, accountant: str = "pld") -> float:
        """ε at ``delta`` of every release on ``key`` composed (0.0 when nothing is recorded)."""
        delta = _check_delta(delta)
        if accountant not in ("pld", "rdp"):
            raise ValueError(f"accountant must be 'pld' (tight) or 'rdp', found {accountant!r}.")
        hist = tuple(s for s in self.history(key, exclude_run) if s[2] > 0)
        return _epsilon(hist, delta, accountant) if hist else 0.0

    def remaining(self, key: str) -> float | None:
        """Budget ε minus ε spent (at the budget's δ); negative when over budget; ``None`` without a budget."""
        doc = self._read(key)
        if doc["budget"] is None:
            return None
        eps, delta = doc["budget"]
        return eps - self.spent(key, delta=delta)

    def would_exceed(self, key: str, planned_history: Iterable[Sequence[object]], *,
                     run_id: str | None = None) -> tuple[float, float] | None:
        """``(ε after, budget ε)`` if adding ``planned_history`` would go over ``key``'s budget, else ``None``.

        With ``run_id``, the plan replaces that release's recorded history (a re-run of the same
        training) instead of adding to it. ``None`` also when no budget is set.
        """
        planned = _check_history(planned_history, "planned_history")
        budget = self.budget(key)
        if budget is None:
            return None
        eps_budget, delta = budget
        hist = tuple(s for s in self.history(key, exclude_run=run_id) + planned if s[2] > 0)
        after = _epsilon(hist, delta, "pld") if hist else 0.0
        return (after, eps_budget) if after > eps_budget else None

    # -- storage ----------------------------------------------------------------------------------------
    def _dir_exists(self) -> bool:
        _check_parent(self.directory)
        try:
            st = os.lstat(self.directory)
        except FileNotFoundError:
            return False
        if stat.S_ISLNK(st.st_mode):
            raise LedgerError(f"The privacy ledger directory {str(self.directory)!r} is a symbolic link; "
                              "ledgers never follow symlinks. Replace it with a real directory (mode 0700).")
        return True

    def _exists(self, key: str) -> bool:
        if not self._dir_exists():
            return False
        with self._dir() as d:
            return d.exists(key + _SUFFIX)

    @contextmanager
    def _dir(self, create: bool = False) -> Iterator[_DirHandle]:
        handle = _DirHandle.opendir(self.directory, create=create)
        try:
            yield handle
        finally:
            handle.close()

    @contextmanager
    def _locked(self) -> Iterator[_DirHandle]:
        with self._dir(create=True) as d:
            fd = d.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                _flock(fd, self.directory / LOCK_FILE)
                d.remove_stale_temps()
                yield d
            finally:
                os.close(fd)  # releases the lock

    def _read(self, key: str) -> dict[str, Any]:
        _check_key(key)
        if not self._dir_exists():
            return {"budget": None, "entries": []}
        with self._dir() as d:
            return self._load(d, key)

    def _load(self, d: _DirHandle, key: str) -> dict[str, Any]:
        name = key + _SUFFIX
        raw = d.read(name)
        if raw is None:
            return {"budget": None, "entries": []}
        return _parse(raw, key, self.directory / name)

    def _update(self, key: str, change: Any) -> None:
        with self._locked() as d:
            doc = self._load(d, key)
            change(doc)
            d.write_atomic(key + _SUFFIX, _dump(doc, key))


# -- (de)serialisation -----------------------------------------------------------------------------------
def _dump(doc: dict[str, Any], key: str) -> bytes:
    budget = doc["budget"]
    head = {"format": FORMAT, "version": VERSION, "key": key,
            "budget": None if budget is None else {"epsilon": budget[0], "delta": budget[1]}}
    dumps = functools.partial(json.dumps, ensure_ascii=True, allow_nan=False)  # any str, even lone surrogates
    rows = ",\n  ".join(dumps(e.to_json()) for e in doc["entries"])  # one entry a line, for people reading it
    text = dumps(head)[:-1] + (', "entries": [\n  ' + rows + "\n]}\n" if rows else ', "entries": []}\n')
    return text.encode("utf-8")


def _corrupt(path: Path, what: str) -> LedgerError:
    return LedgerError(f"The privacy ledger file {str(path)!r} is corrupt: {what}. It was not changed, and "
                       "no privacy spending is reported from it, because losing records would under-state ε. "
                       "Restore it from a backup or fix it by hand; or, if its records can be dropped, delete "
                       "it (Ledger.forget(key)) and record the trainings again.")


def _parse(raw: bytes, key: str, path: Path) -> dict[str, Any]:
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _corrupt(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _corrupt(path, f"expected a JSON object with \"format\": {FORMAT!r}")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _corrupt(path, f"expected an integer \"version\", found {version!r}")
    if version > VERSION:
        raise LedgerError(f"The privacy ledger file {str(path)!r} has version {version}, newer than this "
                          f"mlsec-jupyter reads ({VERSION}). Upgrade mlsec-jupyter; the file was not changed.")
    if data.get("key") != key:
        raise _corrupt(path, f"it holds key {data.get('key')!r}, expected {key!r} from its name")
    try:
        budget = data.get("budget")
        if budget is not None:
            if not isinstance(budget, dict):
                raise ValueError(f"budget must be an object or null, found {budget!r}")
            budget = (_check_epsilon(budget.get("epsilon"), "budget epsilon"),
                      _check_delta(budget.get("delta"), "budget delta"))
        rows = data.get("entries")
        if not isinstance(rows, list):
            raise ValueError("\"entries\" must be a list")
        entries = [_entry(row, k) for k, row in enumerate(rows)]
    except ValueError as exc:
        raise _corrupt(path, str(exc)) from None
    return {"budget": budget, "entries": entries}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _entry(row: object, k: int) -> Entry:
    if not isinstance(row, dict):
        raise ValueError(f"entries[{k}] must be an object")
    run_id = row.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise ValueError(f"entries[{k}].run_id must be a non-empty string")
    hint = row.get("delta_hint")
    t = row.get("time", 0.0)
    return Entry(run_id=run_id, history=_check_history(row.get("history"), f"entries[{k}].history"),
                 label=_check_text(row.get("label", ""), f"entries[{k}].label"),
                 source=_check_text(row.get("source", ""), f"entries[{k}].source"),
                 time=_real(f"entries[{k}].time", t),
                 delta_hint=None if hint is None else _check_delta(hint, f"entries[{k}].delta_hint"))


# -- safe file system access ------------------------------------------------------------------------------
def _flock(fd: int, path: Path) -> None:
    if fcntl is None:  # pragma: no cover - Windows: no advisory locks; single-kernel use only
        return
    deadline = time.monotonic() + LOCK_TIMEOUT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
        if time.monotonic() > deadline:
            raise LedgerError(f"Could not lock the privacy ledger {str(path)!r} within {LOCK_TIMEOUT:g} s: another "
                              "process keeps it locked. Nothing was recorded; try again, or find the process "
                              "holding it (e.g. `fuser` on that file).")
        time.sleep(0.005)


def _symlink_error(path: Path) -> LedgerError:
    return LedgerError(f"{str(path)!r} is a symbolic link (or not a regular file/directory); privacy ledgers "
                       "never follow symlinks. Remove it; the ledger recreates what it needs.")


class _DirHandle:
    """A directory opened without following symlinks; files are opened relative to it."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def opendir(cls, path: Path, *, create: bool) -> _DirHandle:
        _check_parent(path)
        if create:
            _mkdirs(path)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise LedgerError(f"The privacy ledger directory {str(path)!r} does not exist.") from None
        if not stat.S_ISDIR(st.st_mode):
            raise _symlink_error(path)
        if not _DIR_FD:  # pragma: no cover - platforms without *at() calls
            return cls(path, None)
        try:
            fd = os.open(path, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise _symlink_error(path) from None
            raise
        return cls(path, fd)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _at(self, name: str) -> dict[str, Any]:
        return {"dir_fd": self.fd} if self.fd is not None else {}

    def _name(self, name: str) -> str:
        return name if self.fd is not None else str(self.path / name)

    def open(self, name: str, flags: int, mode: int = 0o600) -> int:
        try:
            return os.open(self._name(name), flags | _NOFOLLOW | _CLOEXEC, mode, **self._at(name))
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _symlink_error(self.path / name) from None
            raise

    def exists(self, name: str) -> bool:
        try:
            os.stat(self._name(name), follow_symlinks=False, **self._at(name))
        except FileNotFoundError:
            return False
        return True

    def read(self, name: str) -> bytes | None:
        try:
            fd = self.open(name, os.O_RDONLY | _NONBLOCK)  # a FIFO planted there must not hang the kernel
        except FileNotFoundError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _symlink_error(self.path / name)
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def write_atomic(self, name: str, data: bytes) -> None:
        tmp = f".{name}.{os.getpid()}.{secrets.token_hex(4)}{_TMP_SUFFIX}"
        fd = self.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.fchmod(fd, 0o600)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            if self.fd is not None:
                os.rename(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            else:  # pragma: no cover
                os.replace(self._name(tmp), self._name(name))
        except BaseException:
            self.unlink(tmp, missing_ok=True)
            raise
        self.fsync()

    def unlink(self, name: str, missing_ok: bool = False) -> None:
        try:
            os.unlink(self._name(name), **self._at(name))
        except FileNotFoundError:
            if not missing_ok:
                raise

    def listdir(self) -> list[str]:
        return os.listdir(self.fd if self.fd is not None else self.path)

    def remove_stale_temps(self) -> None:
        """Temp files of writers killed mid-write (call with the lock held: no live writer owns one)."""
        for n in self.listdir():
            if n.startswith(".") and n.endswith(_TMP_SUFFIX):
                self.unlink(n, missing_ok=True)

    def fsync(self) -> None:
        if self.fd is not None:
            try:
                os.fsync(self.fd)
            except OSError:  # pragma: no cover - some file systems refuse fsync on directories
                pass


def _check_parent(path: Path) -> None:
    """Refuse a symlinked ``.mlsec`` above the ledger directory (other ancestors are trusted)."""
    parent = path.parent
    if parent.name == ".mlsec":
        try:
            if stat.S_ISLNK(os.lstat(parent).st_mode):
                raise _symlink_error(parent)
        except FileNotFoundError:
            pass


def _mkdirs(path: Path) -> None:
    """Create ``path`` and missing parents with mode 0700 (never through a symlink: see _DirHandle.opendir)."""
    missing = []
    p = path
    while True:
        try:
            os.lstat(p)
            break
        except FileNotFoundError:
            missing.append(p)
            if p.parent == p:
                break
            p = p.parent
    for p in reversed(missing):
        try:
            os.mkdir(p, 0o700)
        except FileExistsError:
            continue
