"""Cheap namespace snapshots: which names a cell bound anew.

A snapshot stores ``id()`` per name, never the objects, so nothing is kept alive. It is taken
only before cells that intend to load, split or fit, so ordinary cells pay nothing here. An
``id`` can be reused once its object is freed; rebinding a name always creates the new object
while the old one is still bound, so a rebinding inside one cell is still seen as a change.
"""

from __future__ import annotations

from typing import Any, Mapping


def _visible(name: str) -> bool:
    return not name.startswith("_")


class Snapshot:
    """Identity of every visible name in a namespace at one moment."""

    __slots__ = ("_ids",)

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self._ids = {k: id(v) for k, v in namespace.items() if _visible(k)}

    def changed(self, namespace: Mapping[str, Any], also: set[str] = frozenset()) -> list[str]:
        """Names bound to a different object than at snapshot time (new names included),
        plus the names in ``also`` (objects the cell may have changed in place), in namespace order."""
        ids = self._ids
        return [k for k, v in namespace.items()
                if _visible(k) and (ids.get(k) != id(v) or k in also)]
