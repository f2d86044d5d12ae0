"""Sorted runs spilled to scratch files, so that a merge of many sources holds only
a few of them open at once.

A scan in series order must read every time partition of a table side by side (a
series has rows in all of them), and each open segment costs its reader's buffers
and a batch. Past a bound, the scan merges the segments in groups, writes each
group's merged rows to a run file, then merges the runs: two passes over the rows
instead of one, and memory set by the bound, not by the number of segments.

Run file format (scratch only, never part of a database; removed when the scan
ends, or by the next command that makes a scratch directory if the process died):
an Arrow IPC stream (schema message, then record batches of at most the batch size
the run was written with, then the end-of-stream marker), buffers compressed with
LZ4 frames. Nothing needs recovering from it, so it is written without fsync.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from pathlib import Path

from engine.arrowmods import pa


@functools.cache
def _options() -> pa.ipc.IpcWriteOptions:
    return pa.ipc.IpcWriteOptions(compression="lz4")


class Run:
    """One spilled run: written whole by :meth:`write`, read back once, in order."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self.rows = 0

    def write(self, batches: Iterable[pa.Table], batch_rows: int) -> Run:
        """Write ``batches`` (of the run's schema) in record batches of at most
        ``batch_rows`` rows, the most a reader of the run holds at a time."""
        with (
            pa.OSFile(str(self.path), "wb") as sink,
            pa.ipc.new_stream(sink, self.schema, options=_options()) as writer,
        ):
            for table in batches:
                for batch in table.to_batches(max_chunksize=batch_rows):
                    writer.write_batch(batch)
                    self.rows += batch.num_rows
        return self

    def batches(self) -> Iterator[pa.Table]:
        """The run's rows, a record batch at a time."""
        with pa.OSFile(str(self.path), "rb") as source:
            reader = pa.ipc.open_stream(source)
            for batch in reader:
                yield pa.Table.from_batches([batch], self.schema)
