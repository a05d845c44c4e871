"""The cards of each notebook cell's latest run: what reports list and what run diffs compare against.

A card made while a cell runs carries a :class:`RunKey`: the cell's id (sent by the front end), a serial
number of that run, and what in the cell made the card (its subject, or "before the cell ran"). When a
cell runs again, its earlier cards leave the report and become the "previous run" a new card with the
same origin is compared with (:func:`mlsec_jupyter.changes.compare`). A front end that sends no cell
id (terminal IPython, nbclient) gets its cells keyed by their source instead, with ``compare=False``:
the report keeps the latest run of that source, but no run diff is made, since two cells with the same
source are not the same cell. Cards made outside any cell (the API) are kept as they come, the newest
:data:`MAX_LOOSE` of them.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field

from .findings import RiskCard

#: Cells whose latest run is kept (the cell that ran longest ago leaves first).
MAX_CELLS = 500
#: Cards without a cell kept for reports.
MAX_LOOSE = 64


@dataclass(frozen=True)
class RunKey:
    """Which run of which cell made a card, and what in it (a subject, or "before the cell ran")."""

    cell: str
    run: int
    origin: str
    compare: bool = True  # False: the cell is only known by its source, so runs are not compared


@dataclass
class _Cell:
    first_seen: int
    run: int
    cards: list[tuple[str, RiskCard]] = field(default_factory=list)
    earlier: dict[str, RiskCard] = field(default_factory=dict)  # the previous run's cards, by origin


class CellCards:
    """Thread-safe store of the cards of each cell's latest run (see the module docstring)."""

    def __init__(self, max_cells: int = MAX_CELLS, max_loose: int = MAX_LOOSE) -> None:
        self.max_cells = max_cells
        self._cells: collections.OrderedDict[str, _Cell] = collections.OrderedDict()
        self._loose: collections.deque[tuple[int, RiskCard]] = collections.deque(maxlen=max_loose)
        self._previous: collections.OrderedDict[str, RiskCard] = collections.OrderedDict()
        self._serial = 0
        self._lock = threading.Lock()

    def add(self, card: RiskCard, key: RunKey | None) -> None:
        """Keep ``card`` as made by the run ``key`` (``None``: made outside a known cell)."""
        with self._lock:
            self._serial += 1
            if key is None:
                self._loose.append((self._serial, card))
                return
            cell = self._begin(key.cell, key.run)
            cell.cards.append((key.origin, card))
            previous = cell.earlier.get(key.origin) if key.compare else None
            if previous is not None:
                self._previous[card.card_id] = previous
                while len(self._previous) > 4 * self.max_cells:
                    self._previous.popitem(last=False)

    def start(self, cell: str, run: int) -> None:
        """The cell ``cell`` starts its run ``run``: its earlier cards leave the report even if this run
        makes none (the cell was edited to load nothing, say)."""
        with self._lock:
            if cell in self._cells:
                self._begin(cell, run)

    def _begin(self, cell_id: str, run: int) -> _Cell:
        cell = self._cells.get(cell_id)
        if cell is None:
            cell = self._cells[cell_id] = _Cell(self._serial, run)
            while len(self._cells) > self.max_cells:
                self._cells.popitem(last=False)
        elif cell.run != run:  # the cell runs again: its cards so far are the previous run
            if cell.cards:
                cell.earlier = dict(cell.cards)
            cell.run, cell.cards = run, []
        self._cells.move_to_end(cell_id)
        return cell

    def previous_of(self, card: RiskCard) -> RiskCard | None:
        """The card of the same cell's previous run with the same origin (asked once, when ``card`` is done)."""
        with self._lock:
            return self._previous.pop(card.card_id, None)

    def cards(self) -> list[RiskCard]:
        """The cards of every cell's latest run and the loose cards, in the order they first appeared."""
        with self._lock:
            placed = [(cell.first_seen, i, card) for cell in self._cells.values()
                      for i, (_, card) in enumerate(cell.cards)]
            placed += [(serial, 0, card) for serial, card in self._loose]
        return [card for *_, card in sorted(placed, key=lambda p: (p[0], p[1]))]


__all__ = ["CellCards", "RunKey"]
