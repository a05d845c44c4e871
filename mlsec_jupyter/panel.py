"""``%mlsec panel``: the session's findings in the output area, and what to do with them.

One ipywidgets box:

* **findings** of the cards this session showed (the last :data:`~mlsec_jupyter.session.MAX_CARDS`), as a
  table filtered by minimum severity and text, redrawn whenever a card finishes;
* **re-run** one check on a variable with its parameters (time budget, rows, ε values for
  ``robustness.evasion``, shadow models for ``privacy.membership``), with a progress bar and a cancel
  button; the new card is drawn inside the panel;
* **privacy budgets**: a gauge per dataset with a budget in the ledger;
* **export** the session's report (:mod:`mlsec_jupyter.reports`): one self-contained HTML file, JSON (the
  card schema) or SARIF 2.1.0, UTF-8.

Updates from checks running in worker threads go through widget state (trait values synchronised over the
widget's comm), never ``display()`` from a thread. HTML widget values are set as ``innerHTML`` by the front
end, so every string from a card is cleaned and escaped here first (:mod:`mlsec_jupyter.render`).
"""

from __future__ import annotations

import html
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .artifacts import Dataset, Kind, Model, Role, classify, framework_of
from .checks.registry import all_checks
from .findings import RiskCard, Severity
from .render.html import card_html
from .render.plots import gauge
from .render.text import clean_text

SEVERITIES = tuple(s.label for s in sorted(Severity, reverse=True))  # critical ... info
#: Checks the panel can re-run on a variable (data or model checks).
RERUNNABLE = ("dataset", "model")
TABLE_ROWS = 200


def _esc(value: Any, limit: int = 200) -> str:
    return html.escape(clean_text(value, limit), quote=True)


