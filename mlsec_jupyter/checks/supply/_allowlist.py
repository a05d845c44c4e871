"""Which globals a model file may name: an allowlist first, a list of known-dangerous names second.

A global the unpickler would import is one of

* ``safe`` — on the allowlist below: what a state_dict, a torch tensor or ``nn.Module`` of standard
  layers, a numpy array, a scikit-learn estimator or a joblib dump legitimately needs;
* ``critical`` — code execution, file, process, network or import primitives, nested loaders (P6, P7,
  P15), or anything under a dangerous module or through one in an attribute chain (P5);
* ``unsafe`` — an attribute chain through lower-case names (``pathlib`` + ``os.system``: the chain can
  reach any object the module can see) or a name that cannot be resolved;
* ``custom`` — everything else: code from outside the allowlist (the user's own ``mymodels.Net``, a
  library function such as ``numpy.log1p``). Loading it runs that code: only as safe as its source.

Decisions worth knowing:

* ``_codecs.encode`` is allowed only as numpy's protocol-2 pickles use it, ``encode(str, "latin1")``
  (checked on the call's arguments by :func:`call_problem`); any other use is a problem.
* scikit-learn: classes (capitalised names) under the estimator subpackages in
  :data:`SKLEARN_SUBPACKAGES`, plus the Cython helpers trees and losses pickle through. Functions
  (lower-case) are not allowed: ``sklearn.utils`` holds joblib loaders and ``sklearn.datasets`` fetches
  from the network.
* torch: tensor rebuild helpers, storages, dtypes, ``torch.Size``/``device``, and classes under
  ``torch.nn.modules`` and ``torch.optim`` (a full ``torch.save(model)`` of standard layers); never
  ``torch.load``/``torch.serialization``/``torch.storage._load_from_bytes`` (nested loaders) or
  ``torch.fx``/``torch.jit``/``torch._dynamo``/``torch.utils.collect_env`` (code generation or shell gadgets).
* builtins: only constructors of plain data (set, frozenset, slice, complex, bytearray, ...); every
  other builtin is critical.
* Python 2 spellings (``__builtin__``, ``copy_reg``) are mapped as the unpickler maps them for
  protocols below 3, and both spellings are judged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

try:  # the stdlib's table of Python 2 -> 3 names (pure data)
    import _compat_pickle as _compat
except ImportError:  # pragma: no cover
    _compat = None

NUMPY_DTYPE = frozenset({"numpy.dtype", "numpy.core.multiarray.dtype", "numpy._core.multiarray.dtype"})

_TORCH_DTYPES = (
    "float32 float float64 double float16 half bfloat16 int8 int16 short int32 int int64 long uint8 uint16 "
    "uint32 uint64 bool complex32 chalf complex64 cfloat complex128 cdouble qint8 quint8 qint32 quint4x2 "
    "quint2x4 float8_e4m3fn float8_e4m3fnuz float8_e5m2 float8_e5m2fnuz float8_e8m0fnu float4_e2m1fn_x2 "
    "bits8 bits16 bits1x8 bits2x4 bits4x2 "
    "strided sparse_coo sparse_csr sparse_csc sparse_bsr sparse_bsc _mkldnn "  # layouts
    "contiguous_format channels_last channels_last_3d preserve_format "  # memory formats
    "per_tensor_affine per_channel_affine per_tensor_symmetric per_channel_symmetric "
    "per_channel_affine_float_qparams"  # qschemes
).split()
_TORCH_STORAGES = ["Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool", "ComplexFloat", "ComplexDouble", "QUInt8", "QInt8", "QInt32", "QUInt4x2", "QUInt2x4", "Untyped", "Typed"]
_TORCH_REBUILD = ["_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter", "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_sparse_tensor", "_rebuild_nested_tensor", "_rebuild_device_tensor_from_numpy", "_rebuild_device_tensor_from_cpu_tensor", "_rebuild_meta_tensor_no_storage", "_rebuild_wrapper_subclass", "_rebuild_xla_tensor", "_rebuild_mtia_tensor"]
_NUMPY_SCALARS = ["bool", "bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "intc", "uintc", "intp", "uintp", "int_", "uint", "longlong", "ulonglong", "byte", "ubyte", "short", "ushort", "float16", "float32", "float64", "longdouble", "half", "single", "double", "complex64", "complex128", "clongdouble", "csingle", "cdouble", "str_", "bytes_", "void", "object_", "datetime64", "timedelta64", "generic", "number", "integer", "floating", "complexfloating", "ndarray", "dtype"]

SAFE_GLOBALS: frozenset[str] = frozenset(
    [
        # Python containers and plain-data constructors
        "collections.OrderedDict", "collections.defaultdict", "collections.deque", "collections.Counter",
        "builtins.set", "builtins.frozenset", "builtins.slice", "builtins.complex", "builtins.bytearray",
        "builtins.list", "builtins.dict", "builtins.tuple", "builtins.int", "builtins.float", "builtins.bool",
        "builtins.str", "builtins.bytes", "builtins.range", "builtins.object", "builtins.Ellipsis",
        "builtins.NotImplemented",
        "copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__",
        "datetime.datetime", "datetime.date", "datetime.time", "datetime.timedelta", "datetime.timezone",
        "decimal.Decimal", "fractions.Fraction", "uuid.UUID",
        # _codecs.encode: only encode(str, "latin1") (numpy bytes); see call_problem
        "_codecs.encode",
        # numpy arrays, scalars, dtypes, random states
        "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
        "numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer",
        "numpy.ma.core._mareconstruct", "numpy.ma.core.MaskedArray", "numpy.ma.MaskedArray",
        "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
        "numpy.random._pickle.__randomstate_ctor", "numpy.random._pickle.__generator_ctor",
        "numpy.random._pickle.__bit_generator_ctor", "numpy.random.mtrand.RandomState",
        "numpy.random._generator.Generator", "numpy.random._mt19937.MT19937", "numpy.random._pcg64.PCG64",
        "numpy.random._pcg64.PCG64DXSM", "numpy.random._philox.Philox", "numpy.random._sfc64.SFC64",
        "numpy.random.bit_generator.SeedSequence",
        *(f"numpy.{n}" for n in _NUMPY_SCALARS),
        *NUMPY_DTYPE,
        # joblib's in-stream array placeholder (its data follows the pickle opcodes)
        "joblib.numpy_pickle.NumpyArrayWrapper",
        # torch tensors, parameters, storages, dtypes
        *(f"torch._utils.{n}" for n in _TORCH_REBUILD),
        "torch._tensor._rebuild_from_type_v2", "torch._tensor.Tensor", "torch.Tensor",
        "torch.nn.parameter.Parameter", "torch.nn.parameter.Buffer", "torch.nn.parameter.UninitializedParameter",
        "torch.nn.parameter.UninitializedBuffer",
        "torch.Size", "torch.device", "torch.dtype", "torch.layout", "torch.memory_format", "torch.qscheme",
        "torch.serialization._get_layout", "torch.storage.UntypedStorage", "torch.storage.TypedStorage",
        "torch.storage._LegacyStorage",
        *(f"torch.{n}" for n in _TORCH_DTYPES),
        *(f"torch.{n}Storage" for n in _TORCH_STORAGES),
        "torch.nn.modules.module._IncompatibleKeys",
        # time zones (tz-aware pandas and datetime objects)
        "zoneinfo.ZoneInfo", "zoneinfo.ZoneInfo._unpickle",
        # scikit-learn's dict with attribute access (VotingClassifier, StackingClassifier...), the validation
        # function HistGradientBoosting keeps in a functools.partial, and partial itself (it only stores a call)
        "sklearn.utils._bunch.Bunch", "sklearn.utils.validation.check_array", "functools.partial",
        # numpy's variable-width string dtype
        "numpy.dtypes.StringDType", "numpy._core._internal._convert_to_stringdtype_kwargs",
        # scipy sparse matrices / arrays and the array-API shim a scipy spline keeps
        *(f"scipy.sparse._{f}.{f}_{kind}" for f in ("csr", "csc", "coo", "lil", "dok", "bsr", "dia")
          for kind in ("matrix", "array")),
        "scipy._lib.array_api_compat.numpy._aliases.asarray",
        # numpy record arrays
        "numpy.recarray", "numpy.record", "numpy.rec.recarray", "numpy.rec.record", "numpy._core.records.recarray",
        "numpy._core.records.record", "numpy.core.records.recarray", "numpy.core.records.record",
    ]
)
#: Attributes reached by ``builtins.getattr(cls, name)`` that are allowed: how classmethods are pickled.
#: ``builtins.getattr`` itself is judged at each call (``_pickle.Walker._getattr``), never by its name.
SAFE_ATTRIBUTES = frozenset({"zoneinfo.ZoneInfo._unpickle"})

#: torch.nn.functional functions a module may keep as an attribute (``self.act = F.relu``), by name: the
#: module also holds other modules (``torch``, ``math``, ``importlib``...), so no pattern is safe here (found in
#: review: ``torch.nn.functional.torch`` passed a lower-case-name rule and hid a P4 state injection).
_TORCH_FUNCTIONAL = frozenset(
    "relu relu6 rrelu elu celu selu gelu silu mish glu sigmoid tanh tanhshrink softmax softmin log_softmax "
    "gumbel_softmax softsign softplus softshrink hardshrink hardtanh hardswish hardsigmoid leaky_relu "
    "logsigmoid log_sigmoid prelu threshold dropout dropout1d dropout2d dropout3d alpha_dropout "
    "feature_alpha_dropout normalize layer_norm group_norm rms_norm batch_norm instance_norm "
    "local_response_norm linear bilinear embedding embedding_bag one_hot pad interpolate upsample "
    "upsample_nearest upsample_bilinear avg_pool1d avg_pool2d avg_pool3d max_pool1d max_pool2d max_pool3d "
    "adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d adaptive_max_pool2d "
    "adaptive_max_pool3d cross_entropy nll_loss mse_loss l1_loss smooth_l1_loss huber_loss kl_div "
    "binary_cross_entropy binary_cross_entropy_with_logits poisson_nll_loss gaussian_nll_loss "
    "cosine_similarity pairwise_distance scaled_dot_product_attention".split())
#: pandas objects (DataFrame, Series, indexes, extension arrays and dtypes, timestamps, offsets): the
#: classes pandas pickles by their public names, and the helpers its pickles call to rebuild them.
_PANDAS = frozenset(
    [*(f"pandas.{n}" for n in (
        "DataFrame Series Index RangeIndex MultiIndex CategoricalIndex DatetimeIndex TimedeltaIndex PeriodIndex "
        "IntervalIndex Categorical CategoricalDtype DatetimeTZDtype PeriodDtype IntervalDtype SparseDtype "
        "StringDtype ArrowDtype BooleanDtype Float32Dtype Float64Dtype Int8Dtype Int16Dtype Int32Dtype Int64Dtype "
        "UInt8Dtype UInt16Dtype UInt32Dtype UInt64Dtype NA NaT Timestamp Timedelta Period Interval").split()),
     *(f"pandas.arrays.{n}" for n in (
         "BooleanArray DatetimeArray FloatingArray IntegerArray IntervalArray PeriodArray SparseArray StringArray "
         "TimedeltaArray NumpyExtensionArray ArrowStringArray ArrowExtensionArray").split()),
     "pandas.core.indexes.base._new_Index", "pandas.core.indexes.datetimes._new_DatetimeIndex",
     "pandas.core.indexes.interval._new_IntervalIndex",
     "pandas.core.indexes.timedeltas._new_TimedeltaIndex", "pandas.core.indexes.period._new_PeriodIndex",
     "pandas._libs.internals._unpickle_block", "pandas._libs.arrays.__pyx_unpickle_NDArrayBacked",
     "pandas._libs.interval.__pyx_unpickle_IntervalMixin", "pandas._libs.sparse.IntIndex",
     "pandas._libs.sparse.BlockIndex", "pandas._libs.tslibs.timedeltas._timedelta_unpickle",
     "pandas._libs.tslibs.timestamps._unpickle_timestamp", "pandas._libs.tslibs.nattype._nat_unpickle",
     "pandas.core.internals.blocks.new_block", "pandas.core.internals.blocks._extract_bool_array"])
#: pyarrow's buffer and data-type factories, which pandas objects holding Arrow data (strings when pyarrow is
#: installed, every ``ArrowDtype``) pickle through; each builds a type from its parameters or wraps bytes.
#: Not ``pyarrow.lib._restore_array`` (nor ``chunked_array``): it assembles an array from the pickle's raw
#: buffers without validating them, so crafted offsets read memory out of bounds or crash the kernel. Such
#: pickles stay "custom code".
_PYARROW = frozenset(f"pyarrow.lib.{n}" for n in (
    "py_buffer type_for_alias field schema list_ large_list list_view "
    "large_list_view fixed_size_list map_ struct dictionary run_end_encoded timestamp time32 time64 date32 "
    "date64 duration month_day_nano_interval decimal32 decimal64 decimal128 decimal256 binary large_binary "
    "binary_view fixed_size_binary string large_string string_view").split())
#: pandas modules whose classes (capitalised names) rebuild data: older pandas pickles by module path.
_PANDAS_CLASS_MODULES = ("pandas.core.frame", "pandas.core.series", "pandas.core.indexes.", "pandas.core.internals.",
                         "pandas.core.arrays.", "pandas.core.dtypes.dtypes", "pandas._libs.tslibs.offsets")

#: scipy objects fitted estimators keep: splines (SplineTransformer) by class name; sparse matrices and
#: arrays and the array-API shim a spline keeps as an attribute are listed in SAFE_GLOBALS.
_SCIPY_CLASS_MODULES = ("scipy.interpolate._",)
#: scikit-learn functions estimators keep as parameters (score functions, metrics, kernels): pure computations.
_SKLEARN_FUNCTIONS = frozenset(
    "f_classif f_regression r_regression chi2 f_oneway mutual_info_classif mutual_info_regression "
    "accuracy_score balanced_accuracy_score f1_score fbeta_score precision_score recall_score roc_auc_score "
    "average_precision_score log_loss brier_score_loss matthews_corrcoef r2_score mean_squared_error "
    "mean_absolute_error median_absolute_error explained_variance_score mean_absolute_percentage_error "
    "jaccard_score hamming_loss zero_one_loss cohen_kappa_score top_k_accuracy_score rbf_kernel linear_kernel "
    "polynomial_kernel sigmoid_kernel cosine_similarity laplacian_kernel chi2_kernel euclidean_distances "
    "manhattan_distances cosine_distances".split())

#: scikit-learn subpackages whose classes (estimators, their fitted parts) are allowed.
SKLEARN_SUBPACKAGES = frozenset(
    ["_loss", "calibration", "cluster", "compose", "covariance", "cross_decomposition", "decomposition", "discriminant_analysis", "dummy", "ensemble", "feature_extraction", "feature_selection", "frozen", "gaussian_process", "impute", "isotonic", "kernel_approximation", "kernel_ridge", "linear_model", "manifold", "metrics", "mixture", "model_selection", "multiclass", "multioutput", "naive_bayes", "neighbors", "neural_network", "pipeline", "preprocessing", "random_projection", "semi_supervised", "svm", "tree", "base"]
)
#: lower-case sklearn helpers that only rebuild an object of a class named in the same file
_SKLEARN_HELPERS = frozenset({"sklearn.neighbors._kd_tree.newObj", "sklearn.neighbors._ball_tree.newObj",
                              "sklearn.metrics._dist_metrics.newObj"})

#: modules (and everything under them) whose globals run code, touch files, processes or the network,
#: import things or load further pickles.
DANGEROUS_MODULES = frozenset(
    ["os", "posix", "nt", "posixpath", "ntpath", "genericpath", "subprocess", "_posixsubprocess", "sys", "socket", "_socket", "ssl", "shutil", "ctypes", "_ctypes", "importlib", "imp", "zipimport", "pkgutil", "runpy", "marshal", "types", "code", "codeop", "pdb", "bdb", "pty", "tty", "webbrowser", "builtins", "__builtin__", "__builtins__", "__main__", "operator", "inspect", "gc", "signal", "_signal", "select", "selectors", "asyncio", "multiprocessing", "concurrent", "threading", "_thread", "thread", "io", "_io", "pathlib", "tempfile", "glob", "fileinput", "shelve", "dbm", "sqlite3", "tarfile", "zipfile", "urllib", "urllib2", "urllib3", "http", "httplib", "requests", "ftplib", "smtplib", "imaplib", "poplib", "telnetlib", "nntplib", "socketserver", "xmlrpc", "wsgiref", "cgi", "cgitb", "logging", "uuid", "platform", "sysconfig", "site", "distutils", "setuptools", "pip", "ensurepip", "venv", "idlelib", "lib2to3", "profile", "cProfile", "trace", "timeit", "doctest", "pydoc", "pickle", "_pickle", "cPickle", "pickletools", "copyreg", "copy_reg", "dill", "cloudpickle", "fickling", "picklescan", "modelscan", "joblib", "yaml", "ruamel", "jsonpickle", "IPython", "ipykernel", "jupyter_client", "msvcrt", "winreg", "_winreg", "_winapi", "commands", "popen2", "atexit", "sched", "readline", "rlcompleter", "ast", "dis", "compileall", "py_compile", "mlflow", "keras", "tensorflow"]
)
#: dotted prefixes inside otherwise-allowed libraries that load pickles, generate or run code, or reach
#: the network / file system (picklescan's advisory fixtures and similar gadgets).
DANGEROUS_PREFIXES = frozenset(
    ["torch.load", "torch.serialization", "torch.storage._load_from_bytes", "torch.hub", "torch.jit", "torch.fx", "torch.package", "torch._dynamo", "torch._inductor", "torch._export", "torch.export", "torch.compiler", "torch.utils.collect_env", "torch.utils.cpp_extension", "torch.utils.data", "torch.utils.model_zoo", "torch.utils.checkpoint", "torch.distributed", "torch.multiprocessing", "torch.ops", "torch._ops", "torch._C._jit", "torch.backends", "torch.testing", "torch.cuda", "torch.onnx", "torch._classes", "torch.classes", "torch.library", "torch._library", "torch.overrides", "torch._jit_internal", "torch.autograd.profiler", "torch.profiler", "torch.save", "numpy.load", "numpy.save", "numpy.savez", "numpy.savez_compressed", "numpy.savetxt", "numpy.loadtxt", "numpy.genfromtxt", "numpy.fromfile", "numpy.tofile", "numpy.memmap", "numpy.fromregex", "numpy.lib.npyio", "numpy.lib._npyio_impl", "numpy.lib.format", "numpy.lib.format.read_array", "numpy.f2py", "numpy.testing", "numpy.distutils", "numpy.ctypeslib", "numpy.lib.utils", "numpy._core._internal", "numpy.core._internal", "numpy.lib._datasource", "numpy.DataSource", "numpy.lib.recfunctions", "numpy.char", "numpy.rec", "numpy.exec_command", "numpy.compat", "sklearn.utils", "sklearn.externals", "sklearn.datasets", "sklearn.experimental", "sklearn._config", "sklearn.utils._joblib", "sklearn.utils._testing", "scipy.io", "scipy._lib", "pandas.io", "pandas.read_pickle", "pandas.read_csv", "pandas.read_json", "pandas.read_sql", "pandas.read_parquet", "pandas.read_excel", "pandas.read_html", "pandas.read_table", "pandas.read_hdf", "pandas.read_feather", "pandas.util", "pandas.core.computation", "pandas.eval"]
)
#: names that are dangerous wherever they appear in a dotted path (a segment of module or name).
DANGEROUS_SEGMENTS = frozenset(
    ["os", "posix", "nt", "subprocess", "sys", "builtins", "__builtin__", "__builtins__", "importlib", "ctypes", "marshal", "pickle", "_pickle", "cPickle", "dill", "cloudpickle", "socket", "shutil", "pty", "runpy", "system", "popen", "popen2", "popen3", "popen4", "spawn", "spawnl", "spawnle", "spawnlp", "spawnv", "spawnve", "spawnvp", "execl", "execle", "execlp", "execv", "execve", "execvp", "eval", "exec", "execfile", "compile", "__import__", "import_module", "getattr", "setattr", "delattr", "__getattribute__", "__getattr__", "__globals__", "__subclasses__", "__code__", "__reduce__", "__reduce_ex__", "__setstate__", "__class__", "__dict__", "__init_subclass__", "__call__", "load", "loads", "load_config", "read_pickle", "_load_from_bytes", "run_path", "run_module", "runstring", "runcode", "check_output", "check_call", "getoutput", "getstatusoutput", "startfile", "fork", "forkpty", "kill", "_exit", "spawnv_passfds", "breakpoint"]
)
_SAFE_BUILTINS = frozenset(g.split(".", 1)[1] for g in SAFE_GLOBALS if g.startswith("builtins."))


def fix_import(module: str, name: str, proto: int) -> tuple[str, str]:
    """The (module, name) the unpickler resolves: Python 2 names are mapped below protocol 3."""
    if proto < 3 and _compat is not None:
        mapped = _compat.NAME_MAPPING.get((module, name))
        if mapped:
            return mapped
        module = _compat.IMPORT_MAPPING.get(module, module)
    return module, name


def _prefixes(full: str) -> list[str]:
    parts = full.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _library_class(module: str, name: str) -> bool:
    """Standard torch.nn / torch.optim classes, torch.nn.functional functions (activations a module keeps),
    scikit-learn estimator classes, pandas data classes and the pyarrow helpers pandas' Arrow data uses."""
    if module in ("torch.nn.functional", "torch._C._nn"):
        return name in _TORCH_FUNCTIONAL
    if f"{module}.{name}" in _PANDAS or f"{module}.{name}" in _PYARROW:
        return True
    if module.startswith(_PANDAS_CLASS_MODULES + _SCIPY_CLASS_MODULES) and re.fullmatch(r"[A-Z]\w*", name):
        return True
    if module.startswith(("sklearn.metrics.", "sklearn.feature_selection.")) and name in _SKLEARN_FUNCTIONS:
        return True
    if "." in name or not re.fullmatch(r"_?[A-Z]\w*", name):
        if module.startswith("sklearn.") and re.fullmatch(r"__pyx_unpickle_[A-Z]\w*", name):
            return module.split(".")[1] in SKLEARN_SUBPACKAGES
        return False
    if module.startswith(("torch.nn.modules.", "torch.optim.", "torch.nn.utils.parametrizations")):
        return True
    if module.startswith("sklearn."):
        return module.split(".")[1] in SKLEARN_SUBPACKAGES
    return module.startswith("torch.ao.nn.") or module == "torch.nn.utils.spectral_norm"


