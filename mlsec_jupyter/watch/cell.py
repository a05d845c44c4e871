"""Read a cell's source (never run it) and record what it intends: loads, fits, splits.

The parse is the only work done for a cell before it runs. A cell whose text contains none of the
trigger words is not parsed at all, so ordinary cells cost a regex search.
"""

from __future__ import annotations

import ast
import collections
import os
import re
from dataclasses import dataclass, field

#: Any of these substrings makes a cell worth parsing.
_TRIGGER = re.compile(
    r"fit|load|read_|split|make_|fetch_|Dataset|DataLoader|backward|\.step\(|genfromtxt|fromfile|Bunch"
)
_FIT_METHODS = {"fit", "fit_transform", "partial_fit", "fit_predict", "fit_resample"}
_PANDAS_READERS = re.compile(r"read_(csv|parquet|excel|json|table|feather|hdf|pickle|sql\w*|orc|fwf|sas|spss|stata|xml|html|clipboard)$")
_NUMPY_LOADERS = {"load", "loadtxt", "genfromtxt", "fromfile", "fromregex"}
#: Calls that can bind names the AST does not show.
_DYNAMIC_CALLS = {"exec", "eval", "globals", "vars", "locals", "setattr", "get_ipython", "run_line_magic",
                  "run_cell_magic", "system", "execfile", "runpy", "run_path", "run_module"}
#: Loaders that execute code from the file they read (scanned by supply.* checks), as usually written. An
#: ``Unpickler`` counts when it is made: ``u = pickle.Unpickler(f)`` may load in a later statement.
_CODE_LOADERS = {"torch.load", "pickle.load", "pickle.loads", "joblib.load", "dill.load", "cloudpickle.load",
                 "pd.read_pickle", "pandas.read_pickle", "np.load", "numpy.load", "pickle.Unpickler",
                 "pickle._Unpickler", "dill.Unpickler", "np.lib.format.read_array", "numpy.lib.format.read_array"}
#: numpy readers that unpickle only with ``allow_pickle``, and its position among their arguments.
_ALLOW_PICKLE_AT = {"np.load": 2, "numpy.load": 2, "np.lib.format.read_array": 1, "numpy.lib.format.read_array": 1}
#: Keyword arguments that name the file a loader reads (when it is not the first positional argument).
_PATH_KEYWORDS = ("f", "file", "filename", "filepath_or_buffer", "fname")
#: Where those loaders really live (what an import alias or a name from an earlier cell resolves to) →
#: the name used for them (reliability P13: ``from joblib import load``, ``import pickle as pk``...).
_LOADER_HOMES = {
    "_pickle.load": "pickle.load", "_pickle.loads": "pickle.loads", "_pickle.Unpickler": "pickle.Unpickler",
    "joblib.numpy_pickle.load": "joblib.load", "torch.serialization.load": "torch.load",
    "dill._dill.load": "dill.load", "dill._dill.Unpickler": "dill.Unpickler",
    "pandas.io.pickle.read_pickle": "pandas.read_pickle", "numpy.lib.npyio.load": "numpy.load",
    "numpy.lib._npyio_impl.load": "numpy.load",
}


@dataclass
class Call:
    """One call the cell makes: what is called, the names bound to its result, its argument names."""

    func: str  # dotted name as written, e.g. "pd.read_csv", "clf.fit"
    targets: list[str] = field(default_factory=list)
    args: list[str | None] = field(default_factory=list)  # plain-name arguments, None for expressions
    source: str = ""
    path: str | None = None  # first argument when it is a string literal
    keywords: dict[str, object] = field(default_factory=dict)  # constant keyword arguments
    dynamic_keywords: set[str] = field(default_factory=set)  # keyword arguments given by an expression; "**"
    n_args: int = 0  # positional arguments
    enclosing: str = ""  # the def (outermost) the call is written in: it runs only when that is called


