"""Which line-protocol parser runs: the native one where it was built, unless
``TSADMIN_LP_PARSER=python`` asks for the pure-Python one. Kept apart from the parsers
so ``tsadmin --version`` can say which without loading Arrow."""

from __future__ import annotations

import functools
import importlib
import os
from types import ModuleType


@functools.cache
def native_module() -> ModuleType | None:
    """The native parser's extension module, or None where it is not built or not wanted."""
    if os.environ.get("TSADMIN_LP_PARSER", "native") == "python":
        return None
    try:
        return importlib.import_module("engine.ingest._lpnative")
    except ImportError:  # not built: no compiler where the package was installed
        return None


def active() -> str:
    """The line-protocol parser in use: ``native`` or ``python``."""
    return "python" if native_module() is None else "native"
