"""Surfaces that show a :class:`~mlsec_jupyter.findings.RiskCard`.

``card_bundle(card)`` is what ``RiskCard._repr_mimebundle_`` returns: the card JSON for the
JupyterLab renderer and sidebar, an escaped self-contained HTML card for every other front end,
and plain text. Importing this package is cheap: the standard library and ``findings`` only (no
matplotlib, no ipywidgets; plots and widgets live in their own modules, imported when used).
"""

from __future__ import annotations

from html import escape as _escape
from typing import TYPE_CHECKING, Any

from ..findings import CARD_MIME
from .html import card_html
from .text import card_text

if TYPE_CHECKING:  # pragma: no cover
    from ..findings import RiskCard

__all__ = ["CARD_MIME", "card_bundle", "card_html", "card_text"]


def card_bundle(card: "RiskCard") -> dict[str, Any]:
    """``{CARD_MIME: card JSON, "text/html": card HTML, "text/plain": card text}``.

    A rendering bug must never hide the user's cell output (DESIGN.md "Never"), so if the HTML or
    text renderer raises, that part falls back to a short escaped notice naming the error type.
    """
    data = card.to_dict()
    try:
        text = card_text(card)
    except Exception as exc:  # noqa: BLE001 - never break the cell over a card
        text = f"Risk card {card.card_id!s:.80}: could not render ({type(exc).__name__})"
    try:
        page = card_html(card)
    except Exception as exc:  # noqa: BLE001
        page = (f"<pre>{_escape(text, quote=True)}\n"
                    f"(HTML card failed: {_escape(type(exc).__name__, quote=True)})</pre>")
    return {CARD_MIME: data, "text/html": page, "text/plain": text}
