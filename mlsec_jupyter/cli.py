"""``mlsec-jupyter scan NOTEBOOK.ipynb``: the notebook's security checks in CI, with reports and an exit code.

The notebook is executed by nbclient in a real kernel with the extension loaded (a ``%load_ext
mlsec_jupyter`` runs before its first cell, and ``%mlsec wait`` after its last one, so every card is
complete), in the notebook's folder like ``jupyter nbconvert --execute``. One progress line a cell goes to
stderr. Then the reports are written (``--sarif``, ``--html``, ``--json``) and the exit code says what
was found:

* 0: nothing at or above ``--fail-on`` (default ``high``);
* 1: a finding at or above ``--fail-on``;
* 2: the scan itself could not be completed (unreadable notebook, a cell that raised, a dead kernel,
  nbclient missing); the reports written still hold what was found up to there.

``--no-execute`` reads the cards already saved in the notebook instead of running it.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence, TextIO

from .findings import CARD_MIME, Severity
from .reports import Located, cards_in_notebook, cell_start_lines, read_notebook, summary, write_report

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
THRESHOLDS = ("info", "low", "medium", "high", "critical", "never")
SETUP_SOURCE = "%load_ext mlsec_jupyter"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlsec-jupyter",
        description="ML security checks on Jupyter notebooks: run a notebook with mlsec-jupyter loaded, "
                    "write reports, and fail CI on serious findings.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    scan = sub.add_parser(
        "scan", help="execute a notebook with the checks on (or read its saved cards) and report",
        description="Execute NOTEBOOK with mlsec-jupyter loaded (or, with --no-execute, read the risk cards "
                    "saved in it), write the reports asked for, and exit 1 when a finding is at or above "
                    "--fail-on, 2 when the scan could not be completed.")
    scan.add_argument("notebook", help="the .ipynb file")
    scan.add_argument("--sarif", metavar="OUT", help="write a SARIF 2.1.0 report (for code scanning)")
    scan.add_argument("--html", metavar="OUT", help="write a self-contained HTML report")
    scan.add_argument("--json", metavar="OUT", help="write a JSON report (the card schema)")
    scan.add_argument("--fail-on", default="high", choices=THRESHOLDS,
                      help="exit 1 when a finding is at or above this severity (default: high; never: always 0)")
    scan.add_argument("--no-execute", action="store_true", help="read the cards saved in the notebook; run nothing")
    scan.add_argument("--output", metavar="OUT.ipynb", help="save the executed notebook (with its cards) here")
    scan.add_argument("--timeout", type=float, default=600.0,
                      help="seconds a cell may run, and the final wait for checks (default 600)")
    scan.add_argument("--kernel", default=None, help="kernel name (default: the notebook's, else python3)")
    scan.add_argument("--config", metavar="KEY=VALUE", action="append", default=[],
                      help="a %%mlsec config setting for the run, e.g. --config file_policy=block (repeatable)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mlsec-jupyter`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return _scan(args, sys.stdout, sys.stderr)
    except KeyboardInterrupt:
        print("mlsec-jupyter: interrupted.", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - never exit 1 ("findings") for a scan that broke
        print(f"mlsec-jupyter: the scan failed ({type(exc).__name__}: {exc}).", file=sys.stderr)
    return EXIT_ERROR


def _scan(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    path = Path(args.notebook)
    if not path.is_file():
        print(f"mlsec-jupyter: {args.notebook!r} is not a file (looked in {Path.cwd()}).", file=err)
        return EXIT_ERROR
    for key_value in args.config:
        if "=" not in key_value:
            print(f"mlsec-jupyter: --config takes KEY=VALUE (e.g. time_budget=20), got {key_value!r}.", file=err)
            return EXIT_ERROR
    executed = None
    if args.no_execute:
        entries, problem = _saved(path, err)
    else:
        entries, problem, executed = _executed(path, args, err)
    if entries is None:  # nothing was scanned: the reports say why, so a CI upload step still finds them
        print(f"mlsec-jupyter: {problem}", file=err)
        _write_reports(args, [], path, problem, err)
        return EXIT_ERROR
    if not _write_reports(args, entries, path, problem, err):
        return EXIT_ERROR
    if args.output and executed is not None:
        try:
            Path(args.output).write_text(executed, encoding="utf-8")
            print(f"mlsec-jupyter: saved the executed notebook to {args.output}", file=err)
        except OSError as exc:
            problem = problem or f"could not save the executed notebook to {args.output!r}: {exc.strerror or exc}"
    _print_summary(entries, path, out)
    if problem is not None:
        print(f"mlsec-jupyter: {problem}", file=err)
        return EXIT_ERROR
    return _exit_code(entries, args.fail_on, out)


def _write_reports(args: argparse.Namespace, entries: list[Located], path: Path, problem: str | None,
                   err: TextIO) -> bool:
    """Write the reports asked for; ``False`` (said on stderr) when one cannot be written."""
    for kind in ("sarif", "html", "json"):
        target = getattr(args, kind)
        if not target:
            continue
        try:
            written = write_report(target, entries, format=kind, notebook=path, problem=problem)
        except (OSError, ValueError) as exc:
            print(f"mlsec-jupyter: could not write the {kind} report {target!r}: {exc}", file=err)
            return False
        print(f"mlsec-jupyter: wrote {written}", file=err)
    return True


def _exit_code(entries: list[Located], fail_on: str, out: TextIO) -> int:
    if fail_on == "never":
        return EXIT_OK
    threshold = Severity.parse(fail_on)
    over = [f for e in entries for f in e.card.findings if f.severity >= threshold]
    if over:
        print(f"mlsec-jupyter: {len(over)} finding(s) at or above {threshold.label}: exit {EXIT_FINDINGS}.", file=out)
        return EXIT_FINDINGS
    return EXIT_OK


def _print_summary(entries: list[Located], path: Path, out: TextIO) -> None:
    counts = summary(entries)
    found = ", ".join(f"{n} {name}" for name, n in counts["by_severity"].items() if n) or "no findings"
    print(f"mlsec-jupyter: {path.name}: {counts['cards']} card(s), {found}.", file=out)
    issues = sorted(((e, f) for e in entries for f in e.card.findings if f.severity > Severity.INFO),
                    key=lambda pair: -pair[1].severity)
    for entry, f in issues:
        print(f"  {f.severity.label.upper():8} {f.check:20} {entry.cell_label():18} {f.title}", file=out)
    if counts["checks_not_finished"]:
        print(f"  note: {counts['checks_not_finished']} check(s) did not finish (timed out, failed or cancelled): "
              "those parts are not checked.", file=out)


# -- reading saved cards ----------------------------------------------------------------------------------
def _saved(path: Path, err: TextIO) -> tuple[list[Located] | None, str | None]:
    try:
        nb, text = read_notebook(path)
    except ValueError as exc:
        return None, str(exc)
    entries, problems = cards_in_notebook(nb, text)
    for problem in problems:
        print(f"mlsec-jupyter: {problem}", file=err)
    running = sum(1 for e in entries if e.card.status != "done")
    if running:
        print(f"mlsec-jupyter: {running} card(s) were saved before their checks finished; run the notebook "
              "to the end (it should end with %mlsec wait) or scan without --no-execute.", file=err)
    if not entries:
        print(f"mlsec-jupyter: {path.name} holds no saved risk cards (was it run with %load_ext mlsec_jupyter "
              "and saved with its outputs?).", file=err)
    return entries, None


# -- executing --------------------------------------------------------------------------------------------
def _executed(path: Path, args: argparse.Namespace,
              err: TextIO) -> tuple[list[Located] | None, str | None, str | None]:
    """Run the notebook: (its cards, why the scan is incomplete or ``None``, the executed notebook's text)."""
    try:
        import nbformat
        from jupyter_client.kernelspec import NoSuchKernel
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    except ImportError:
        return None, ("executing a notebook needs nbclient and nbformat: pip install 'mlsec-jupyter[cli]', or "
                      "scan the saved cards with --no-execute."), None
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - nbformat raises several kinds for a broken file
        return None, f"{str(path)!r} is not a readable notebook: {type(exc).__name__}: {exc}", None
    kernel = args.kernel or nb.metadata.get("kernelspec", {}).get("name") or "python3"
    client = NotebookClient(nb, timeout=args.timeout, kernel_name=kernel, allow_errors=False,
                            interrupt_on_timeout=True, resources={"metadata": {"path": str(path.parent.resolve())}})
    failures = (CellExecutionError, CellTimeoutError)
    setup = [SETUP_SOURCE] + (["%mlsec config " + " ".join(args.config)] if args.config else [])
    problem = None
    client.reset_execution_trackers()
    try:
        with client.setup_kernel():
            for source in setup:
                try:
                    _run_extra(client, nb, source, args.timeout)
                except failures as exc:
                    return None, (f"the setup cell {source!r} failed ({getattr(exc, 'ename', type(exc).__name__)}: "
                                  f"{getattr(exc, 'evalue', exc)}); is mlsec-jupyter installed in the {kernel!r} "
                                  "kernel's environment?"), None
            problem = _run_cells(client, nb, err, failures)
            try:  # every card complete: wait for the checks, then refresh the cards' outputs
                _run_extra(client, nb, f"%mlsec wait {args.timeout:g}", args.timeout + 60)
            except failures:
                problem = problem or f"checks were still running after {args.timeout:g} s (--timeout); their findings are missing."
    except NoSuchKernel:
        return None, (f"there is no {kernel!r} kernel on this machine (the notebook's kernelspec); pass --kernel "
                      "NAME (jupyter kernelspec list shows them)."), None
    except DeadKernelError as exc:
        problem = f"the kernel died: {exc}"
    except RuntimeError as exc:  # the kernel failed to start
        return None, f"could not start the {kernel!r} kernel: {exc}", None
    entries, _ = cards_in_notebook(nb)  # the lines are those of the file on disk (_with_file_lines)
    running = summary(entries)["cards_still_running"]
    if running and problem is None:
        problem = (f"{running} card(s) were still running after the final wait of {args.timeout:g} s (--timeout): "
                   "their findings are missing.")
    return _with_file_lines(entries, path, len(nb.cells)), problem, nbformat.writes(nb)


def _run_extra(client: Any, nb: Any, source: str, timeout: float) -> None:
    """Run ``source`` as a cell of its own after the notebook's cells, through nbclient (so the display
    updates it causes reach the notebook's outputs), without counting it in the execution history."""
    import nbformat

    cell = nbformat.v4.new_code_cell(source)
    nb.cells.append(cell)
    saved, client.timeout = client.timeout, timeout
    try:
        client.execute_cell(cell, len(nb.cells) - 1, store_history=False)
    finally:
        client.timeout = saved
        nb.cells.pop()


def _run_cells(client: Any, nb: Any, err: TextIO, errors: tuple[type, ...]) -> str | None:
    """Execute every cell, one progress line a code cell; the first error stops the run (as nbconvert)."""
    total = sum(1 for c in nb.cells if c.cell_type == "code")
    done = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        done += 1
        start = time.perf_counter()
        try:
            client.execute_cell(cell, index)
        except errors as exc:
            seconds = time.perf_counter() - start
            print(f"[{done}/{total}] cell {index + 1}: failed after {seconds:.1f} s", file=err)
            name = getattr(exc, "ename", type(exc).__name__)
            if name in ("KeyboardInterrupt", "CellTimeoutError") and seconds >= client.timeout:
                return (f"cell {index + 1} ran longer than --timeout {client.timeout:g} s and was interrupted; the "
                        "cells after it were not run.")
            value = getattr(exc, "evalue", "") or (str(exc).strip().splitlines() or [""])[-1]
            return f"cell {index + 1} raised {name}: {_ANSI.sub('', str(value))}; the cells after it were not run."
        cards = [o["data"][CARD_MIME] for o in cell.get("outputs", []) if CARD_MIME in o.get("data", {})]
        shown = f", {len(cards)} card(s): " + "; ".join(str(c.get("subject", ""))[:60] for c in cards) if cards else ""
        print(f"[{done}/{total}] cell {index + 1}: {time.perf_counter() - start:.1f} s{shown}", file=err)
    return None


def _with_file_lines(entries: list[Located], path: Path, n_cells: int) -> list[Located]:
    """Point each card at the line of its cell in the notebook file as it is on disk (what a code-scanning
    annotation shows), not in the executed copy, whose outputs move the lines."""
    try:
        lines = cell_start_lines(path.read_text(encoding="utf-8"))
    except OSError:
        lines = []
    if len(lines) != n_cells:
        return entries
    return [Located(e.card, e.cell_index, e.cell_id, e.execution_count,
                    lines[e.cell_index] if e.cell_index is not None else None)
            for e in entries]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
