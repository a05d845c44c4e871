"""The ``%mlsec`` line magic and ``%%mlsec`` cell magic."""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from .artifacts import Dataset, Kind, Model, ModelFile, Role, classify, features_of, framework_of, torch_data_parts
from .checks._parallel import BackendError, check_backend, parse_backend
from .checks.registry import all_checks

if TYPE_CHECKING:  # pragma: no cover
    from .extension import Extension

_HELP = """Steer mlsec-jupyter's security checks.

Usage:
  %mlsec status                 what is on, running and found so far
  %mlsec on | off               watch every cell / stop watching (off also cancels running checks)
  %mlsec scan EXPR [LABELS]     check a dataset (EXPR, optional labels LABELS) or a fitted model now
  %mlsec checks                 list the registered checks
  %mlsec scanfile PATH          scan a model file (pickle, joblib, torch, .npy/.npz) for code it would
                                run when loaded, without loading it
  %mlsec probe MODEL [X Y] [--eps E1,E2,...] [--attack auto|fgsm|pgd|exact|blackbox]
                [--norm linf|l2] [--rows N] [--steps N] [--seconds S]
                                the full evasion sweep on MODEL in the background, with progress on
                                its card: more rows and ε than the automatic check (default: the
                                held-out rows it was evaluated on, else the rows X Y you give;
                                ε from the data; time budget max(time_budget, 120 s))
  %mlsec config [KEY=VALUE ...] show or change settings: time_budget (seconds per check),
                                sample_size (rows per check), slow_sample_size (rows for
                                the slow checks: label flips, outliers), auto (on/off),
                                min_severity (info/low/medium/high/critical), audit (on/off), workers,
                                budget_policy (warn/block: a DP training that would exceed a
                                privacy budget gets a warning card, or does not run),
                                file_policy (warn/block: a cell loading an unsafe model file gets a
                                card before it runs, or does not run), backend (where heavy
                                sweeps run: local; dask = the running dask.distributed Client;
                                tcp://HOST:PORT = a Dask scheduler; ray = the running Ray cluster)
  %mlsec wait [SECONDS]         wait for running checks and refresh their cards (for scripted runs)
  %mlsec panel                  a panel in the output area: this session's findings with filters,
                                re-run a check with its parameters (progress, cancel), privacy
                                budgets, export to HTML / JSON / SARIF
  %mlsec report [PATH] [--format html|json|sarif]
                                write everything found this session (the latest card of each cell):
                                one self-contained HTML page, JSON (card schema) or SARIF 2.1.0 with
                                MITRE ATLAS / OWASP ML Top 10 / NIST AI RMF ids (default
                                mlsec-report.html; the format follows the file name)
  %mlsec cancel                 cancel running checks
  %mlsec sign VAR [LABELS] [--key KEYFILE] [--out MANIFEST]
                                fingerprint VAR (and LABELS) and write an Ed25519-signed manifest
                                (default .mlsec/manifests/VAR.json; a new key is made at
                                .mlsec/signing_key.pem, mode 600, when none is given)
  %mlsec budget VAR eps=E delta=D
                                set a privacy budget for the data in VAR (array, DataFrame, tensor,
                                TensorDataset or DataLoader): every DP training on it is counted
                                against it, across cells and kernel restarts (.mlsec/privacy/). The
                                budget follows the exact content (values and dtype): budget the
                                tensor or loader you train on
  %mlsec budget VAR [clear]     show the budget and what is spent / remove the budget
  %mlsec verify VAR [LABELS] [MANIFEST] [--trust KEYFILE]
                                check the manifest's signature and that VAR still has the signed
                                content (MANIFEST defaults to .mlsec/manifests/VAR.json; --trust
                                also requires the signer to be that key)

  %%mlsec                       (first line of a cell) watch this one cell even when auto is off

Examples:
  %mlsec scan X_train y_train
  %mlsec probe net --attack pgd --norm l2
  %mlsec config time_budget=10 min_severity=low
  %mlsec sign X_train y_train
  %mlsec budget train_loader eps=3 delta=1e-5
  %mlsec verify X_train y_train .mlsec/manifests/X_train.json
  %mlsec report findings.sarif
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one clear line instead of SystemExit and a usage dump
        raise UsageError(f"%mlsec: {message}. Type %mlsec? for help.")


def _parser() -> _Parser:
    parser = _Parser(prog="%mlsec", add_help=False)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    sub.add_parser("status")
    sub.add_parser("on")
    sub.add_parser("off")
    sub.add_parser("checks")
    sub.add_parser("cancel")
    scan = sub.add_parser("scan")
    scan.add_argument("expr")
    scan.add_argument("labels", nargs="?")
    config = sub.add_parser("config")
    config.add_argument("pairs", nargs="*")
    sign = sub.add_parser("sign")
    sign.add_argument("expr")
    sign.add_argument("labels", nargs="?")
    sign.add_argument("--key", default=None)
    sign.add_argument("--out", default=None)
    verify = sub.add_parser("verify")
    verify.add_argument("words", nargs="+")
    verify.add_argument("--trust", default=None)
    sub.add_parser("blocked")  # what a cell blocked before it ran is replaced by (not in the help)
    budget = sub.add_parser("budget")
    budget.add_argument("expr")
    budget.add_argument("words", nargs="*")
    scanfile = sub.add_parser("scanfile")
    scanfile.add_argument("path")
    probe = sub.add_parser("probe")
    probe.add_argument("expr")
    probe.add_argument("data", nargs="*")
    probe.add_argument("--eps", default=None)
    probe.add_argument("--attack", default="auto", choices=["auto", "fgsm", "pgd", "exact", "blackbox"])
    probe.add_argument("--norm", default="linf", choices=["linf", "l2"])
    probe.add_argument("--rows", type=int, default=None)
    probe.add_argument("--steps", type=int, default=None)
    probe.add_argument("--seconds", type=float, default=None)
    wait = sub.add_parser("wait")
    wait.add_argument("seconds", nargs="?", type=float, default=None)
    sub.add_parser("panel")
    report = sub.add_parser("report")
    report.add_argument("path", nargs="?", default=None)
    report.add_argument("--format", default=None, choices=["html", "json", "sarif"])
    return parser


@magics_class
class MlsecMagics(Magics):
    """Magics bound to one loaded :class:`~mlsec_jupyter.extension.Extension`."""

    def __init__(self, shell: Any, extension: "Extension") -> None:
        super().__init__(shell)
        self.extension = extension

    @line_cell_magic
    def mlsec(self, line: str = "", cell: str | None = None) -> Any:
        if cell is not None:
            return self._watch_cell(line, cell)
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%mlsec: cannot parse {line!r}: {exc}. Type %mlsec? for help.") from None
        if not words or words[0] in {"-h", "--help", "help"}:
            print(_HELP)
            return None
        args = _parser().parse_args(words)
        return getattr(self, f"_cmd_{args.command}")(args)

    mlsec.__doc__ = _HELP

    # -- commands ---------------------------------------------------------------------------------
    @property
    def _session(self) -> Any:
        return self.extension.session

    def _cmd_status(self, args: argparse.Namespace) -> None:
        s = self._session
        counters = ", ".join(f"{v} {k}" for k, v in s.runner.counters.items() if v) or "none yet"
        print(f"mlsec-jupyter: watching {'on' if s.config.auto else 'off'}; "
              f"{len(all_checks())} checks registered; {s.runner.busy} check(s) running or queued.\n"
              f"Cards shown: {len(s.cards)}; checks finished: {counters}.\n"
              f"Audit log: {s.audit.path if s.config.audit else 'off'}"
              f"{f' ({s.audit_errors} write errors)' if s.audit_errors else ''}.\n"
              + (f"Privacy ledger: {s.ledger_errors} DP training(s) could not be recorded in "
                 f"{s.audit_dir / 'privacy'} (disk full, file locked or corrupt): their ε is not counted.\n"
                 if s.ledger_errors else "")
              + f"Settings: {_settings_text(s.config.as_dict())}")

    def _cmd_on(self, args: argparse.Namespace) -> None:
        self._session.config.auto = True
        print("mlsec-jupyter: watching every cell.")

    def _cmd_off(self, args: argparse.Namespace) -> None:
        self._session.config.auto = False
        cancelled = self._session.runner.cancel_all()
        print(f"mlsec-jupyter: not watching cells{f'; cancelled {cancelled} running check(s)' if cancelled else ''}. "
              "Use %%mlsec on a cell to check it anyway, or %mlsec on.")

    def _cmd_cancel(self, args: argparse.Namespace) -> None:
        print(f"mlsec-jupyter: cancelled {self._session.runner.cancel_all()} check(s).")

    def _cmd_checks(self, args: argparse.Namespace) -> None:
        rows = [(s.id, s.applies_to, s.cost, ", ".join(s.requires) or "-", s.title) for s in all_checks()]
        header = ("check", "applies to", "cost", "requires", "what it looks for")
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
        for row in [header, *rows]:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) + "  " + row[4])

    def _cmd_config(self, args: argparse.Namespace) -> None:
        config = self._session.config
        trial = dataclasses.replace(config)  # all settings or none: a refused one leaves every one as it was
        for pair in args.pairs:
            key, sep, value = pair.partition("=")
            if not sep:
                raise UsageError(f"%mlsec config: expected KEY=VALUE, got {pair!r}. Type %mlsec? for help.")
            try:
                trial.set(key.strip(), value)
            except ValueError as exc:
                raise UsageError(f"%mlsec config: {exc}") from None
        where = ""
        if trial.backend != config.backend:
            try:
                where = check_backend(parse_backend(trial.backend))
            except BackendError as exc:
                raise UsageError(f"%mlsec config: {exc} No setting was changed.") from None
        for f in dataclasses.fields(config):
            setattr(config, f.name, getattr(trial, f.name))
        self._session.apply_config()
        print(f"mlsec-jupyter settings: {_settings_text(config.as_dict())}")
        if where:
            print(f"Heavy sweeps (shadow models, ε values) now run on: {where}.")

    def _cmd_wait(self, args: argparse.Namespace) -> None:
        seconds = args.seconds if args.seconds is not None else self._session.config.time_budget * 4
        done = self._session.runner.wait(seconds)
        for card in list(self._session.cards):  # refresh cards whose last update no client kept
            if card.status == "done":
                self.extension.display.update(card)
        if done:
            print(f"mlsec-jupyter: all checks finished ({len(self._session.cards)} card(s) this session).")
        else:
            print(f"mlsec-jupyter: {self._session.runner.busy} check(s) still running after {seconds:g} s.")

    def _cmd_scan(self, args: argparse.Namespace) -> Any:
        obj = self._evaluate(args.expr)
        labels = self._evaluate(args.labels) if args.labels else None
        kind = classify(obj)
        if kind in (Kind.TORCH_LOADER, Kind.TORCH_DATASET):  # its tensors; never iterated
            obj, own_labels = torch_data_parts(obj)
            labels = own_labels if labels is None else labels
            kind = classify(obj)
        if kind in (Kind.SKLEARN_MODEL, Kind.TORCH_MODEL):
            artifact: Any = Model(obj=obj, name=args.expr, framework=framework_of(kind))
        elif kind in (Kind.ARRAY, Kind.FRAME, Kind.TORCH_DATASET, Kind.STREAM) or type(obj) in (list, tuple, dict):
            name = args.expr if labels is None else f"{args.expr}, {args.labels}"
            artifact = Dataset(X=obj, y=labels, name=name, source=f"%mlsec scan {args.expr}")
        else:
            raise UsageError(f"%mlsec scan: {args.expr!r} is a {type(obj).__name__}; expected an array, a "
                             "DataFrame, a tensor, a list of rows, a torch Dataset/DataLoader or a fitted model.")
        card = self.extension.start_card([artifact])
        if card is None:
            print(f"mlsec-jupyter: no registered check applies to {args.expr} yet.")
        return None

    def _cmd_scanfile(self, args: argparse.Namespace) -> Any:
        path = Path(args.path).expanduser()
        if not path.is_file():
            raise UsageError(f"%mlsec scanfile: {args.path!r} is not a file (looked in {Path.cwd()}).")
        artifact = ModelFile(path=str(path.resolve()), loader="", name=args.path)
        self.extension.start_card([artifact], subject=f"model file {args.path}")
        return None

    def _cmd_probe(self, args: argparse.Namespace) -> Any:
        from .checks.robustness._common import check_eps, linear_form

        model = self._value("probe", args.expr)
        kind = classify(model)
        if kind not in (Kind.SKLEARN_MODEL, Kind.TORCH_MODEL):
            raise UsageError(f"%mlsec probe: {args.expr!r} is a {type(model).__name__}; expected a fitted "
                             "scikit-learn model or a torch module.")
        if args.attack in ("fgsm", "pgd") and kind is not Kind.TORCH_MODEL:
            raise UsageError(f"%mlsec probe: --attack {args.attack} needs gradients (a torch module); use "
                             f"--attack blackbox{' or exact' if linear_form(model) else ''} for {args.expr}.")
        params: dict[str, Any] = {"full": True, "attack": args.attack, "norm": args.norm}
        if args.eps is not None:
            try:
                params["eps"] = check_eps([float(e) for e in args.eps.replace(",", " ").split()])
            except ValueError:
                raise UsageError(f"%mlsec probe: --eps must be positive numbers separated by commas, got "
                                 f"{args.eps!r} (e.g. --eps 0.05,0.1,0.2).") from None
        for name, value in (("rows", args.rows), ("steps", args.steps), ("seconds", args.seconds)):
            if value is not None and value <= 0:
                raise UsageError(f"%mlsec probe: --{name} must be positive, got {value:g}.")
        if args.rows:
            params["n_rows"] = args.rows
        if args.steps:
            params["steps"] = args.steps
        data = self._probe_data(args, model)
        train = Dataset(X=data["X"], y=data["y"], name=data["name"], role=Role.TRAIN)
        test = None if data.get("X_test") is None else Dataset(X=data["X_test"], y=data["y_test"],
                                                               name="held-out rows", role=Role.TEST)
        artifact = Model(obj=model, name=args.expr, framework=framework_of(kind), train=train, test=test)
        seconds = args.seconds or max(self._session.config.time_budget, 120.0)
        card = self.extension.start_card([artifact], subject=f"{args.expr}: full evasion sweep",
                                         only={"robustness.evasion": params}, seconds=seconds)
        if card is None:
            print(f"mlsec-jupyter: the evasion check does not apply to {args.expr}.")
        return None

    def _probe_data(self, args: argparse.Namespace, model: Any) -> dict[str, Any]:
        """The rows to attack (``X_test``, ``y_test``) and, when known, the training data (for the data's
        scale and class gap): the rows given on the line, else the held-out rows the model was seen with."""
        known = self._session.fitted_on(model)
        if args.data:
            if len(args.data) != 2:
                raise UsageError(f"%mlsec probe: give the rows to attack as X Y (features and labels), got "
                                 f"{' '.join(args.data)!r}.")
            X, y = self._value("probe", args.data[0]), self._value("probe", args.data[1])
            train = known if known is not None and known.get("y") is not None else {"X": X, "y": y}
            return {"X": train["X"], "y": train["y"], "X_test": X, "y_test": y,
                    "name": f"{args.data[0]}, {args.data[1]}"}
        if known is None or known.get("y") is None:
            raise UsageError(f"%mlsec probe: mlsec-jupyter has not seen {args.expr} fitted on labelled data in "
                             f"this session; give the rows to attack: %mlsec probe {args.expr} X_test y_test.")
        return {**known, "name": "its training data"}

    def _evaluate(self, expr: str) -> Any:
        try:
            return self.shell.ev(expr)
        except Exception as exc:
            raise UsageError(f"%mlsec scan: could not evaluate {expr!r}: {type(exc).__name__}: {exc}") from None

    def _cmd_panel(self, args: argparse.Namespace) -> Any:
        from .panel import Panel

        panel = Panel(self._session, lambda name: self._value("panel", name))
        self.extension.panels.append(panel)  # kept for the session: its buttons keep working
        return panel.widget

    def _cmd_report(self, args: argparse.Namespace) -> None:
        from .reports import format_for, locate, summary, write_report

        path = args.path or f"mlsec-report.{args.format or 'html'}"
        try:
            chosen = format_for(path, args.format)
        except ValueError as exc:
            raise UsageError(f"%mlsec report: {exc}") from None
        session = self._session
        session.notebook = self.extension.notebook_path() or session.notebook
        entries = locate(session.report_cards(), session.notebook)
        try:
            target = write_report(path, entries, format=chosen, notebook=session.notebook)
        except (OSError, ValueError) as exc:
            raise UsageError(f"%mlsec report: could not write {path!r}: {exc}") from None
        counts = summary(entries)
        found = ", ".join(f"{n} {name}" for name, n in counts["by_severity"].items() if n) or "no findings"
        print(f"mlsec-jupyter: wrote {target} ({chosen}): {counts['cards']} card(s), {found}.")
        if counts["cards_still_running"]:
            print(f"Note: {counts['cards_still_running']} card(s) were still running, so their findings are "
                  "missing; run %mlsec wait, then %mlsec report again.")

    def _cmd_blocked(self, args: argparse.Namespace) -> None:
        reason = self.extension.blocked_reason or "mlsec-jupyter blocked this cell."
        interrupted = self.extension.blocked_by_interrupt
        self.extension.blocked_reason, self.extension.blocked_by_interrupt = "", False
        if interrupted:  # an error reply, as for any interrupted cell, so "Run All" stops here
            raise KeyboardInterrupt(reason)
        raise UsageError(reason)

    # -- privacy budget -------------------------------------------------------------------------------
    def _cmd_budget(self, args: argparse.Namespace) -> None:
        from .checks.privacy.dp_budget import default_delta
        from .privacy.accounting import epsilon_of_history
        from .provenance import Unsupported, fingerprint

        X = features_of(self._value("budget", args.expr))
        if X is None:
            raise UsageError(f"%mlsec budget: {args.expr!r} is not data; expected an array, a DataFrame, a tensor, "
                             "a TensorDataset or a DataLoader over one.")
        try:
            key = fingerprint(X)
        except Unsupported as exc:
            raise UsageError(f"%mlsec budget: cannot fingerprint {args.expr}: {exc}.") from None
        ledger = self._session.ledger
        settings, words = _pairs(args.words, "budget")
        if words == ["clear"]:
            ledger.clear_budget(key)
            print(f"mlsec-jupyter: removed the privacy budget of {args.expr}.")
            return
        if words:
            raise UsageError(f"%mlsec budget: unexpected {' '.join(words)!r}; expected eps=E delta=D or clear.")
        if settings:
            unknown = sorted(set(settings) - {"eps", "delta"})
            if unknown:
                raise UsageError(f"%mlsec budget: unknown setting(s) {', '.join(unknown)}; expected eps=E and "
                                 f"delta=D (e.g. eps=3 delta=1e-5).")
            if set(settings) != {"eps", "delta"}:
                raise UsageError("%mlsec budget: give both eps=E and delta=D (e.g. eps=3 delta=1e-5).")
            try:
                ledger.set_budget(key, epsilon=float(settings["eps"]), delta=float(settings["delta"]))
            except ValueError as exc:
                raise UsageError(f"%mlsec budget: {exc}") from None
        limit = ledger.budget(key)
        history = ledger.history(key)
        delta = limit[1] if limit else default_delta(_rows(X))  # the δ the DP card uses
        spent = float(epsilon_of_history(history, delta=delta)) if history else 0.0
        if limit is None:
            print(f"mlsec-jupyter: {args.expr} has no privacy budget; spent ε = {spent:.3g} at δ = {delta:.0e} "
                  f"over {len(ledger.entries(key))} DP training(s). Set one with %mlsec budget {args.expr} eps=E delta=D.")
        else:
            print(f"mlsec-jupyter: privacy budget of {args.expr} (data {key[:12]}…, {_shape_text(X)}): "
                  f"ε = {limit[0]:g} at δ = {limit[1]:.0e}; spent "
                  f"ε = {spent:.3g} over {len(ledger.entries(key))} DP training(s); remaining "
                  f"{max(limit[0] - spent, 0.0):.3g}.")

    # -- sign / verify ---------------------------------------------------------------------------------
    def _value(self, command: str, expr: str) -> Any:
        try:
            return self.shell.ev(expr)
        except Exception as exc:
            raise UsageError(f"%mlsec {command}: could not evaluate {expr!r}: {type(exc).__name__}: {exc}") from None

    def _cmd_sign(self, args: argparse.Namespace) -> None:
        from . import provenance as pv

        X = self._value("sign", args.expr)
        y = self._value("sign", args.labels) if args.labels else None
        key_path = Path(args.key) if args.key else Path(".mlsec") / "signing_key.pem"
        out = Path(args.out) if args.out else Path(".mlsec") / "manifests" / f"{_file_stem(args.expr)}.json"
        try:
            key, created = pv.load_or_create_key(key_path, create=args.key is None)
            manifest, fp = pv.sign_data(X, y, name=args.expr, labels=args.labels, private_key=key)
            written = pv.write_manifest(manifest, out)
        except ImportError:
            raise UsageError("%mlsec sign: signing needs the cryptography package: "
                             "pip install cryptography") from None
        except (pv.KeyFileError, pv.Unsupported) as exc:
            raise UsageError(f"%mlsec sign: {exc}.") from None
        except OSError as exc:
            raise UsageError(f"%mlsec sign: cannot write {exc.filename or out}: {exc.strerror or exc}.") from None
        key_id = manifest["payload"]["key_id"]
        if not created and key_path.stat().st_mode & 0o077:
            print(f"mlsec-jupyter: warning: {key_path} can be read by other users; chmod 600 {key_path}")
        if created:
            print(f"mlsec-jupyter: created signing key {key_path} (mode 600); public key fingerprint {key_id}. "
                  "Keep it private; share the manifest, which carries the public key.")
        names = f"{args.expr}, {args.labels}" if args.labels else args.expr
        print(f"mlsec-jupyter: signed {names} "
              f"— sha {fp.sha[:16]}… ({fp.n_bytes:,} bytes) with key {key_id}; manifest {written}.")

    def _cmd_verify(self, args: argparse.Namespace) -> None:
        from . import provenance as pv

        words = args.words
        if len(words) > 3:
            raise UsageError("%mlsec verify: expected VAR [LABELS] [MANIFEST]. Type %mlsec? for help.")
        expr = words[0]
        labels = words[1] if len(words) == 3 else None
        manifest = words[-1] if len(words) > 1 else str(Path(".mlsec") / "manifests" / f"{_file_stem(expr)}.json")
        X = self._value("verify", expr)
        y = self._value("verify", labels) if labels else None
        try:
            trusted = None
            if args.trust:
                trusted = _public_bytes(pv, Path(args.trust))
            verdict = pv.verify_manifest(manifest, X, y, trusted_public_key=trusted)
        except ImportError:
            raise UsageError("%mlsec verify: verifying needs the cryptography package: "
                             "pip install cryptography") from None
        except pv.KeyFileError as exc:
            raise UsageError(f"%mlsec verify: {exc}.") from None
        if verdict.status == "unsupported":
            raise UsageError(f"%mlsec verify: {verdict.message}.")
        mark = "OK" if verdict.ok else "FAILED"
        print(f"mlsec-jupyter verify {expr}{f', {labels}' if labels else ''} against {manifest}: {mark} — "
              f"{verdict.message}")

    # -- %%mlsec -----------------------------------------------------------------------------------
    def _watch_cell(self, line: str, cell: str) -> None:
        if line.strip():
            raise UsageError("%%mlsec takes no arguments; put it alone on the first line of the cell.")
        self.extension.force_next = True
        self.shell.run_cell(cell, store_history=False)


def _file_stem(expr: str) -> str:
    """A safe file name for a manifest named after an expression."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", expr).strip("._")
    return stem[:100] or "data"


