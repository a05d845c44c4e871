"""Pure security checks, one per file, registered by id (see :mod:`.registry`)."""

from .budget import Budget, CheckCancelled, CheckTimeout
from .registry import all_checks, get_check, register_check, run_check

__all__ = ["Budget", "CheckCancelled", "CheckTimeout", "all_checks", "get_check", "register_check", "run_check"]
