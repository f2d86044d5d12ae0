"""pyarrow and its submodules, imported when first used rather than at start-up.

``import pyarrow`` costs about 40 ms on this machine, ``pyarrow.compute`` 60 ms more
and ``pyarrow.parquet`` 35 ms: more than the rest of a command's start-up together.
Many commands (``--version``, listing databases, settings, WAL inspection) never
decode a batch, call a kernel or open a Parquet file, so every engine module takes
these names from here instead of importing them at its top; the first attribute used
imports the real module. A module must not use them at import time.

Not ``importlib.util.LazyLoader``: before Python 3.12 it is not thread-safe, and
the engine's checkpoint thread and the server's handlers may be first to touch a
module. ``importlib.import_module`` takes the import lock, so two threads racing
here both get the fully initialised module.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any


class _Deferred(ModuleType):
    """Stands for a module until an attribute is asked of it, then for its attributes."""

    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self.__name__), attr)
        setattr(self, attr, value)  # the next lookup of this name is a plain one
        return value


if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq
else:
    pa = _Deferred("pyarrow")
    ipc = _Deferred("pyarrow.ipc")
    pc = _Deferred("pyarrow.compute")
    pacsv = _Deferred("pyarrow.csv")
    pq = _Deferred("pyarrow.parquet")

__all__ = ["ipc", "pa", "pacsv", "pc", "pq"]
