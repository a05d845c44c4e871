"""Wiring into IPython: hooks, the card display and load/unload.

The only module (with :mod:`.magics`) that touches IPython. Every hook catches everything: the
user's cell keeps its own outputs, success or failure and interrupt behaviour (reliability R1-R3).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .artifacts import Artifact, DPTraining, ModelFile
from .findings import CheckStatus, RiskCard
from .history import RunKey
from .preflight import Preflight, interrupted_before_run, preflight
from .runner import install_warning_filter, remove_warning_filter
from .session import Session, active_session, set_active_session, subject_of
from .watch.cell import CellIntent, might_intend, parse_cell
from .watch.dp import mentions_opacus
from .watch.namespace import Snapshot

log = logging.getLogger("mlsec_jupyter")

_STATE: "Extension | None" = None


@dataclass
class _Pending:
    intent: CellIntent
    snapshot: Snapshot
    cell_id: str | None
    force: bool


class CardDisplay:
    """Shows a card under the running cell and updates it in place from worker threads.

    The frame is displayed on the main thread with ``display_id = card.card_id`` (R6). Updates
    from a worker are published with the originating cell's parent header, so a front end routes
    them to that cell even when another cell is running (ipykernel 7 sends thread output without a
    parent to the latest cell). Clients that only follow the running cell (nbclient, papermill)
    get a second copy under the current parent, and the final bundle once more at the start of the
    next cell, in case it arrived while no cell ran; the other front ends ignore these copies, since
    an update for a display id they do not hold in that cell is a no-op.
    Shells without a kernel (terminal IPython, tests) get the finished card at once instead.
    """

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self._parents: dict[str, dict[str, Any]] = {}
        self._finished: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()  # one update at a time, so a card never goes back in time

    @property
    def live(self) -> bool:
        """Whether a kernel can route a worker's update to the cell that made the card: ipykernel 7 by a
        thread parent, ipykernel 6 by a message sent with that parent on its thread-safe IOPub socket."""
        pub = getattr(self.shell, "display_pub", None)
        return hasattr(pub, "set_thread_parent") or all(hasattr(pub, a) for a in ("session", "pub_socket", "topic"))

    def show(self, card: RiskCard) -> None:
        from IPython.display import display

        parent = getattr(self.shell.display_pub, "parent_header", None)
        with self._lock:
            if parent:
                self._parents[card.card_id] = copy.deepcopy(parent)
            display(card._repr_mimebundle_(), raw=True, display_id=card.card_id)

    def update(self, card: RiskCard) -> None:
        """Publish the card's current state (called from workers, and by ``%mlsec wait``)."""
        from IPython.display import update_display

        with self._lock:
            bundle = card._repr_mimebundle_()
            done = card.status == "done"
            parent = self._parents.pop(card.card_id, None) if done else self._parents.get(card.card_id)
            pub = self.shell.display_pub
            if parent:
                self._update_under(parent, bundle, card.card_id)
                if done:
                    self._finished.append((card.card_id, bundle))
                current = getattr(pub, "parent_header", None) or {}  # the running cell's (ipykernel 6: of any thread)
                if current.get("msg_id") == parent.get("msg_id"):
                    return
            update_display(bundle, raw=True, display_id=card.card_id)

    def _update_under(self, parent: dict[str, Any], bundle: dict[str, Any], display_id: str) -> None:
        """Send an update of ``display_id`` as output of the cell whose header is ``parent``."""
        from IPython.display import update_display

        pub = self.shell.display_pub
        if hasattr(pub, "set_thread_parent"):  # ipykernel 7: the parent of this thread's output
            token = pub.set_thread_parent(parent)
            try:
                update_display(bundle, raw=True, display_id=display_id)
            finally:
                pub.reset_thread_parent(token)
            return
        # ipykernel 6: its display publisher has one parent for all threads (the running cell), so the
        # message is built with the card's parent and sent on the IOPub socket, which is thread-safe there
        content = {"data": bundle, "metadata": {}, "transient": {"display_id": display_id}}
        pub.session.send(pub.pub_socket, pub.session.msg("update_display_data", content, parent=parent),
                         ident=pub.topic)

    def resend_finished(self) -> None:
        """At the start of a cell: send cards finished since the last one again, under this cell."""
        from IPython.display import update_display

        with self._lock:
            finished, self._finished = self._finished, []
            for card_id, bundle in finished:
                update_display(bundle, raw=True, display_id=card_id)


