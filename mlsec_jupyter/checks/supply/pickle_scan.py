"""``supply.pickle``: is a model file safe to load? A static scan that never loads it.

The file's format is sniffed from its bytes (not its name): a pickle (protocols 0–5), a torch zip
checkpoint (every pickle-like member, not only ``data.pkl``), torch's legacy pickle sequence and tar
formats, a joblib dump (plain or zlib/gzip/bz2/xz/lzma-compressed, arrays in-stream), a ``.npy``
object array or an ``.npz``. Every global the unpickler would import is judged against an allowlist
(:mod:`._allowlist`): ``safe`` (tensors, arrays, state dicts, standard torch layers, scikit-learn
estimators), ``custom`` (code from outside the allowlist, e.g. the user's ``mymodels.Net``) or
``unsafe`` (code execution, files, processes, network, nested loaders, unresolvable names). Parse
errors, truncation, limits, bad CRCs, encrypted members and polyglots make a file unsafe too, with what
was seen so far (a broken pickle can run code before it fails).

Verdict → severity: ``safe`` → info; ``custom code`` → medium; ``unsafe`` → high, or critical when a
dangerous global, a run-time-built name or state injection into a global was seen. A missing or
unreadable file → low. Nothing in the file is imported, called or unpickled, and the network is never used.
"""

from __future__ import annotations

import os
import re
import sys
import time
import zipfile
from dataclasses import dataclass, field
from typing import Any

from ...findings import Finding, Severity
from ..budget import Budget, CheckTimeout
from ..registry import register_check
from . import _allowlist
from ._containers import Scanner, sniff
from ._pickle import LimitHit, Limits, Meter, ParseError, Sink, Source

CHECK = "supply.pickle"
#: torch versions whose ``torch.load(weights_only=True)`` has a known bypass (reliability P14).
TORCH_ADVISORIES = (((2, 6), "CVE-2025-32434"), ((2, 10), "CVE-2026-24747"))
#: At most this many characters of a path go into a title.
TITLE_PATH_CHARS = 60


@dataclass
class ScanResult:
    """What a static scan of one file found (see the module docstring for the verdicts)."""

    path: str
    format: str = "not a pickle"
    globals: list[str] = field(default_factory=list)
    unsafe_globals: list[str] = field(default_factory=list)
    custom_globals: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    bytes_scanned: int = 0
    seconds: float = 0.0
    verdict: str = "safe"
    severity: Severity = Severity.INFO
    reasons: dict[str, str] = field(default_factory=dict)  # global -> why it is not safe
    stopped: str = ""  # why the scan stopped before the end of the file (its time budget), if it did

    @property
    def safe(self) -> bool:
        return self.verdict == "safe"


def scan_path(path: str | os.PathLike, *, budget: Budget | None = None,
              limits: Limits | None = None) -> ScanResult:
    """Statically scan the model file at ``path``; never raises for a bad or hostile file.

    A missing or unreadable file gives ``verdict="unreadable"`` with the error in ``problems``.
    Only ``CheckCancelled`` (the user stopped the check) propagates.
    """
    limits = limits or Limits()
    started = time.monotonic()
    result = ScanResult(path=os.fspath(path))
    sink = Sink()
    meter = Meter(limits.max_bytes, tick=budget.checkpoint if budget else None)
    size = 0

    def tick() -> None:
        if budget is not None:
            budget.checkpoint()

    scanner = Scanner(sink, limits, meter, tick)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            src = Source(fh, size=size, meter=meter, seekable=True)
            kind = sniff(src.peek(512))
            if budget is not None:
                budget.progress(0.0, f"scanning a {kind} file")
            if kind == "zip":
                fmt = scanner.zip(fh)
            elif kind == "tar":
                fmt = _tar_with_prefix(scanner, src, fh)
            else:
                fmt = scanner.stream(src, "", top=True)
                if size == 0:
                    fmt = "empty file"
                if sink.joblib_arrays and fmt.startswith("joblib (pickle"):
                    scanner.plain_view(fh, size)
                # a zip hiding behind another format (zipfile finds the central directory at the end)
                if fmt not in ("empty file",) and _zip_at_end(fh):
                    sink.problem("the file is both a " + fmt + " and a zip archive (a polyglot): loaders "
                                 "disagree on what it is; both views were scanned")
                    fh.seek(0)
                    fmt = f"{fmt} + {scanner.zip(fh)} (polyglot)"
        result.format = fmt
    except OSError as e:
        result.verdict = "unreadable"
        result.severity = Severity.LOW
        result.problems = [f"cannot read the file: {e.strerror or e}"]
        result.seconds = time.monotonic() - started
        return result
    except CheckTimeout as e:
        result.stopped = f"the scan stopped early ({e}) after {meter.total:,} bytes; the rest was not checked"
        result.format = result.format if result.format != "not a pickle" else "incomplete"
    except (ParseError, LimitHit) as e:  # a cap or parse error outside any member/stream handler
        sink.problem(str(e))
    except RecursionError:
        sink.problem("the file nests too deeply to inspect")
    except Exception as e:  # a scanner bug on a hostile file must fail closed, never pass it as safe
        sink.problem(f"the scanner could not finish ({type(e).__name__}); the file was not fully inspected")
    result.members = scanner.members
    result.bytes_scanned = meter.total
    result.seconds = time.monotonic() - started
    _judge(result, sink)
    return result


