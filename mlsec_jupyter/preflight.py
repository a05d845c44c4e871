"""Checks that must run *before* a cell does (orchestration; no IPython here).

A cell's source is known before it runs; some risks are cheaper to stop than to report:

* **Model files** (issue 6): a cell that loads a file with a loader that can run code from it
  (``pickle.load``, ``joblib.load``, ``torch.load``, ``np.load(allow_pickle=True)``, ``pd.read_pickle``…) when
  the path is a literal (also ``open("m.pkl")``, ``Path(...)``, ``os.path.join`` of literals, a ``with
  open(...) as f`` the call reads) or a name bound to a path or an open file. The file is scanned by the
  ``supply.pickle`` allowlist scanner (never unpickled) before the cell runs; with ``file_policy=block`` an
  unsafe file that the loader would execute stops the cell. Loads inside functions the cell calls are not
  visible in its source and are not scanned before they run (README, "Limits").
* **DP budget** (issue 4): a cell that trains with DP-SGD on data that has a privacy budget. The
  planned spend is the accountant's history so far plus ``epochs × round(1/q)`` more steps (one
  epoch of Poisson sampling at rate ``q`` is ``1/q`` expected steps) at the optimizer's noise
  multiplier, where ``epochs`` is the product of the cell's ``for _ in range(...)`` loops around the
  batch loop (also through ``tqdm``/``enumerate``/``trange`` and integer expressions of names; 1
  when there is none, and the card says when a count could not be read). If that would exceed the budget, the card says so before the
  cell runs, and with ``budget_policy=block`` the cell does not run.

:func:`preflight` returns the findings and, when the cell must not run, the reason. An interrupt (the stop
button) while a pre-run check runs means the cell does not run, under every policy: the user asked to stop,
and the load was not checked (notes/reliability.md R2).
"""

from __future__ import annotations

import os

import ast
import operator
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from .artifacts import features_of
from .findings import Finding, Severity
from .watch.cell import CellIntent


@dataclass
class Preflight:
    """What :func:`preflight` found: findings for a card, and the reason to block the cell (if any)."""

    findings: list[Finding] = field(default_factory=list)
    block: str | None = None
    subject: str = "before this cell runs"
    scanned: set[str] = field(default_factory=set)  # absolute paths of the model files scanned
    interrupted: str | None = None  # the id of the check the user interrupted (the cell must not run)


def interrupted_before_run(what: str) -> str:
    """Why a cell did not run: the user interrupted mlsec-jupyter's check of it."""
    return (f"Interrupted while mlsec-jupyter ran its {what} before this cell; the cell did not run. "
            "Run it again to check and run it.")


def preflight(intent: CellIntent, ns: Mapping[str, Any], session: Any) -> Preflight:
    """Every pre-run check that applies to this cell (see the module docstring). A check that fails
    (a bug) gets a card line, and blocks the cell when its policy is ``block``: it fails closed. An
    interrupt stops the pre-run checks and blocks the cell."""
    result = Preflight()
    steps = ((intent.file_loads, _model_files, "model file scan", "file_policy"),
             (intent.torch_training, _dp_budget, "privacy budget check", "budget_policy"))
    for wanted, check, what, policy in steps:
        if not wanted:
            continue
        try:
            _guarded(check, what, policy, intent, ns, session, result)
        except KeyboardInterrupt:
            result.interrupted = _CHECK_OF_POLICY[policy]
            result.block = interrupted_before_run(what)
            break
    return result


_CHECK_OF_POLICY = {"file_policy": "supply.pickle", "budget_policy": "privacy.dp_budget"}


