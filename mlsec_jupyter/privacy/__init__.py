"""``mlsec_jupyter.privacy``: differential-privacy accounting for DP-SGD (see :mod:`.accounting`).

::

    import mlsec_jupyter.privacy as privacy
    eps = privacy.epsilon(noise_multiplier=1.1, sample_rate=256 / 60000, steps=14063, delta=1e-5)
    sigma = privacy.noise_multiplier(target_epsilon=8, delta=1e-5, sample_rate=0.04, steps=2000)

Importing this package imports nothing heavy (no numpy, scipy, torch, opacus or dp_accounting):
names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "DEFAULT_ORDERS",
    "OPACUS_ORDERS",
    "TF_ORDERS",
    "delta_for",
    "delta_of_history",
    "epsilon",
    "epsilon_from_rdp",
    "epsilon_of_history",
    "gaussian_delta",
    "gaussian_epsilon",
    "noise_multiplier",
    "rdp_sampled_gaussian",
    "Ledger",
    "LedgerError",
    "DPState",
    "find_dp_states",
]

#: Names that live outside :mod:`.accounting`.
_ELSEWHERE = {"Ledger": "ledger", "LedgerError": "ledger", "DPState": "opacus", "find_dp_states": "opacus"}

if TYPE_CHECKING:  # pragma: no cover
    from .accounting import (
        DEFAULT_ORDERS,
        OPACUS_ORDERS,
        TF_ORDERS,
        delta_for,
        delta_of_history,
        epsilon,
        epsilon_from_rdp,
        epsilon_of_history,
        gaussian_delta,
        gaussian_epsilon,
        noise_multiplier,
        rdp_sampled_gaussian,
    )
    from .ledger import Ledger, LedgerError
    from .opacus import DPState, find_dp_states


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'mlsec_jupyter.privacy' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_ELSEWHERE.get(name, 'accounting')}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