def _public_bytes(pv: Any, path: Path) -> bytes:
    """Raw Ed25519 public key from a PEM public or private key file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise pv.KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    try:
        key: Any = serialization.load_pem_public_key(data)
    except ValueError:
        private = pv.load_or_create_key(path, create=False)[0]
        key = private.public_key()
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise pv.KeyFileError(f"{path} is not an Ed25519 key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _settings_text(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={'on' if v is True else 'off' if v is False else v}" for k, v in values.items())


def _shape_text(X: Any) -> str:
    shape = "×".join(str(n) for n in getattr(X, "shape", ())) or "?"
    return f"{shape} {getattr(X, 'dtype', '')}".strip()


def _rows(X: Any) -> int | None:
    try:
        return int(X.shape[0])
    except (AttributeError, TypeError, ValueError, IndexError):
        return None


def _pairs(words: list[str], command: str) -> tuple[dict[str, str], list[str]]:
    """``KEY=VALUE`` words as a dict, and the other words."""
    pairs, rest = {}, []
    for word in words:
        if "=" in word:
            key, _, value = word.partition("=")
            if not key or not value:
                raise UsageError(f"%mlsec {command}: cannot read {word!r}; expected KEY=VALUE.")
            pairs[key.strip().lower()] = value.strip()
        else:
            rest.append(word)
    return pairs, rest