def _tar_with_prefix(scanner: Scanner, src: Source, fh: Any) -> str:
    """A tar archive whose first header (a member name) is also a pickle is a polyglot: ``pickle.load``
    reads the file from byte 0 (found in review). Both views are scanned."""
    if scanner.pickle_prefix(src, "") is not None:  # the prefix names a global or breaks after one
        scanner.sink.problem("the file is both a tar archive and a pickle (a polyglot): pickle.load reads the "
                             "tar header as opcodes; both views were scanned")
    fh.seek(0)
    return scanner.tar(fh)


def _zip_at_end(fh: Any) -> bool:
    try:
        fh.seek(0)
        return zipfile.is_zipfile(fh)
    except (OSError, ValueError):
        return False


def _judge(result: ScanResult, sink: Sink) -> None:
    critical = bool(sink.critical_problems)
    for name in sorted(sink.globals):
        category, reason = _allowlist.classify(name, sink.globals[name], sink.chains.get(name))
        result.globals.append(name)
        if category in ("critical", "unsafe"):
            result.unsafe_globals.append(name)
            result.reasons[name] = reason
            critical = critical or category == "critical"
        elif category == "custom":
            result.custom_globals.append(name)
            result.reasons[name] = reason
    result.problems = sink.critical_problems + sink.problems
    result.notes = list(sink.notes)
    if result.unsafe_globals or result.problems:
        result.verdict = "unsafe"
        result.severity = Severity.CRITICAL if critical else Severity.HIGH
    elif result.stopped:
        result.verdict = "incomplete"
        result.severity = Severity.HIGH
    elif result.custom_globals:
        result.verdict = "custom code"
        result.severity = Severity.MEDIUM
    else:
        result.verdict = "safe"
        result.severity = Severity.INFO


# --------------------------------------------------------------------------------------------------
# the check
# --------------------------------------------------------------------------------------------------
def torch_advisories(version: str | None) -> list[str]:
    """Known ``weights_only=True`` bypasses affecting torch ``version`` (e.g. ``"2.5.1+cpu"``)."""
    if not version:
        return []
    m = re.match(r"(\d+)\.(\d+)", version)
    if not m:
        return []
    v = (int(m.group(1)), int(m.group(2)))
    return [cve for fixed, cve in TORCH_ADVISORIES if v < fixed]


def _installed_torch_version() -> str | None:
    """torch's version only if torch is already imported (never imported here)."""
    torch = sys.modules.get("torch")
    version = getattr(torch, "__version__", None)
    return str(version) if version is not None else None


def _short(path: str) -> str:
    base = os.path.basename(path.rstrip("/\\")) or path
    return base if len(base) <= TITLE_PATH_CHARS else base[: TITLE_PATH_CHARS - 1] + "…"


def _names(names: list[str], n: int = 3) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def _safe_contents(globals_: list[str]) -> str:
    kinds = []
    if any(g.startswith("torch._utils._rebuild") or g.endswith("Storage") for g in globals_):
        kinds.append("tensors")
    if "collections.OrderedDict" in globals_:
        kinds.append("a state_dict")
    if any(g.startswith("torch.nn.modules.") for g in globals_):
        kinds.append("standard torch layers")
    if any(g.startswith("numpy.") for g in globals_):
        kinds.append("numpy arrays")
    if any(g.startswith("sklearn.") for g in globals_):
        kinds.append("scikit-learn estimators")
    if not kinds:
        return "plain Python data"
    return ", ".join(kinds[:-1]) + (" and " if len(kinds) > 1 else "") + kinds[-1]