def _guarded(check: Any, what: str, policy: str, intent: CellIntent, ns: Mapping[str, Any], session: Any,
             result: Preflight) -> None:
    """Run one pre-run check; its failure becomes a finding. On the main thread a ``KeyboardInterrupt`` is
    taken as the user's stop (even one a check raised itself: the two cannot be told apart)."""
    try:
        check(intent, ns, session, result)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a pre-run check must never break the cell (nor end the
        # kernel: SystemExit from a check's code), nor wave it through
        from .runner import exception_text

        blocking = getattr(session.config, policy, "warn") == "block"
        problem = exception_text(exc)
        result.findings.append(Finding(
            _CHECK_OF_POLICY[policy], Severity.HIGH,
            f"The {what} before this cell failed", problem.rstrip(".") +
            (f". The cell was not run ({policy}=block)." if blocking else ". The cell ran unchecked."),
            metrics=({"verdict": "incomplete", "globals": [], "unsafe_globals": [], "format": ""}
                     if policy == "file_policy" else {"epsilon": None, "delta": None, "budget_epsilon": None}),
            recommendation="Please report this as a bug of mlsec-jupyter; meanwhile "
                           f"`%mlsec config {policy}=warn` lets the cell run."))
        if blocking:
            result.block = f"mlsec-jupyter blocked this cell: the {what} failed ({problem})."


#: Said on every pre-run scan: what the pre-run scan does and does not cover (README, "Model files").
PRE_RUN_COVERAGE = ("Scanned before the cell ran because the cell's own code loads it; a load inside a function "
                    "the cell calls (your helper, torch.hub.load, from_pretrained) is not scanned before it runs: "
                    "use %mlsec scanfile PATH for those files.")

#: Loaders that run code from the file they read (``torch.load`` only with ``weights_only=False``).
_EXECUTING = {"pickle.load", "pickle.loads", "joblib.load", "dill.load", "cloudpickle.load", "pd.read_pickle",
              "pandas.read_pickle", "np.load", "numpy.load", "pickle.Unpickler", "pickle._Unpickler", "dill.Unpickler",
              "np.lib.format.read_array", "numpy.lib.format.read_array"}


def path_of(call: Any, ns: Mapping[str, Any], bound: set[str] | None) -> str | None:
    """The file a load call reads: its literal path, or the path / open file its first argument names,
    unless the cell binds that name itself (``bound``; ``None``: the cell may bind any name)."""
    import os

    if call.path:
        return os.path.abspath(os.path.expanduser(call.path))
    name = call.args[0] if call.args else None
    if bound is None or name in bound:
        return None  # the cell (re)binds it: the value now need not be the one the load will read
    value = ns.get(name) if name else None
    if isinstance(value, (str, os.PathLike)):
        return os.path.abspath(os.fspath(value))
    if type(value).__module__ in ("_io", "io") and isinstance(getattr(value, "name", None), str):
        return os.path.abspath(value.name)  # an open file (only the standard io classes are asked)
    return None


def executes_code(call: Any) -> bool:
    """Whether the loader may run code from the file: every pickle loader, and ``torch.load`` unless its
    restricted unpickler is certain to be used (the default since torch 2.6): not when ``weights_only`` is
    ``False`` or not a literal, when a ``pickle_module`` is passed (torch then unpickles fully), or when
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is set."""
    import os

    if call.func.endswith("torch.load"):
        if "weights_only" in call.source and "weights_only" not in call.keywords:
            return True  # weights_only=<expression>: cannot tell, so the cautious answer
        if call.keywords.get("weights_only") is False or "pickle_module" in call.source:
            return True
        return bool(os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"))
    return call.func in _EXECUTING


def _model_files(intent: CellIntent, ns: Mapping[str, Any], session: Any, result: Preflight) -> None:
    from .checks.budget import Budget
    from .checks.registry import get_check

    spec = get_check("supply.pickle")
    policy = getattr(session.config, "file_policy", "warn")
    for call in intent.file_loads:
        path = path_of(call, ns, None if intent.dynamic else intent.bound)
        if intent.changes_dir and call.path and not os.path.isabs(os.path.expanduser(call.path)):
            path = None  # the cell changes folder first: the relative path may name another file then
        # fail closed under block; a load in a def the cell only defines runs when a later cell calls it (not seen)
        deferred = bool(call.enclosing) and call.enclosing not in intent.called
        blocking = policy == "block" and executes_code(call) and not deferred
        if path is None:
            if executes_code(call) and call.func != "pickle.loads":  # loads: bytes in memory, not a file
                result.findings.append(_not_located(call))
                if blocking:
                    result.block = (f"mlsec-jupyter blocked this cell before it ran: {call.source} loads a model "
                                    "file whose path is only known once the cell runs, so it could not be scanned. "
                                    "Scan it first with %mlsec scanfile PATH (or bind its path to a name in an "
                                    "earlier cell); to run it anyway: %mlsec config file_policy=warn.")
            continue
        if path in result.scanned:
            continue
        budget = Budget(seconds=session.config.time_budget)
        findings = list(spec.func(path=path, loader=call.func, budget=budget))
        if not any(f.metrics.get("verdict") == "unreadable" for f in findings):
            result.scanned.add(path)  # a file the cell is about to write is scanned after it runs
        findings = [replace(f, summary=f"{f.summary} {PRE_RUN_COVERAGE}") for f in findings]
        result.findings.extend(findings)
        if call.func.endswith("torch.load") and call.keywords.get("weights_only") is False:
            result.findings.append(Finding(
                "supply.pickle", Severity.MEDIUM, "torch.load(..., weights_only=False) runs any code in the file",
                f"{call.source} turns off torch's restricted unpickler, so loading runs whatever the file's pickle "
                f"calls.", metrics={"globals": [], "unsafe_globals": [], "format": "", "loader": call.func},
                recommendation="Drop weights_only=False (torch ≥ 2.6 loads tensors and state_dicts safely by "
                               "default) and load a state_dict into a model built in code; or re-save as "
                               "safetensors."))
        unsafe = [f for f in findings if f.metrics.get("verdict") in ("unsafe", "incomplete", "unreadable")]
        if unsafe and blocking:
            first = unsafe[0]
            result.block = (f"mlsec-jupyter blocked this cell before it ran: {first.title}. "
                            f"{first.recommendation} To run it anyway: %mlsec config file_policy=warn.")
    if result.scanned:
        result.subject = "model file(s) scanned before this cell runs: " + ", ".join(sorted(result.scanned))


def _not_located(call: Any) -> Finding:
    """A load that can run code from a file the source does not name in a way known before the cell runs."""
    return Finding(
        "supply.pickle", Severity.LOW, "A model file this cell loads could not be scanned before it ran",
        f"{call.source} reads a file whose path is computed or held in something other than a plain name "
        "(an f-string, a call, bytes read earlier), so it could not be located before the cell ran; the "
        "loader runs any code in that file. It is scanned after the cell when a name then holds its path.",
        metrics={"globals": [], "unsafe_globals": [], "format": "", "verdict": "not located", "loader": call.func},
        recommendation="Scan the file first with %mlsec scanfile PATH (or mj.scan_file), or pass its path as a "
                       "literal or a variable so the scan can run before the load.")


def _int_value(expr: int | str, ns: Mapping[str, Any]) -> int | None:
    """An epoch bound from :class:`CellIntent`: an int, or an expression of ints and names bound to
    ints in the namespace (+ − × // only; nothing is called)."""
    if type(expr) is int:
        return expr
    try:
        tree = ast.parse(str(expr), mode="eval").body
    except SyntaxError:
        return None
    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv}

    def value(node: ast.AST) -> int | None:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.Name):
            v = ns.get(node.id)
            return v if type(v) is int else None
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            left, right = value(node.left), value(node.right)
            if left is None or right is None or (isinstance(node.op, ast.FloorDiv) and right == 0):
                return None
            return ops[type(node.op)](left, right)
        return None

    result = value(tree)
    return None if result is None else max(0, result)


