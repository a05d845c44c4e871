"""Cheap namespace snapshots: which names a cell bound anew.

A snapshot stores ``id()`` per name, never the objects, so nothing is kept alive. It is taken
only before cells that intend to load, split or fit, so ordinary cells pay nothing here. When the
cell's AST shows every name it can bind (no ``exec``, magics, ``globals()``, star imports), only
those names are recorded: microseconds, whatever the namespace size. Otherwise the whole
namespace is recorded. An ``id`` can be reused once its object is freed; rebinding a name always
creates the new object while the old one is still bound, so a rebinding is still seen.
"""

from __future__ import annotations

from typing import Any, Collection, Mapping

_MISSING = -1


class Snapshot:
    """Identity of the watched names of a namespace at one moment."""

    __slots__ = ("_ids", "_names")

    def __init__(self, namespace: Mapping[str, Any], names: Collection[str] | None = None) -> None:
        self._names = None if names is None else tuple(n for n in names if n[:1] != "_")
        if self._names is None:
            self._ids = {k: id(v) for k, v in namespace.items() if k[:1] != "_"}
        else:
            self._ids = {k: id(namespace[k]) if k in namespace else _MISSING for k in self._names}

    def changed(self, namespace: Mapping[str, Any], also: Collection[str] = frozenset()) -> list[str]:
        """Names now bound to a different object than at snapshot time (new names included),
        plus the names in ``also`` (objects the cell may have changed in place)."""
        ids = self._ids
        if self._names is None:
            out = [k for k, v in namespace.items() if k[:1] != "_" and (ids.get(k) != id(v) or k in also)]
        else:
            out = [k for k in self._names if k in namespace and ids[k] != id(namespace[k])]
            out += [k for k in also if k in namespace and k not in out and k[:1] != "_"]
        return out