def _finding(result: ScanResult, *, loader: str | None, torch_version: str | None) -> Finding:
    short = _short(result.path)
    advisories = torch_advisories(torch_version) if loader and loader.split(".")[-1] == "load" and \
        "torch" in loader else []
    metrics: dict[str, Any] = {
        "globals": result.globals, "unsafe_globals": result.unsafe_globals, "format": result.format,
        "custom_globals": result.custom_globals, "problems": result.problems, "verdict": result.verdict,
        "bytes_scanned": result.bytes_scanned, "seconds": round(result.seconds, 4), "members": result.members,
        "notes": result.notes,
    }
    if advisories:
        metrics["torch_advisories"] = advisories
    severity = result.severity
    rec_trust = ("Only load model files from sources you trust, and verify a published hash or signature "
                 "before loading (`%mlsec sign` / `%mlsec verify` do this for data files).")
    if result.stopped:
        metrics["stopped"] = result.stopped
    if result.verdict == "unreadable":
        title = f"Model file could not be scanned: {short}"
        summary = result.problems[0] if result.problems else "the file could not be read"
        rec = "Check the path; the file was not scanned, so nothing is known about its safety."
    elif result.verdict == "incomplete":
        title = f"Model file not fully scanned: {short} (the time budget ran out)"
        summary = (f"{short} ({result.format}): {result.stopped}. Nothing unsafe was found in the part that was "
                   "checked, but the rest could hide code that runs when the file is loaded.")
        rec = (f"Scan it without the cell's time limit: `%mlsec scanfile {short}` (up to 120 s), or raise the "
               "limit with `%mlsec config time_budget=…` and run the cell again. " + rec_trust)
    elif result.verdict == "unsafe":
        if result.unsafe_globals:
            title = f"Unsafe model file: it calls {_names(result.unsafe_globals, 2)} when loaded"
        else:
            title = f"Unsafe model file: {short} cannot be checked completely"
        parts = [f"{short} ({result.format})."]
        if result.unsafe_globals:
            parts.append("Loading it imports or calls: " + "; ".join(
                f"{g} ({result.reasons.get(g, '')})" for g in result.unsafe_globals[:10]) + ".")
        if result.custom_globals:
            parts.append(f"It also needs code from outside the allowlist: {_names(result.custom_globals, 5)}.")
        if result.problems:
            parts.append("Problems: " + "; ".join(result.problems[:5]) + ".")
        if result.stopped:
            parts.append(result.stopped[:1].upper() + result.stopped[1:] + ".")
        summary = " ".join(parts)
        rec = ("Do not load this file. If you must inspect it, do so in an isolated, network-less sandbox; "
               "prefer a copy in a format that cannot run code (safetensors; skops for scikit-learn). " + rec_trust)
    elif result.verdict == "custom code":
        title = f"Model file needs custom code: {_names(result.custom_globals, 2)}"
        summary = (f"{short} ({result.format}) imports code from outside the allowlist when loaded: "
                   f"{_names(result.custom_globals, 10)}. Loading it runs that code, so it is only as safe as "
                   "its source.")
        rec = ("Load only if you trust the file and the code it names. Prefer saving the weights alone "
               "(`torch.save(model.state_dict())`, loaded with `torch.load(path, weights_only=True)`) or "
               "safetensors; for scikit-learn use skops with an explicit list of trusted types. " + rec_trust)
    else:
        what = "no pickle" if not result.globals and not result.format.startswith(("pickle", "joblib", "torch")) \
            else _safe_contents(result.globals)
        title = f"Model file is safe to load: only {what}"
        summary = (f"{short} ({result.format}): every global it names is on the allowlist "
                   f"({len(result.globals)} distinct); {result.bytes_scanned:,} bytes checked without loading it.")
        rec = ("Still load it the restrictive way: `torch.load(path, weights_only=True)` for torch files, "
               "skops for scikit-learn, `np.load(path, allow_pickle=False)` for numpy. " + rec_trust)
    if advisories:
        summary += (f" The installed torch {torch_version} has known weights_only=True bypasses "
                    f"({', '.join(advisories)}): weights_only does not protect this load.")
        rec = "Upgrade torch to 2.10 or later. " + rec
        if result.verdict in ("custom code", "unsafe", "incomplete"):
            severity = max(severity, Severity.HIGH)
        else:
            severity = max(severity, Severity.LOW)
    return Finding(check=CHECK, severity=severity, title=title, summary=summary, metrics=metrics,
                   recommendation=rec)


@register_check(CHECK, applies_to="model_file", title="Unsafe model file (pickle) scan", cost="fast")
def supply_pickle(*, path: str, loader: str | None = None, budget: Budget,
                  torch_version: str | None = None) -> list[Finding]:
    """Scan the model file ``path`` (that a cell loads with ``loader``) without loading it.

    ``torch_version`` overrides the installed torch's version for the weights_only advisory check
    (default: ``torch.__version__`` when torch is already imported; torch is never imported here).
    """
    result = scan_path(path, budget=budget)
    version = torch_version if torch_version is not None else _installed_torch_version()
    return [_finding(result, loader=loader, torch_version=version)]
