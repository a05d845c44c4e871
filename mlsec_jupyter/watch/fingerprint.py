"""Sampled content fingerprints: a cheap answer to "is this the same data as before?".

Used as result-cache keys, computed in worker threads. Reads at most ``rows`` evenly spaced rows
(first and last included) plus shape, dtype and strides; never writes and never calls
``repr``/``len`` on unknown objects. Two arrays that differ only in rows between the sampled
ones get the same fingerprint; the cache therefore also keys on object identity.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def _sample_positions(n: int, rows: int) -> np.ndarray:
    if n <= rows:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, rows).astype(np.int64))


def _array_bytes(arr: np.ndarray, rows: int) -> bytes:
    if arr.ndim == 0:
        return arr.tobytes()
    part = arr[_sample_positions(arr.shape[0], rows)]
    if part.dtype.hasobject:
        return repr([type(v).__name__ for v in part.ravel()[:256]]).encode()
    return np.ascontiguousarray(part).tobytes()


def fingerprint(obj: Any, rows: int = 64) -> str:
    """A short hex digest of an array-like's identity, shape, dtype and a sample of its rows."""
    h = hashlib.blake2b(digest_size=12)
    tp = type(obj)
    h.update(f"{tp.__module__}.{tp.__qualname__}:{id(obj)}".encode())
    if obj is None:
        return "none"
    try:
        if isinstance(obj, np.ndarray):
            h.update(f"{obj.shape}{obj.dtype.str}{obj.strides}".encode())
            h.update(_array_bytes(obj, rows))
        elif tp.__module__.startswith("pandas"):
            h.update(str(obj.shape).encode())
            h.update(repr(list(map(str, getattr(obj, "columns", [])[:200]))).encode())
            h.update(_array_bytes(obj.iloc[_sample_positions(obj.shape[0], rows)].to_numpy(), rows))
        elif tp.__module__.startswith("torch"):
            h.update(f"{tuple(obj.shape)}{obj.dtype}{obj.device}".encode())
            if obj.device.type != "meta":
                sample = obj.detach()[_sample_positions(obj.shape[0], rows)] if obj.ndim else obj.detach()
                h.update(_array_bytes(sample.cpu().numpy(), rows))
    except Exception as exc:  # unusual inputs: fall back on identity only
        h.update(type(exc).__name__.encode())
    return h.hexdigest()
