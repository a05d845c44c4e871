"""Content fingerprints: a cheap answer to "is this the same data as before?".

Used as result-cache keys, computed in worker threads, keyed on object identity, shape, dtype and
strides too. A numpy array up to :data:`FULL_HASH_BYTES` is hashed whole (about 40 ms for
40 MB), so an in-place edit anywhere gives a new key and fresh findings; bigger arrays, frames and
tensors are hashed on ``rows`` evenly spaced rows (first and last included). Never writes and
never calls ``repr``/``len`` on unknown objects.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

#: numpy arrays up to this size are hashed in full.
FULL_HASH_BYTES = 256 * 2**20


def _sample_positions(n: int, rows: int) -> np.ndarray:
    if n <= rows:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, rows).astype(np.int64))


def _array_bytes(arr: np.ndarray, rows: int) -> bytes:
    if arr.ndim == 0:
        return arr.tobytes()
    part = arr if rows >= arr.shape[0] else arr[_sample_positions(arr.shape[0], rows)]
    if part.dtype.hasobject:
        return repr([type(v).__name__ for v in part.ravel()[:256]]).encode()
    return np.ascontiguousarray(part).tobytes()


def _is_torch_module(tp: type) -> bool:
    try:
        return any(c.__module__ == "torch.nn.modules.module" and c.__name__ == "Module" for c in tp.__mro__)
    except Exception:
        return False


def _hash_parameters(h: Any, module: Any, limit: int = 64, values: int = 8) -> None:
    """Every parameter's shape, dtype and in-place version counter (torch bumps ``_version`` on each
    optimizer step, so training in place gives a new key, also for a fine-tuned head behind many
    frozen layers), plus a few values of the first ``limit`` tensors (as float32, so bfloat16 works)."""
    for i, p in enumerate(module.parameters()):
        h.update(f"{tuple(p.shape)}{p.dtype}{getattr(p, '_version', '')}".encode())
        if i < limit and p.device.type != "meta" and p.numel():
            flat = p.detach().reshape(-1)
            pos = _sample_positions(int(flat.shape[0]), values)
            h.update(flat[pos].float().cpu().numpy().tobytes())


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
            whole = obj.nbytes <= FULL_HASH_BYTES and not obj.dtype.hasobject and obj.ndim
            h.update(_array_bytes(obj, obj.shape[0] if whole else rows))
        elif tp.__module__.startswith("pandas"):
            h.update(str(obj.shape).encode())
            h.update(repr(list(map(str, getattr(obj, "columns", [])[:200]))).encode())
            h.update(_array_bytes(obj.iloc[_sample_positions(obj.shape[0], rows)].to_numpy(), rows))
        elif _is_torch_module(tp):
            _hash_parameters(h, obj)
        elif tp.__module__.startswith("torch"):
            h.update(f"{tuple(obj.shape)}{obj.dtype}{obj.device}".encode())
            if obj.device.type != "meta":
                sample = obj.detach()[_sample_positions(obj.shape[0], rows)] if obj.ndim else obj.detach()
                h.update(_array_bytes(sample.cpu().numpy(), rows))
    except Exception as exc:  # unusual inputs: fall back on identity only
        h.update(type(exc).__name__.encode())
    return h.hexdigest()