class Panel:
    """The widget behind ``%mlsec panel``. ``evaluate(name)`` reads a variable of the user's namespace."""

    def __init__(self, session: Any, evaluate: Callable[[str], Any]) -> None:
        import ipywidgets as w

        self.session = session
        self.evaluate = evaluate
        self.card: RiskCard | None = None  # the card of the last re-run
        self._lock = threading.Lock()
        self.minimum = w.Dropdown(options=[(f"{s} and above" if s != "info" else "all", s) for s in SEVERITIES],
                                  value="low", description="Show", layout=w.Layout(width="220px"))
        self.text = w.Text(placeholder="filter findings", layout=w.Layout(width="240px"))
        self.summary = w.HTML()
        self.table = w.HTML()
        checks = sorted(s.id for s in all_checks() if s.applies_to in RERUNNABLE)
        self.check = w.Dropdown(options=checks, description="Re-run", layout=w.Layout(width="300px"))
        self.target = w.Text(placeholder="X y   or   model", description="on", layout=w.Layout(width="260px"))
        self.seconds = w.FloatText(value=float(session.config.time_budget), description="seconds",
                                   layout=w.Layout(width="170px"))
        self.rows = w.IntText(value=int(session.config.sample_size), description="rows", layout=w.Layout(width="170px"))
        self.eps = w.Text(placeholder="e.g. 0.05, 0.1, 0.2", description="ε values", layout=w.Layout(width="260px"))
        self.shadows = w.IntText(value=8, description="shadows", layout=w.Layout(width="170px"))
        self.run_button = w.Button(description="Re-run", button_style="primary", icon="play")
        self.cancel_button = w.Button(description="Cancel", icon="stop", disabled=True)
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, layout=w.Layout(width="260px"))
        self.status = w.HTML()
        self.result = w.HTML()
        self.budgets = w.HTML()
        self.export_html = w.Button(description="Export HTML", icon="download")
        self.export_json = w.Button(description="Export JSON", icon="download")
        self.export_sarif = w.Button(description="Export SARIF", icon="download")
        self.exported = w.HTML()
        self.minimum.observe(lambda _: self.refresh_table(), "value")
        self.text.observe(lambda _: self.refresh_table(), "value")
        self.check.observe(lambda _: self._show_parameters(), "value")
        self.run_button.on_click(lambda _: self._click(self.rerun))
        self.cancel_button.on_click(lambda _: self._click(self.cancel))
        self.export_html.on_click(lambda _: self._click(lambda: self.export("html")))
        self.export_json.on_click(lambda _: self._click(lambda: self.export("json")))
        self.export_sarif.on_click(lambda _: self._click(lambda: self.export("sarif")))
        self.parameters = w.HBox([self.seconds, self.rows, self.eps, self.shadows])
        self.widget = w.VBox([
            self.summary, w.HBox([self.minimum, self.text]), self.table,
            w.HTML("<b>Re-run a check</b>"), w.HBox([self.check, self.target]), self.parameters,
            w.HBox([self.run_button, self.cancel_button, self.progress, self.status]), self.result,
            w.HTML("<b>Privacy budgets</b>"), self.budgets,
            w.HBox([self.export_html, self.export_json, self.export_sarif, self.exported]),
        ])
        self.widget.add_class("mlsec-panel")
        self.status.add_class("mlsec-panel-status")
        self.result.add_class("mlsec-panel-result")
        self.progress.add_class("mlsec-panel-progress")
        self._show_parameters()
        self._cancelled = False
        self._listener = lambda card: self.refresh_table()  # any card of the session finished (worker thread)
        session.card_done.append(self._listener)
        self.refresh()

    # -- findings ----------------------------------------------------------------------------------
    def rows_shown(self) -> list[tuple[Any, Any]]:
        """(card, finding) pairs the table shows: at or above the chosen severity, matching the filter."""
        floor = Severity.parse(self.minimum.value)
        words = self.text.value.strip().lower()
        out = []
        for card in list(self.session.cards):
            for f in card.findings:
                if f.severity < floor:
                    continue
                if words and words not in f"{f.title} {f.check} {card.subject} {f.target}".lower():
                    continue
                out.append((card, f))
        out.sort(key=lambda cf: -int(cf[1].severity))
        return out

    def refresh(self) -> None:
        """Redraw the table, the summary and the budgets from the session."""
        self.refresh_table()
        self.budgets.value = self._budgets()

    def refresh_table(self) -> None:
        """Redraw the findings table and the summary (cheap: no ledger reads)."""
        rows = self.rows_shown()
        cards = list(self.session.cards)
        counts = {s: 0 for s in SEVERITIES}
        for card in cards:
            for f in card.findings:
                counts[f.severity.label] += 1
        shown = ", ".join(f"{n} {s}" for s, n in counts.items() if n and s != "info") or "nothing found yet"
        kept = "the last " if len(cards) == self.session.cards.maxlen else ""
        self.summary.value = f"<b>ML security</b> — {kept}{len(cards)} card(s) this session: {_esc(shown)}"
        self.table.value = _table(rows)

    def _budgets(self) -> str:
        try:
            ledger = self.session.ledger
            keys = ledger.keys()
        except Exception as exc:  # noqa: BLE001 - an unreadable ledger is shown, not raised
            return f"<i>The privacy ledger cannot be read: {_esc(exc)}</i>"
        parts = []
        for key in keys:
            try:
                limit = ledger.budget(key)
                if limit is None:
                    continue
                spent = ledger.spent(key, delta=limit[1])
            except Exception as exc:  # noqa: BLE001 - one corrupt record must not hide the others
                parts.append(f"<div>data {_esc(key[:12])}…: its ledger record cannot be read ({_esc(exc, 200)})</div>")
                continue
            label = f"data {key[:12]}… ε spent at δ = {limit[1]:.0e}"
            parts.append(gauge({"gauge": {"value": round(spent, 4), "limit": limit[0], "label": label}}))
        return "".join(parts) or "<i>No dataset has a privacy budget (set one with %mlsec budget VAR eps=E delta=D).</i>"

    # -- re-run --------------------------------------------------------------------------------------
    def _show_parameters(self) -> None:
        check = self.check.value or ""
        self.eps.layout.display = "" if check == "robustness.evasion" else "none"
        self.shadows.layout.display = "" if check == "privacy.membership" else "none"

    def parameters_for(self, check: str) -> dict[str, Any]:
        """The check's own parameters from the panel's fields (ValueError for a bad one)."""
        params: dict[str, Any] = {}
        if check == "robustness.evasion" and self.eps.value.strip():
            from .checks.robustness._common import check_eps

            try:
                params["eps"] = check_eps([float(e) for e in self.eps.value.replace(",", " ").split()])
            except ValueError:
                raise ValueError(f"ε values must be positive numbers separated by commas, got {self.eps.value!r} "
                                 "(e.g. 0.05, 0.1, 0.2).") from None
        if check == "privacy.membership":
            if self.shadows.value < 1:
                raise ValueError(f"shadows must be at least 1, got {self.shadows.value}.")
            params["n_shadow"] = int(self.shadows.value)
        return params

    def artifacts(self, text: str) -> list[Any]:
        """What ``text`` names: ``X y`` (a dataset and its labels) or ``model`` (a fitted model, with the data
        the session saw it fitted and evaluated on)."""
        names = text.split()
        if not 1 <= len(names) <= 2:
            raise ValueError(f"name a variable: 'X y' for data and labels, or 'model'; got {text!r}.")
        obj = self.evaluate(names[0])
        kind = classify(obj)
        if kind in (Kind.SKLEARN_MODEL, Kind.TORCH_MODEL):
            known = self.session.fitted_on(obj) or {}
            train = None if known.get("X") is None else Dataset(X=known["X"], y=known.get("y"), name="training data",
                                                                   role=Role.TRAIN)
            test = None if known.get("X_test") is None else Dataset(
                X=known["X_test"], y=known.get("y_test"), name="held-out rows", role=Role.TEST)
            return [Model(obj=obj, name=names[0], framework=framework_of(kind), train=train, test=test)]
        if kind in (Kind.ARRAY, Kind.FRAME):
            y = self.evaluate(names[1]) if len(names) == 2 else None
            return [Dataset(X=obj, y=y, name=", ".join(names), source="%mlsec panel")]
        raise ValueError(f"{names[0]!r} is a {type(obj).__name__}; expected an array, a DataFrame, a tensor or a "
                         "fitted model.")

    def rerun(self) -> RiskCard | None:
        """Run the chosen check on the named variable in the background; progress shows in the panel. One
        re-run at a time per panel."""
        if self.card is not None and self.card.status != "done":
            self.status.value = "a re-run is still going: wait for it or cancel it"
            return None
        check = self.check.value
        try:
            params = self.parameters_for(check)
            artifacts = self.artifacts(self.target.value)
            if self.seconds.value <= 0 or self.rows.value <= 0:
                raise ValueError("seconds and rows must be positive.")
        except Exception as exc:  # noqa: BLE001 - a bad name or value is shown in the panel, not raised
            self.status.value = f"<span style='color:#cf222e'>{_esc(exc, 400)}</span>"
            return None
        prepared = self.session.prepare(artifacts, subject=f"{self.target.value.strip()}: {check} (re-run)",
                                        only={check: params}, seconds=float(self.seconds.value),
                                        max_rows=int(self.rows.value))
        if prepared is None:
            self.status.value = f"<span>{_esc(check)} does not apply to {_esc(self.target.value)}.</span>"
            return None
        card, launch = prepared
        with self._lock:
            self.card, self._cancelled = card, False
            self.progress.value = 0.0
            self.progress.bar_style = "info"
            self.cancel_button.disabled = False
            self.run_button.disabled = True
        self._show(card)
        try:
            launch(self._show)
        except Exception as exc:  # noqa: BLE001 - e.g. the runner was shut down: the buttons must come back
            with self._lock:
                self.card = None
                self.cancel_button.disabled, self.run_button.disabled = True, False
            self.status.value = f"<span style='color:#cf222e'>could not start: {_esc(exc, 300)}</span>"
            return None
        return card

    def _show(self, card: RiskCard) -> None:
        """Widget state from a card update (called from worker threads): progress, status, the card."""
        with self._lock:
            if card is not self.card:
                return
            done = card.status == "done"
            share = float(card.progress)
            share = 1.0 if done else (min(max(share, 0.0), 1.0) if math.isfinite(share) else 0.0)
            self.result.value = card_html(card)
            if done:
                self.status.value = _outcome(card)
                self.cancel_button.disabled = True
                self.run_button.disabled = False
            else:
                self.status.value = "cancelling…" if self._cancelled else f"running… {100 * share:.0f}%"
            self.progress.bar_style = ("warning" if self._cancelled else "success") if done else "info"
            self.progress.value = share  # last: a reader that sees it full sees the rest done

    def cancel(self) -> int:
        """Cancel this panel's re-run (only its checks; the cells' own checks go on). The buttons come back
        when its card finishes, at the checks' next checkpoint."""
        with self._lock:
            card = self.card
            self._cancelled = card is not None and card.status != "done"
        cancelled = self.session.runner.cancel(card) if card is not None else 0
        if not cancelled:
            self.cancel_button.disabled, self.run_button.disabled = True, False
        self.status.value = f"cancelling {cancelled} check(s)…" if cancelled else "nothing to cancel"
        return cancelled

    # -- export ----------------------------------------------------------------------------------------
    def export(self, kind: str, path: str | Path | None = None) -> Path:
        """Write the session's report to ``mlsec-report.html`` / ``.json`` / ``.sarif`` in the working folder
        (or ``path``): the latest card of every cell, as ``%mlsec report`` writes it."""
        from .reports import locate, write_report

        notebook = self.session.notebook
        target = write_report(path or f"mlsec-report.{kind}", locate(self.session.report_cards(), notebook),
                              format=kind, notebook=notebook)
        self.exported.value = f"wrote {_esc(str(target.resolve()), 300)}"
        return target

    def close(self) -> None:
        """Stop listening to the session and close every widget of the panel (the extension is unloaded)."""
        if self._listener in self.session.card_done:
            self.session.card_done.remove(self._listener)
        for child in _descendants(self.widget):
            child.close()

    def _click(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - a button must never raise into the widget's comm handler
            self.status.value = f"<span style='color:#cf222e'>{_esc(f'{type(exc).__name__}: {exc}', 400)}</span>"


def _outcome(card: RiskCard) -> str:
    """"done", or how the checks that did not finish normally ended ("cancelled", "2 timed out")."""
    ended = [r.status.value for r in card.runs if r.status.value not in ("done", "skipped")]
    if not ended:
        return "done"
    return ", ".join(f"{ended.count(s)} {s}" if len(ended) > 1 else s for s in sorted(set(ended)))


def _descendants(widget: Any) -> list[Any]:
    out = [widget]
    for child in getattr(widget, "children", ()):
        out.extend(_descendants(child))
    return out


def _table(rows: list[tuple[Any, Any]]) -> str:
    if not rows:
        return "<i>No findings at this level.</i>"
    pad = "style='padding:1px 12px 1px 0;text-align:left'"
    head = "<tr>" + "".join(f"<th {pad}>{h}</th>" for h in ("severity", "finding", "check", "about", "cell")) + "</tr>"
    body = []
    for card, f in rows[:TABLE_ROWS]:
        cell = "" if card.execution_count is None else f"[{int(card.execution_count)}]"
        cells = (_esc(f.severity.label), _esc(f.title, 160), _esc(f.check), _esc(f.target or card.subject, 80), cell)
        body.append("<tr>" + "".join(f"<td {pad}>{c}</td>" for c in cells) + "</tr>")
    more = f"<tr><td colspan='5'>+{len(rows) - TABLE_ROWS} more</td></tr>" if len(rows) > TABLE_ROWS else ""
    return ("<table class='mlsec-panel-table' style='border-collapse:collapse;font-size:12px'>"
            + head + "".join(body) + more + "</table>")