@dataclass
class CellIntent:
    """What a cell intends to do, from its AST."""

    loads: list[Call] = field(default_factory=list)
    fits: list[Call] = field(default_factory=list)
    splits: list[Call] = field(default_factory=list)
    file_loads: list[Call] = field(default_factory=list)
    torch_training: bool = False
    touched: set[str] = field(default_factory=set)  # receivers of method calls (may change in place)
    names: set[str] = field(default_factory=set)  # every plain name the cell mentions
    bound: set[str] = field(default_factory=set)  # names the cell assigns, imports or defines
    dynamic: bool = False  # the cell may bind names the AST does not show (exec, magics, globals()...)
    #: bounds of ``for _ in range(...)`` loops that contain another loop (epochs): an int, or the
    #: source of an integer expression of names (``EPOCHS``, ``EPOCHS + 1``) to evaluate later
    epoch_loops: list[int | str] = field(default_factory=list)
    #: epoch-like loops whose count could not be read from the source (``for e in schedule:``)
    unknown_epoch_loops: int = 0
    #: names iterated by ``for`` loops whose body calls ``backward()`` (the training data)
    train_iterables: list[str] = field(default_factory=list)
    #: names a training loop binds (its batch ``xb, yb``, ``loss``, ``out``): per-step values, not data sets
    loop_bound: set[str] = field(default_factory=set)
    #: plain names the cell calls (``g`` in ``g(x)``): a def of the cell that is also called here runs here
    called: set[str] = field(default_factory=set)
    changes_dir: bool = False  # os.chdir(...): a relative path may name another file by the time it is read

    @property
    def any(self) -> bool:
        return bool(self.loads or self.fits or self.splits or self.file_loads or self.torch_training)


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    if isinstance(node, ast.Call):
        return _dotted(node.func)
    return ""