def classify(full: str, raw_names: Iterable[str] = (), chain: str | None = None) -> tuple[str, str]:
    """(category, reason) for the global ``module.name``, the worst over its raw spellings too.

    ``chain`` is the name part when it is dotted (``GLOBAL pathlib`` + ``os.system``): the unpickler
    then walks an attribute chain from the module, which can reach any object the module can see.
    """
    worst = _classify_one(full, chain)
    if worst[0] == "safe":  # the unpickler resolves the mapped (Python 3) name
        return worst
    for raw in raw_names:
        if raw != full:
            other = _classify_one(raw, chain)
            if _RANK[other[0]] > _RANK[worst[0]]:
                worst = other
    return worst


_RANK = {"safe": 0, "custom": 1, "unsafe": 2, "critical": 3}


def _classify_one(full: str, chain: str | None) -> tuple[str, str]:
    if full in SAFE_GLOBALS or full in _SKLEARN_HELPERS:
        return "safe", "allowlisted"
    if full == "builtins.getattr":
        # Judged at each call (Walker._getattr). Allowlisted functions that call an argument accept only the
        # functions their library pickles there (call_problem), so getattr cannot be called through them.
        return "safe", "each call is checked: only allowlisted attributes"
    if full.startswith("<"):
        return "unsafe", "cannot be resolved"
    module, _, name = full.rpartition(".")
    segments = full.split(".")
    if segments[0] in DANGEROUS_MODULES:
        return "critical", f"{segments[0]} is a code-execution, file, process, network or loader module"
    hit = next((p for p in _prefixes(full) if p in DANGEROUS_PREFIXES), None)
    if hit:
        return "critical", f"{hit} loads files, runs code or reaches outside the process"
    seg = next((s for s in segments if s in DANGEROUS_SEGMENTS), None)
    if seg:
        return "critical", f"its path goes through '{seg}'"
    if chain and any(not s[:1].isupper() for s in chain.split(".")[:-1]):
        return "unsafe", ("an attribute chain through a non-class name: it can reach any object the module "
                          "can see")
    if _library_class(module, name):
        return "safe", "standard library class"
    return "custom", "code from outside the allowlist"


