"""mlsec-jupyter: ML security checks that run by themselves in Jupyter.

In a notebook::

    %load_ext mlsec_jupyter

In plain Python::

    import mlsec_jupyter as mj
    card = mj.scan_data(X, y)
    mj.report("report.sarif", cards=[card])       # or .html / .json
    findings = mj.run_check("data.duplicates", X=X, y=y)
    eps = mj.privacy.epsilon(noise_multiplier=1.1, sample_rate=256 / 60000, steps=14063, delta=1e-5)

Importing this package is cheap: numpy is the only heavy import, and only when a name is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Finding", "RiskCard", "Severity", "scan_data", "scan_model", "scan_file", "run_check", "report",
    "load_ipython_extension", "unload_ipython_extension", "privacy", "__version__",
]

if TYPE_CHECKING:  # pragma: no cover
    from .api import report, run_check, scan_data, scan_file, scan_model
    from .findings import Finding, RiskCard, Severity

_LAZY = {
    "Finding": "findings", "RiskCard": "findings", "Severity": "findings",
    "scan_data": "api", "scan_model": "api", "scan_file": "api", "run_check": "api", "report": "api",
}


#: Subpackages reached as attributes (``mj.privacy.epsilon(...)``), imported on first use.
_SUBPACKAGES = {"privacy"}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mlsec_jupyter' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext mlsec_jupyter``: start watching cells in this IPython session."""
    from .extension import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext mlsec_jupyter``: stop watching and remove everything the extension added."""
    from .extension import unload

    unload(ipython)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt JupyterLab extension (risk-card renderer, sidebar, status item) lives."""
    return [{"src": "labextension", "dest": "mlsec-jupyter"}]
