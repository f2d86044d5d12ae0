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

The first use also makes jemalloc Arrow's allocator (unless ``ARROW_DEFAULT_MEMORY_POOL``
names one, or this pyarrow lacks it). The wheels default to mimalloc, which keeps what
a command frees: a scan that opens and drops hundreds of Parquet readers grew by
~0.13 MB per file and never shrank. Measured on 1M and 100M TSBS rows (mimalloc ->
jemalloc, peak RSS): ``db verify`` 203 -> 129 MB and 256 -> 144 MB, ``select --limit
10`` of 100M rows 153 -> 118 MB, one host of 100M rows 167 -> 148 MB, each as fast or
faster (``db verify`` of 100M rows 21.5 -> 16.1 s); line-protocol ingest of 1M rows
2.78 -> 2.67 s median of five, peak RSS unchanged.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING, Any


class _Deferred(ModuleType):
    """Stands for a module until an attribute is asked of it, then for its attributes."""

    def __getattr__(self, attr: str) -> Any:
        _choose_allocator()
        value = getattr(importlib.import_module(self.__name__), attr)
        setattr(self, attr, value)  # the next lookup of this name is a plain one
        return value


_ALLOCATOR_CHOSEN = False


def _choose_allocator() -> None:
    """jemalloc as Arrow's default pool, once (see above); a second thread racing
    here sets the same pool again, which is harmless."""
    global _ALLOCATOR_CHOSEN
    if _ALLOCATOR_CHOSEN:
        return
    _ALLOCATOR_CHOSEN = True
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    import pyarrow

    with contextlib.suppress(NotImplementedError):  # a build without it keeps its default
        pyarrow.set_memory_pool(pyarrow.jemalloc_memory_pool())


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