_BIT_GENERATOR_CTOR = "numpy.random._pickle.__bit_generator_ctor"


def _numpy_bit_generator(arg: Any) -> bool:
    """A bit generator as numpy pickles one: its name, an allowlisted ``numpy.random`` class, or one made by
    numpy's own bit-generator constructor."""
    name = getattr(arg, "full", None)
    return (isinstance(arg, str) or (name in SAFE_GLOBALS and name.startswith("numpy.random."))
            or getattr(arg, "callee_name", None) == _BIT_GENERATOR_CTOR)


def call_problem(callee: str, args: Any) -> str | None:
    """A problem with a call to an allowlisted global given its (symbolic) arguments.

    Allowlisted functions that call one of their arguments are only safe with the argument their library
    pickles (found in review: ``torch._tensor._rebuild_from_type_v2(getattr, ...)`` reached a module's
    globals): ``_rebuild_from_type_v2(func, ...)`` calls ``func(*args)``, numpy's random-state constructors
    call the bit-generator constructor they are given, which instantiates the class it is given.
    """
    args = args if isinstance(args, tuple) else ()
    if callee == "_codecs.encode":
        ok = (len(args) == 2 and args[1] in ("latin1", "latin-1")
              and (isinstance(args[0], str) or getattr(args[0], "what", "") == "long string"))
        if not ok:
            return "_codecs.encode called other than as numpy's encode(str, 'latin1')"
    elif callee == "torch._tensor._rebuild_from_type_v2":
        func = getattr(args[0], "full", "") if args else ""
        if not (func.startswith("torch._utils._rebuild_") and func in SAFE_GLOBALS):
            return f"{callee} called with a function torch never pickles there: it calls that function"
    elif callee in ("numpy.random._pickle.__randomstate_ctor", "numpy.random._pickle.__generator_ctor"):
        ctor_ok = len(args) < 2 or getattr(args[1], "full", None) == _BIT_GENERATOR_CTOR
        if not (args and _numpy_bit_generator(args[0]) and ctor_ok):
            return f"{callee} called with arguments numpy never pickles: it calls what it is given"
    elif callee == _BIT_GENERATOR_CTOR and not (len(args) == 1 and _numpy_bit_generator(args[0])):
        return f"{callee} called with something other than a numpy bit generator: it instantiates what it is given"
    return None


_ELEMENT_SIZES = {"Float": 4, "Double": 8, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2, "Char": 1,
                  "Byte": 1, "Bool": 1, "ComplexFloat": 8, "ComplexDouble": 16, "QUInt8": 1, "QInt8": 1,
                  "QInt32": 4, "Untyped": 1}


def storage_element_size(ref: Any) -> int | None:
    """Bytes per element of a ``torch.<Kind>Storage`` global (torch's legacy tar format), else ``None``."""
    full = getattr(ref, "full", "")
    if full.startswith("torch.") and full.endswith("Storage"):
        return _ELEMENT_SIZES.get(full[len("torch."):-len("Storage")])
    return None
