"""CRC-32C (Castagnoli): the checksum of every WAL record, manifest and log segment.

The function is the ``crc32c`` package's C extension, loaded without running the
package's ``__init__``: that imports ``importlib.metadata`` only to learn its own
version, about 30 ms, which every command (each opens a manifest) would pay at
start-up. Should the package's layout change, the plain import is the fallback, so
the only thing at stake here is speed, never the checksum.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from typing import Protocol, cast


class Checksum(Protocol):
    def __call__(self, data: bytes | bytearray | memoryview, value: int = 0, /) -> int:
        """The CRC-32C of ``data``, continuing from the running ``value``."""


def _extension() -> Checksum | None:
    spec = importlib.util.find_spec("crc32c")  # finds the package; does not import it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = Path(folder) / f"_crc32c{suffix}"
            if not path.is_file():
                continue
            found = importlib.util.spec_from_file_location("crc32c._crc32c", path)
            if found is None or found.loader is None:
                return None
            module = importlib.util.module_from_spec(found)
            found.loader.exec_module(module)
            return cast(Checksum, module.crc32c)
    return None


def _load() -> Checksum:
    try:
        function = _extension()
    except (ImportError, OSError, AttributeError):
        function = None
    if function is None:
        import crc32c as package

        function = package.crc32c
    return function


crc32c: Checksum = _load()