def planned_epochs(intent: CellIntent, ns: Mapping[str, Any]) -> tuple[int, bool]:
    """Epochs the cell will run: the product of its epoch-loop bounds (nested loops multiply; two
    loops one after the other are over-counted, the safe side for a budget) and whether every bound
    was known (an unknown one counts as 1)."""
    total, known = 1, intent.unknown_epoch_loops == 0
    for bound in intent.epoch_loops:
        value = _int_value(bound, ns)
        if value is None:
            known = False
        else:
            total *= value
    return total, known


def _loader_features(intent: CellIntent, ns: Mapping[str, Any]) -> Any:
    from .watch.assemble import training_loader

    name = training_loader(intent, ns)
    return None if name is None else features_of(ns[name])


def _dp_budget(intent: CellIntent, ns: Mapping[str, Any], session: Any, result: Preflight) -> None:
    from .privacy.ledger import LedgerError

    try:
        _check_budget(intent, ns, session, result)
    except LedgerError as exc:  # a ledger we cannot read must not let a budgeted training through silently
        blocking = session.config.budget_policy == "block"
        result.findings.append(Finding(
            "privacy.dp_budget", Severity.HIGH, "Privacy ledger unreadable: the budget cannot be checked",
            f"{exc}" + (" The cell was not run (budget_policy=block)." if blocking else ""),
            metrics={"epsilon": None, "delta": None, "budget_epsilon": None},
            recommendation="Restore or fix the ledger file, or remove it with mlsec_jupyter.privacy.Ledger"
                           "('.mlsec/privacy').forget(KEY) if its records are truly lost."))
        if blocking:
            result.block = f"mlsec-jupyter blocked this cell: the privacy ledger cannot be read ({exc})."


