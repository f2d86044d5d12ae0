"""Encoding a transaction's DATA payloads on the other core while its writer counts.

A WAL payload is Arrow IPC through zstd: ~3 ms for 5,000 TSBS rows, most of what a
logged commit costs beyond an unlogged one. Both Arrow's IPC writer and zstd release
the GIL, so the encoding can run on a second core while the writer does the other
work of the commit that does not need the log (counting the rows that overwrite
stored points, which sorts the batch's keys). With nothing to do beside it, a commit
encodes in its own thread: handing it over would only add the switch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from engine.arrowmods import pa
from engine.io.ahead import SpareThread
from engine.log import wal

if TYPE_CHECKING:  # loaded by the first commit: a reader never needs it
    from concurrent.futures import Future

_ENCODER = SpareThread("wal-encode")


def encode_payloads(tables: Sequence[tuple[str, pa.Table]], *, beside: bool) -> Future[list[bytes]]:
    """The DATA payloads of ``tables`` (name and rows), encoded on the encoder thread
    when ``beside`` (the caller has work to do meanwhile), else here, now."""
    from concurrent.futures import Future

    if beside and tables:
        return _ENCODER.submit(_encode, tables)
    done: Future[list[bytes]] = Future()
    done.set_result(_encode(tables))
    return done


def _encode(tables: Sequence[tuple[str, pa.Table]]) -> list[bytes]:
    return [wal.encode_data(name, rows) for name, rows in tables]
