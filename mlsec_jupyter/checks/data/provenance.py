"""``data.provenance``: a content fingerprint of the dataset, and the hash of the file it came from.

Always an ``info`` finding: a fingerprint is a record, not a problem. The one exception is when a
signed manifest is given (``manifest=`` through :func:`~mlsec_jupyter.run_check`) and the data no
longer matches it or its signature is bad.

Metrics: ``sha`` (hex blake2b-256 over X and y), ``hash``, ``n_bytes``, ``seconds``, ``parts``; and
when the data was loaded from a file that still exists, ``file_path``, ``file_bytes``,
``file_sha256`` (``None`` if the time budget ran out first) and ``file_hashed_bytes``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ...findings import Finding, Severity
from ...provenance import HASH_NAME, Fingerprinter, Unsupported, hash_file, verify_manifest
from ..budget import Budget, CheckTimeout
from ..registry import register_check

CHECK = "data.provenance"
_ADVICE = ("Keep this fingerprint with the model trained on this data, or sign it with %mlsec sign VAR [LABELS] "
           "and check it later with %mlsec verify VAR [LABELS] MANIFEST, so a silent change to the data "
           "(poisoning, a swapped file) is caught.")


@register_check(CHECK, applies_to="dataset", title="Data provenance (content fingerprint)", cost="fast")
def provenance(*, X: Any, y: Any = None, path: str | None = None, manifest: Any = None,
               budget: Budget) -> list[Finding]:
    """blake2b content hash of X and y, sha256 of the source file, and an optional manifest check."""
    started = time.perf_counter()
    fp = Fingerprinter(check=budget.checkpoint)
    try:
        fp.add(X, "X")
        if y is not None:
            fp.add(y, "y")
    except Unsupported as exc:
        return [Finding(CHECK, Severity.INFO, "Fingerprint not taken",
                        f"Not checked: {exc}.", metrics={"hash": HASH_NAME, "n_bytes": fp.n_bytes},
                        recommendation="Convert the data to an array, DataFrame or tensor to fingerprint it.")]
    except CheckTimeout:
        return [Finding(CHECK, Severity.INFO, "Fingerprint not finished",
                        f"The time budget of {budget.seconds:g} s ran out after hashing {fp.n_bytes:,} bytes; "
                        "raise it with %mlsec config time_budget=SECONDS, or sign the data with %mlsec sign, "
                        "which has no time limit.", metrics={"hash": HASH_NAME, "n_bytes": fp.n_bytes})]
    result = fp.result(started)
    metrics: dict[str, Any] = {"sha": result.sha, "hash": HASH_NAME, "n_bytes": result.n_bytes,
                               "seconds": round(result.seconds, 6), "parts": [p.to_dict() for p in result.parts]}
    summary = (f"{HASH_NAME} over the exact bytes of {' and '.join(p.describe() for p in result.parts)}: "
               f"{_size(result.n_bytes)} hashed in {_duration(result.seconds)}. Full hash {result.sha}.")
    summary += _file_part(path, budget, metrics)
    severity, title = Severity.INFO, f"Fingerprint {result.sha[:16]}… ({result.roles})"
    if manifest is not None:
        verdict = verify_manifest(manifest, X, y)
        metrics["manifest_status"] = verdict.status
        summary += f" Manifest: {verdict.message}."
        if verdict.status != "verified":
            severity = Severity.HIGH
            title = f"Data does not match its signed manifest ({verdict.status.replace('_', ' ')})"
    return [Finding(CHECK, severity, title, summary, metrics=metrics, recommendation=_ADVICE)]


def _file_part(path: Any, budget: Budget, metrics: dict[str, Any]) -> str:
    if not isinstance(path, (str, os.PathLike)) or "://" in str(path):
        return ""
    try:
        if not os.path.isfile(path):
            return ""
        # leave at least half of what is left of the budget for the rest of the card
        deadline = time.monotonic() + max(0.05, 0.5 * budget.remaining)
        fh = hash_file(path, deadline=deadline)
    except OSError as exc:
        return f" The source file {os.fspath(path)!r} could not be read ({exc.strerror or type(exc).__name__})."
    metrics.update(file_path=fh.path, file_bytes=fh.size, file_sha256=fh.sha256, file_hashed_bytes=fh.hashed_bytes)
    if fh.sha256 is None:
        return (f" Loaded from {fh.path!r} ({_size(fh.size)}); its sha256 was not finished within the time budget "
                f"({_size(fh.hashed_bytes)} read).")
    return f" Loaded from {fh.path!r} ({_size(fh.size)}, sha256 {fh.sha256})."


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"