class _PerThread:
    """An attribute of :class:`Extension` with one value per thread (``default()`` until a thread sets it)."""

    def __init__(self, default: Callable[[], Any]) -> None:
        self.default = default

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, ext: Any, owner: type | None = None) -> Any:
        if ext is None:
            return self
        state = ext._threads
        if not hasattr(state, self.name):
            setattr(state, self.name, self.default())
        return getattr(state, self.name)

    def __set__(self, ext: Any, value: Any) -> None:
        setattr(ext._threads, self.name, value)


class Extension:
    """Everything ``%load_ext mlsec_jupyter`` adds to a shell, and how to take it away again."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.session = Session(audit_dir=_audit_dir())
        self.display = CardDisplay(shell)
        self.magics: Any = None
        self._registered: list[tuple[str, Any]] = []
        self._warmup: threading.Thread | None = None
        self._threads = threading.local()  # the state of the cell each thread runs (see _PerThread)
        self.panels: list[Any] = []  # %mlsec panel widgets of this session (closed on unload)
        self._runs = itertools.count(1)  # numbers cell runs: cards of one run belong together (history.RunKey)

    # The running cell's state, one per thread: a kernel subshell (ipykernel 7) runs its cells in its own
    # thread, at the same time as the main shell's cell (R7).
    force_next = _PerThread(lambda: False)  # %%mlsec: watch the next cell although auto is off
    _pending = _PerThread(lambda: None)  # what the running cell is expected to make (_Pending)
    _depth = _PerThread(lambda: 0)  # nesting of run_cell calls
    _interrupted = _PerThread(lambda: False)
    _preflight = _PerThread(lambda: None)  # (source, Preflight): the last cell source checked before running
    _preflight_card = _PerThread(lambda: None)  # findings to show when that cell starts
    blocked_reason = _PerThread(str)
    blocked_by_interrupt = _PerThread(lambda: False)  # the cell was stopped by an interrupt of its pre-run checks
    _dp_hint = _PerThread(lambda: False)  # the running cell mentions Opacus: scan for its engines afterwards
    _cell_id = _PerThread(lambda: None)  # of the running cell, for cards that no source intent announced
    _raw_cell = _PerThread(str)  # the running cell's source (its key when the front end sends no cell id)
    _scanned = _PerThread(set)  # model files the running cell's pre-run check already scanned
    _run_serial = _PerThread(lambda: 0)  # the number of the cell run this thread is in

    # -- load / unload --------------------------------------------------------------------------
    def register(self) -> None:
        from .magics import MlsecMagics

        for event, callback in (("pre_run_cell", self.pre_run_cell), ("post_run_cell", self.post_run_cell)):
            self.shell.events.register(event, callback)
            self._registered.append((event, callback))
        self.magics = MlsecMagics(self.shell, self)
        self.shell.register_magics(self.magics)
        self.shell.input_transformers_post.append(self.gate)
        install_warning_filter()
        self._warmup = threading.Thread(target=_warm_up, name="mlsec-warmup", daemon=True)
        self._warmup.start()

    def unregister(self) -> None:
        for event, callback in self._registered:
            try:
                self.shell.events.unregister(event, callback)
            except ValueError:
                pass
        self._registered.clear()
        transformers = self.shell.input_transformers_post
        while self.gate in transformers:
            transformers.remove(self.gate)
        if self.magics is not None:
            manager = self.shell.magics_manager
            ours = getattr(self.magics, "mlsec", None)
            for kind in ("line", "cell"):
                if manager.magics[kind].get("mlsec") == ours:  # remove only if still ours (R5)
                    manager.magics[kind].pop("mlsec", None)
            if manager.registry.get(type(self.magics).__name__) is self.magics:
                manager.registry.pop(type(self.magics).__name__, None)
            self.magics = None
        remove_warning_filter()
        for panel in self.panels:
            panel.close()
        self.panels.clear()
        if self._warmup is not None:
            self._warmup.join(2.0)
        self.session.close()

    def notebook_path(self) -> str | None:
        """The notebook file this kernel runs, when the front end says (JupyterLab and Notebook 7 set
        ``__session__``, VS Code ``__vsc_ipynb_file__``), else ``None``."""
        ns = self.shell.user_ns
        for value in (ns.get("__vsc_ipynb_file__"), ns.get("__session__"), os.environ.get("JPY_SESSION_NAME")):
            if isinstance(value, str) and value.endswith(".ipynb"):
                path = Path(value).expanduser()
                if not path.is_file() and Path(path.name).is_file():  # a path relative to the server root
                    path = Path(path.name)
                return str(path)
        return None

    # -- before a cell runs ---------------------------------------------------------------------
    def gate(self, lines: list[str]) -> list[str]:
        """Input transformer (IPython transforms a cell before ``pre_run_cell``): run the pre-run
        checks of :mod:`mlsec_jupyter.preflight` and replace a blocked cell by one clear error. An
        interrupt while they run stops the cell as if it had been interrupted itself (R2)."""
        source = "".join(lines)
        try:
            if not self.session.config.auto or not might_intend(source):
                return lines
            checked = self._checked_before_run(source)
        except KeyboardInterrupt:  # between the pre-run checks: nothing to show, the cell must still stop
            checked = Preflight(block=interrupted_before_run("checks"), interrupted="")
            self._preflight = (source, checked)  # pre_run_cell transforms the same source again
            self._interrupted = True  # in case this was pre_run_cell's transform: the cell then ends interrupted
        except Exception:
            log.debug("mlsec pre-run check failed", exc_info=True)
            return lines
        if not checked.block:
            return lines
        self.blocked_reason = checked.block
        self.blocked_by_interrupt = checked.interrupted is not None
        return ["get_ipython().run_line_magic('mlsec', 'blocked')\n"]

    def _checked_before_run(self, source: str) -> Preflight:
        if self._preflight is not None and self._preflight[0] == source:
            return self._preflight[1]  # pre_run_cell transforms the same source again
        intent = parse_cell(source, self.shell.user_ns)
        checked = (preflight(intent, self.shell.user_ns, self.session) if intent.torch_training or intent.file_loads
                   else Preflight())
        self._scanned = checked.scanned
        self._preflight = (source, checked)
        self._preflight_card = checked if checked.findings or checked.interrupted else None
        return checked

    def _show_preflight(self) -> None:
        checked, self._preflight_card = self._preflight_card, None
        if checked is None:
            return
        card = RiskCard(checked.subject, cell_id=self._cell_id)
        card.min_severity = self.session.config.min_severity
        card.add(checked.findings)
        if checked.interrupted:
            card.finish_run(card.expect(checked.interrupted), CheckStatus.CANCELLED,
                            message="interrupted before the cell ran; the cell did not run")
        self.session.keep(card, self._run_key("before the cell ran"))
        self.display.show(card)

    # -- hooks ----------------------------------------------------------------------------------
    def pre_run_cell(self, info: Any = None) -> None:
        self._depth += 1
        try:
            if self._depth == 1:
                self.session.runner.gate.cell_started()  # workers may not rewind RNG states from now on
                self._cell_id = getattr(info, "cell_id", None)
                self._run_serial = next(self._runs)  # one counter for all threads (itertools.count is atomic)
                self._raw_cell = getattr(info, "raw_cell", "") or ""
                if isinstance(self._cell_id, str) and self._cell_id:  # its earlier cards leave the report now
                    self.session.history.start(self._cell_id, self._run_serial)
            if self._depth == 1 and self.display.live:
                self.display.resend_finished()
            if self._depth == 1:
                self._show_preflight()
            force, self.force_next = self.force_next, False
            if self._pending is not None or not (self.session.config.auto or force):
                return  # an outer cell already records; nested runs merge into it
            raw = getattr(info, "raw_cell", "") or ""
            self._dp_hint = mentions_opacus(raw)
            if not (force or might_intend(raw)):
                return  # most cells stop here, after one regex search
            intent = parse_cell(self.shell.transform_cell(raw), self.shell.user_ns)
            if intent.any or force:
                names = None if intent.dynamic or force else intent.bound
                self._pending = _Pending(intent, Snapshot(self.shell.user_ns, names),
                                         getattr(info, "cell_id", None), force)
        except KeyboardInterrupt:
            self._interrupted = True
        except Exception:
            log.debug("mlsec pre_run_cell failed", exc_info=True)

    def post_run_cell(self, result: Any = None) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth:
            return
        self.session.runner.gate.cell_finished()
        pending, self._pending = self._pending, None
        self._preflight = self._preflight_card = None
        self.blocked_reason, self.blocked_by_interrupt = "", False
        scanned, self._scanned = self._scanned, set()
        try:
            self._after_cell(pending, result, scanned)
        except KeyboardInterrupt:
            self._interrupted = True
        except Exception:
            log.debug("mlsec post_run_cell failed", exc_info=True)
        if self._interrupted:
            self._interrupted = False
            self._keep_interrupt(result)

    def _after_cell(self, pending: _Pending | None, result: Any, scanned: set[str]) -> None:
        error = getattr(result, "error_in_exec", None)
        if isinstance(error, KeyboardInterrupt):
            self.session.runner.cancel_all()  # the user interrupted: stop our work too
            return
        if result is None or not getattr(result, "success", False):
            return
        if pending is None and not self.session.config.auto:
            return
        ns = self.shell.user_ns
        artifacts: list[Artifact] = []
        if pending is not None:
            changed = pending.snapshot.changed(ns, also=pending.intent.touched)
            artifacts = self.session.assembler.build(pending.intent, changed, ns, force=pending.force)
            # model files scanned before the cell ran are already on the card shown then
            artifacts = [a for a in artifacts if not (isinstance(a, ModelFile) and _absolute(a.path) in scanned)]
        artifacts += self._dp_progress(ns, artifacts)
        if artifacts:
            self.start_card(artifacts, cell_id=pending.cell_id if pending is not None else self._cell_id,
                            execution_count=getattr(result, "execution_count", None))

    def _dp_progress(self, ns: Any, artifacts: list[Artifact]) -> list[Artifact]:
        """DP trainings that took steps in this cell without the cell's source showing a training loop
        (a training function called from here; see :mod:`mlsec_jupyter.watch.dp`)."""
        hint, self._dp_hint = self._dp_hint, False
        watch = self.session.dp_watch
        seen = [a.state for a in artifacts if isinstance(a, DPTraining)]
        watch.note(seen)
        if hint:
            watch.learn(ns)
        return watch.progressed(ns, {s.run_id for s in seen})

    def start_card(self, artifacts: list[Artifact], *, subject: str | None = None,
                   cell_id: str | None = None, execution_count: int | None = None,
                   only: dict[str, dict[str, Any]] | None = None, seconds: float | None = None) -> RiskCard | None:
        """Show a card for ``artifacts`` under the running cell and start its checks (``only`` and
        ``seconds``: see :meth:`Session.prepare`). Its run key is the running cell and the subject, so
        running the cell again compares the new card with this one."""
        subject = subject or subject_of(artifacts)
        prepared = self.session.prepare(artifacts, subject=subject, cell_id=cell_id or self._cell_id,
                                        execution_count=execution_count, only=only, seconds=seconds,
                                        run_key=self._run_key(subject))
        if prepared is None:
            return None
        card, launch = prepared
        if self.display.live:
            self.display.show(card)
            launch(self.display.update)
        else:  # no kernel to update the card later: show it when it is complete
            launch(lambda c: None)
            try:
                self.session.runner.wait((seconds or self.session.config.time_budget) * 4)
            except KeyboardInterrupt:
                self.session.runner.cancel_all()
                self.session.runner.wait(2.0)
                self._interrupted = True
            self.display.show(card)
        return card

    def _run_key(self, origin: str) -> RunKey:
        """This cell run and what in it made a card (see :mod:`mlsec_jupyter.history`): the cell is known by its
        id (runs compared), else by its source (not compared; hashed only here, when a card is made)."""
        if isinstance(self._cell_id, str) and self._cell_id:
            return RunKey(self._cell_id, self._run_serial, origin)
        digest = hashlib.sha1(self._raw_cell.encode("utf-8", "replace")).hexdigest()
        return RunKey("source:" + digest, self._run_serial, origin, compare=False)

    @staticmethod
    def _keep_interrupt(result: Any) -> None:
        """A Ctrl-C that landed in our hook must still stop "Run All": mark the cell as interrupted."""
        if result is not None and getattr(result, "error_in_exec", None) is None:
            try:
                result.error_in_exec = KeyboardInterrupt()
            except Exception:
                pass


def _warm_up() -> None:
    """Import the check modules and renderers in the background, so the first card costs the
    main thread no imports (none of them imports scikit-learn or torch at module level)."""
    try:
        from .checks.registry import load_builtin_checks
        from .render import html  # noqa: F401

        load_builtin_checks()
    except Exception:
        log.debug("mlsec warm-up failed", exc_info=True)


def _audit_dir() -> Path:
    """``.mlsec`` beside the notebook: the kernel's working directory is the notebook's folder."""
    return Path(os.getcwd()) / ".mlsec"


def current() -> Extension | None:
    """The loaded extension, if any."""
    return _STATE


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def load(shell: Any) -> None:
    """Load into ``shell``; loading again is a no-op, loading into another shell moves it."""
    global _STATE
    if _STATE is not None:
        if _STATE.shell is shell and _STATE._registered:
            return
        unload(_STATE.shell)
    state = Extension(shell)
    try:
        state.register()
        state.session.notebook = state.notebook_path()
    except BaseException:
        state.unregister()  # a failed load leaves nothing behind, so a retry starts clean (R4)
        raise
    _STATE = state
    set_active_session(state.session)


def unload(shell: Any) -> None:
    global _STATE
    state, _STATE = _STATE, None
    if state is not None:
        if active_session() is state.session:
            set_active_session(None)
        state.unregister()