def _check_budget(intent: CellIntent, ns: Mapping[str, Any], session: Any, result: Preflight) -> None:
    ledger = session.ledger
    if not ledger.keys():
        return  # no data has a ledger: nothing to protect (and nothing to fingerprint)
    X = _loader_features(intent, ns)
    if X is None:
        return
    from .watch.assemble import dp_states_in_cell

    key = session.data_key(X)
    limit = ledger.budget(key)
    states = dp_states_in_cell(intent, ns)
    if limit is None or not states:
        return
    state = states[0]
    if state.noise_multiplier is None or not state.sample_rate:
        return  # σ or q not known before the first step: the card after the cell still counts it
    sigma, q = float(state.noise_multiplier), float(state.sample_rate)
    epochs, known = planned_epochs(intent, ns)
    planned = state.planned_history(epochs * state.steps_per_epoch)
    over = ledger.would_exceed(key, planned, run_id=f"{session.session_id}:{state.run_id}")
    if over is None:
        return
    eps_after, eps_budget = over
    policy = session.config.budget_policy
    title = f"This training would exceed the privacy budget: ε ≈ {eps_after:.3g} of {eps_budget:g}"
    count = f"{epochs} epoch(s)" if known else f"at least {epochs} epoch(s) (a loop count could not be read)"
    summary = (f"The cell trains {count} of DP-SGD (noise multiplier {sigma:g}, sampling rate {q:.4g}, "
               f"about {round(1.0 / q):,} steps an epoch) on data whose privacy budget is ε = {eps_budget:g} at "
               f"δ = {limit[1]:.0e}; with what is already spent on it, ε would reach about {eps_after:.3g}.")
    if policy == "block":
        summary += " The cell was not run (budget_policy=block)."
    advice = ("Raise the noise multiplier, train fewer epochs or use a smaller sampling rate; or raise the budget "
              "deliberately with %mlsec budget VAR eps=… delta=…. To run it anyway: %mlsec config budget_policy=warn.")
    result.findings.append(Finding("privacy.dp_budget", Severity.HIGH, title, summary,
                                   metrics={"epsilon": round(eps_after, 6), "delta": limit[1],
                                            "budget_epsilon": eps_budget, "planned_epochs": epochs,
                                            "epochs_known": known,
                                            "gauge": {"value": round(eps_after, 4), "limit": eps_budget,
                                                      "label": "ε after this cell, of budget"}},
                                   recommendation=advice))
    if policy == "block":
        result.block = (f"mlsec-jupyter blocked this cell: the DP training would spend ε ≈ {eps_after:.3g}, over the "
                        f"budget of {eps_budget:g} for this data. {advice}")