def _target_names(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        out: list[str] = []
        for elt in target.elts:
            out.extend(_target_names(elt.value if isinstance(elt, ast.Starred) else elt))
        return out
    return []


def _is_load(func: str) -> bool:
    leaf = func.rsplit(".", 1)[-1]
    base = func.rsplit(".", 1)[0] if "." in func else ""
    if _PANDAS_READERS.search(leaf):
        return True
    if base in {"np", "numpy"} and leaf in _NUMPY_LOADERS:
        return True
    if leaf.startswith(("load_", "fetch_", "make_")) or leaf in {"load", "loads"}:
        return True
    return leaf.endswith(("Dataset", "DataLoader")) or leaf in {"MNIST", "CIFAR10", "FashionMNIST"}


def _is_code_loader(func: str, call: Call) -> bool:
    """Whether ``func`` (resolved) unpickles the file ``call`` reads; numpy's readers only when they may allow
    pickles: ``allow_pickle`` truthy, given by an expression or ``**kwargs``, or passed by position."""
    if func not in _CODE_LOADERS:
        return False
    if func in _ALLOW_PICKLE_AT:
        return (bool(call.keywords.get("allow_pickle")) or bool({"allow_pickle", "**"} & call.dynamic_keywords)
                or call.n_args > _ALLOW_PICKLE_AT[func])
    return True


def _home_of(value: object) -> str | None:
    """Where a module, function or class from the namespace lives (``"joblib.numpy_pickle.load"``); only
    these types are asked, never an arbitrary user object."""
    import types

    if isinstance(value, types.ModuleType):
        name = value.__name__
        return name if isinstance(name, str) else None
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
        module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
        if isinstance(module, str) and isinstance(qualname, str):
            return f"{module}.{qualname}"
    return None


class _Visitor(ast.NodeVisitor):
    def __init__(self, source: str, intent: CellIntent, ns: dict | None = None,
                 bindings: collections.Counter | None = None) -> None:
        self.source = source
        self.intent = intent
        self.ns = ns
        self.bindings = bindings if bindings is not None else collections.Counter()
        self._functions: list[str] = []  # the defs the visitor is inside, outermost first
        self.aliases: dict[str, str] = {}  # ``import pickle as pk`` → {"pk": "pickle"}
        self._open_files: dict[str, str] = {}  # ``with open("m.pkl", "rb") as f`` → {"f": "m.pkl"}
        self._open_names: dict[str, str] = {}  # ``with open(p, "rb") as f`` → {"f": "p"} (p bound earlier)
        self._bound_once: set[str] = set()  # names assigned so far in the cell (a second binding forgets a path)
        self._pending_targets: list[str] = []
        self._saw_backward = False
        self._saw_step = False

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self.visit(target)
        names = [n for t in node.targets for n in _target_names(t)]
        self._remember_binding(names, node.value)
        self._with_targets(names, node.value)

    def _remember_binding(self, names: list[str], value: ast.AST) -> None:
        """``f = open("m.pkl", "rb")`` / ``p = "m.pkl"`` (a name bound once in the cell) and ``ld = joblib.load``."""
        for name in names:
            self._open_files.pop(name, None)
            self._open_names.pop(name, None)
            self.aliases.pop(name, None)
        if len(names) != 1 or names[0] in self._bound_once:
            self._bound_once.update(names)
            return
        self._bound_once.add(names[0])
        path = _literal_path(value)
        if path is not None:
            self._open_files[names[0]] = path
        elif (opened := _opened_name(value)) is not None:
            self._remember_opened(names[0], opened)
        elif isinstance(value, (ast.Name, ast.Attribute)) and _dotted(value):
            self.aliases[names[0]] = self._resolve(_dotted(value))
    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.visit(node.target)
        if node.value is not None:
            self._with_targets(_target_names(node.target), node.value)

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name == "*":
                self.intent.dynamic = True
            self.intent.bound.add(alias.asname or alias.name.split(".", 1)[0])
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import) and alias.asname:
                self.aliases[alias.asname] = alias.name

    def _resolve(self, dotted: str) -> str:
        """``dotted`` with its first name replaced by what it stands for: a cell alias (``pk`` → ``pickle``,
        ``ld`` → ``joblib.load``) or, for a name earlier cells bound, where that module or function lives."""
        head, _, rest = dotted.partition(".")
        home = self.aliases.get(head)
        if home is None and self.ns is not None and head not in self.intent.bound and head in self.ns:
            home = _home_of(self.ns[head])
        resolved = dotted if home is None else (f"{home}.{rest}" if rest else home)
        return _LOADER_HOMES.get(resolved, resolved)

    def _loader(self, func: str, call: Call) -> str | None:
        """The code loader ``func`` calls, through import aliases and names (``pk.load`` after ``import pickle
        as pk``, ``load`` after ``from joblib import load``, ``ld`` after ``ld = joblib.load``)."""
        if _is_code_loader(func, call):
            return func
        resolved = self._resolve(func)
        return resolved if _is_code_loader(resolved, call) else None

    visit_ImportFrom = visit_Import

    def _define(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.intent.bound.add(node.name)
        saw = self._saw_backward, self._saw_step
        inside = not isinstance(node, ast.ClassDef)
        if inside:
            self._functions.append(node.name)
        try:
            self.generic_visit(node)
        finally:
            if inside:
                self._functions.pop()
        # a definition trains nothing: backward()/step() inside a def do not make this a training cell
        self._saw_backward, self._saw_step = saw
        self.intent.torch_training = self._saw_backward and self._saw_step

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _define

    def visit_arg(self, node: ast.arg) -> None:
        self.intent.bound.add(node.arg)  # a parameter shadows the notebook's variable of that name

    def visit_MatchAs(self, node: ast.MatchAs | ast.MatchStar) -> None:
        if node.name:
            self.intent.bound.add(node.name)
        self.generic_visit(node)

    visit_MatchStar = visit_MatchAs

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self.intent.bound.add(node.rest)
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.intent.bound.add(node.name)
        self.generic_visit(node)


    def visit_Global(self, node: ast.Global | ast.Nonlocal) -> None:
        self.intent.dynamic = True

    visit_Nonlocal = visit_Global

    def _with_targets(self, targets: list[str], value: ast.AST) -> None:
        saved, self._pending_targets = self._pending_targets, targets
        self.visit(value)
        self._pending_targets = saved

    def visit_Name(self, node: ast.Name) -> None:
        self.intent.names.add(node.id)
        if isinstance(node.ctx, ast.Store):
            self.intent.bound.add(node.id)

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            if not isinstance(item.optional_vars, ast.Name):
                continue
            path = _literal_path(item.context_expr)
            if path is not None:
                self._open_files[item.optional_vars.id] = path
            elif (opened := _opened_name(item.context_expr)) is not None:
                self._remember_opened(item.optional_vars.id, opened)
        self.generic_visit(node)

    def _remember_opened(self, name: str, opened: str) -> None:
        """``f`` opened from the path ``p`` holds: the literal ``p`` was bound to in this cell, else ``p``."""
        if opened in self._open_files:
            self._open_files[name] = self._open_files[opened]
        else:
            self._open_names[name] = opened

    visit_AsyncWith = visit_With

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        inner = [n for stmt in node.body for n in ast.walk(stmt)]
        if any(isinstance(n, (ast.For, ast.AsyncFor)) for n in inner):
            bound = _range_bound(node.iter)
            if bound is None:
                self.intent.unknown_epoch_loops += 1
            else:
                self.intent.epoch_loops.append(bound)
        elif any(isinstance(n, ast.Call) and _dotted(n.func).endswith(".backward") for n in inner):
            name = _iterated_name(node.iter)
            if name:
                self.intent.train_iterables.append(name)
        if any(isinstance(n, ast.Call) and _dotted(n.func).endswith(".backward") for n in inner):
            self.intent.loop_bound.update(_target_names(node.target))
            self.intent.loop_bound.update(n.id for n in inner if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
        self.generic_visit(node)

    visit_AsyncFor = visit_For

    def visit_Call(self, node: ast.Call) -> None:
        func = _dotted(node.func)
        targets, self._pending_targets = self._pending_targets, []  # only the outermost call gets them
        if isinstance(node.func, ast.Attribute):
            receiver = _dotted(node.func.value)
            if receiver and "." not in receiver:
                self.intent.touched.add(receiver)
        call = self._make_call(node, func, targets)
        if isinstance(node.func, ast.Name):
            self.intent.called.add(node.func.id)
        leaf = func.rsplit(".", 1)[-1]
        if leaf == "chdir":
            self.intent.changes_dir = True
        if leaf in _DYNAMIC_CALLS:
            self.intent.dynamic = True
        if leaf in _FIT_METHODS and isinstance(node.func, ast.Attribute):
            self.intent.fits.append(call)
        elif leaf == "train_test_split":
            self.intent.splits.append(call)
        elif (loader := self._loader(func, call)) is not None:
            call.func = loader
            self.intent.file_loads.append(call)
            self.intent.loads.append(call)
        elif _is_load(func):
            self.intent.loads.append(call)
        if leaf == "backward":
            self._saw_backward = True
        if leaf == "step" and isinstance(node.func, ast.Attribute):
            self._saw_step = True
        self.intent.torch_training = self._saw_backward and self._saw_step
        self.generic_visit(node)

    def _make_call(self, node: ast.Call, func: str, targets: list[str]) -> Call:
        keywords: dict[str, object] = {}
        dynamic: set[str] = set()
        for kw in node.keywords:
            if kw.arg and isinstance(kw.value, ast.Constant):
                keywords[kw.arg] = kw.value.value
            else:
                dynamic.add(kw.arg or "**")
        args = [a.id if isinstance(a, ast.Name) else None for a in node.args]
        file_arg = node.args[0] if node.args else next(
            (kw.value for kw in node.keywords if kw.arg in _PATH_KEYWORDS), None)
        path, name = self._file_of(file_arg) if file_arg is not None else (None, None)
        if name is not None:
            if args:
                args[0] = name
            else:
                args = [name]
        segment = ast.get_source_segment(self.source, node) or func
        return Call(func=func, targets=targets, args=args, source=segment[:200], path=path, keywords=keywords,
                    dynamic_keywords=dynamic, n_args=len(node.args),
                    enclosing=self._functions[0] if self._functions else "")

    def _file_of(self, node: ast.AST) -> tuple[str | None, str | None]:
        """(literal path, name holding the path or file) of a loader's file argument: ``"m.pkl"``,
        ``open("m.pkl")``, ``f`` from ``with open(...) as f`` / ``f = open(...)``, or ``p`` in ``open(p)``."""
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and not node.args \
                and node.func.attr in ("read", "read_bytes"):
            node = node.func.value  # pickle.loads(open(p, "rb").read()), pickle.loads(Path(p).read_bytes())
        path = _literal_path(node)
        if path is not None:
            return path, None
        name = node.id if isinstance(node, ast.Name) else _opened_name(node)
        if name is None:
            return None, None
        if self.bindings[name] > 1:  # rebound in the cell (a loop, a second with...): not known before it runs
            self.intent.bound.add(name)
            return None, name
        if isinstance(node, ast.Name) and name in self._open_names:  # opened here from a path bound earlier
            return None, self._open_names[name]
        return self._open_files.get(name), name


_PATH_CALLS = {"open", "io.open", "Path", "pathlib.Path", "os.path.join", "gzip.open", "bz2.open", "lzma.open"}


def _path_open(node: ast.AST) -> ast.AST:
    """``Path(...)`` for ``Path(...).open("rb")``; any other node as it is."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "open" \
            and isinstance(node.func.value, ast.Call) and _dotted(node.func.value.func) in ("Path", "pathlib.Path"):
        return node.func.value
    return node


def _opened_name(node: ast.AST) -> str | None:
    """``p`` in ``open(p, "rb")`` / ``Path(p)`` / ``Path(p).open()``: the name holding the path a file is opened from."""
    node = _path_open(node)
    if isinstance(node, ast.Call) and _dotted(node.func) in _PATH_CALLS and node.args \
            and isinstance(node.args[0], ast.Name) and _dotted(node.func) != "os.path.join" \
            and (len(node.args) == 1 or _dotted(node.func) not in ("Path", "pathlib.Path")):
        return node.args[0].id  # open(p, "rb") / Path(p); not Path(d, "m.pkl") nor os.path.join(d, ...)
    return None


def _literal_path(node: ast.AST) -> str | None:
    """The file a literal names: ``"m.pkl"``, ``open("m.pkl", "rb")``, ``Path("m.pkl")``,
    ``os.path.join("models", "m.pkl")`` (every part a literal); ``None`` otherwise."""
    node = _path_open(node)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Call) and _dotted(node.func) in _PATH_CALLS and node.args:
        if _dotted(node.func) == "os.path.join":
            parts = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            return os.path.join(*parts) if len(parts) == len(node.args) else None
        return _literal_path(node.args[0])
    return None


_WRAPPERS = {"tqdm", "trange", "enumerate", "iter", "list"}


def _unwrap(node: ast.AST) -> ast.AST:
    """``tqdm(x)``, ``enumerate(x)``, ``tqdm.auto.tqdm(x)``... → ``x``; ``trange(n)`` → ``range(n)``."""
    while isinstance(node, ast.Call) and node.args and _dotted(node.func).rsplit(".", 1)[-1] in _WRAPPERS:
        if _dotted(node.func).rsplit(".", 1)[-1] == "trange":
            return ast.Call(func=ast.Name("range", ast.Load()), args=node.args, keywords=[])
        node = node.args[0]
    return node


def _iterated_name(node: ast.AST) -> str | None:
    node = _unwrap(node)
    return node.id if isinstance(node, ast.Name) else None


def _int_expr(node: ast.AST) -> int | str | None:
    """An int literal, or the source of an expression of names, ints and + − × // (evaluated later)."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    allowed = (ast.Name, ast.Constant, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Load)
    if all(isinstance(n, allowed) for n in ast.walk(node)) and all(
            type(n.value) is int for n in ast.walk(node) if isinstance(n, ast.Constant)):
        return ast.unparse(node)
    return None


def _range_bound(node: ast.AST) -> int | str | None:
    """How many times ``range(...)`` (possibly wrapped in tqdm/enumerate, or ``trange``) runs: an int,
    or an expression ``"stop - start"`` / ``"(stop - start + step - 1) // step"`` to evaluate later."""
    node = _unwrap(node)
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"):
        return None
    parts = [_int_expr(a) for a in node.args]
    if not 1 <= len(parts) <= 3 or any(p is None for p in parts) or node.keywords:
        return None
    start, stop, step = (0, parts[0], 1) if len(parts) == 1 else (parts[0], parts[1], parts[2] if len(parts) == 3 else 1)
    if all(type(p) is int for p in (start, stop, step)):
        return max(0, -(-(stop - start) // step)) if step > 0 else None
    return f"(({stop}) - ({start}) + ({step}) - 1) // ({step})"


def might_intend(source: str) -> bool:
    """Cheap pre-filter: can this text contain a load, fit or split at all?"""
    return bool(source) and _TRIGGER.search(source) is not None


def parse_cell(source: str, ns: dict | None = None) -> CellIntent:
    """Record a cell's loads, fits and splits. Never raises; a cell that does not parse intends nothing.

    ``ns`` (the user namespace, read only) resolves loaders imported under another name in an earlier cell.
    """
    intent = CellIntent()
    if not might_intend(source):
        return intent
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return intent
    try:
        _Visitor(source, intent, ns, _binding_counts(tree)).visit(tree)
    except RecursionError:
        return CellIntent()
    return intent


def _binding_counts(tree: ast.AST) -> collections.Counter:
    """How many places in the cell bind each name (assignments, ``with ... as``, ``for`` targets, walrus,
    ``except ... as``, imports, parameters, ``match`` captures): a path or an open file is only followed
    through a name the cell binds exactly once."""
    counts: collections.Counter = collections.Counter()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            counts[node.id] += 1
        elif isinstance(node, ast.arg):
            counts[node.arg] += 1
        elif isinstance(node, ast.alias):
            counts[node.asname or node.name.split(".", 1)[0]] += 1
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and getattr(node, "name", None):
            counts[node.name] += 1
        elif isinstance(node, ast.MatchMapping) and node.rest:
            counts[node.rest] += 1
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            counts[node.name] += 1
    return counts
