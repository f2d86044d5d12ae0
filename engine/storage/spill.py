"""Sorted runs spilled to scratch files, so that a merge of many sources holds only
a few of them open at once.

A scan in series order must read every time partition of a table side by side (a
series has rows in all of them), and each open segment costs its reader's buffers
and a batch. Past a bound, the scan merges the segments in groups, writes each
group's merged rows to a run file, then merges the runs: two passes over the rows
instead of one, and memory set by the bound, not by the number of segments.

A run no longer than one of the batches its reader holds (the last merge holds a
batch of each run) stays in memory and never touches a file: a bounded scan (one
host, one hour) over many partitions merges a few rows per group, and writing
those out only to read them back would cost more than the rows themselves.

Run file format (scratch only, never part of a database; removed when the scan
ends, or by the next command that makes a scratch directory if the process died):
an Arrow IPC stream (schema message, then record batches of at most the batch size
the run was written with, then the end-of-stream marker), buffers compressed with
LZ4 frames. The columns named as runs (a table's tags) are stored run-end encoded
(``run_end_encoded<int32, string>``): a run is sorted by series, so a tag changes
only where a series does, and its values cost a few bytes per series instead of
some sixteen per row (a TSBS run: 37 MB per million rows instead of 76, written
four times faster). Nothing needs recovering from it, so it is written without fsync.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

from engine.arrowmods import pa, pc


@functools.cache
def _options() -> pa.ipc.IpcWriteOptions:
    return pa.ipc.IpcWriteOptions(compression="lz4")


class Run:
    """One spilled run: written whole by :meth:`write`, read back once, in order."""

    def __init__(self, path: Path, schema: pa.Schema, runs_in: Iterable[str] = ()) -> None:
        self.path = path
        self.schema = schema
        self.rows = 0
        wanted = set(runs_in)
        self._as_runs = [
            i for i, f in enumerate(schema) if f.name in wanted and pa.types.is_string(f.type)
        ]
        stored = list(schema)
        for i in self._as_runs:
            stored[i] = stored[i].with_type(pa.run_end_encoded(pa.int32(), schema.field(i).type))
        self._stored = pa.schema(stored)
        self.held: list[pa.RecordBatch] | None = None  # the whole run, when it is short

    def write(self, batches: Iterable[pa.Table], batch_rows: int) -> Run:
        """Write ``batches`` (of the run's schema) in record batches of at most
        ``batch_rows`` rows, the most a reader of the run holds at a time; a run of at
        most ``batch_rows`` rows is held instead."""
        pieces = (b for table in batches for b in table.to_batches(max_chunksize=batch_rows))
        held: list[pa.RecordBatch] = []
        rows = 0
        for batch in pieces:
            held.append(batch)
            rows += batch.num_rows
            if rows > batch_rows:
                self._write_file(itertools.chain(held, pieces))
                return self
        # copied: a merge's batches are slices of its rounds, which they would keep alive
        short = pa.Table.from_batches(held, self.schema).take(pa.array(range(rows), pa.int64()))
        self.held, self.rows = short.to_batches(), rows
        return self

    def _write_file(self, batches: Iterable[pa.RecordBatch]) -> None:
        with (
            pa.OSFile(str(self.path), "wb") as sink,
            pa.ipc.new_stream(sink, self._stored, options=_options()) as writer,
        ):
            for batch in batches:
                writer.write_batch(self._encoded(batch))
                self.rows += batch.num_rows

    def batches(self) -> Iterator[pa.Table]:
        """The run's rows, a record batch at a time."""
        if self.held is not None:
            yield from (pa.Table.from_batches([b], self.schema) for b in self.held)
            return
        with pa.OSFile(str(self.path), "rb") as source:
            reader = pa.ipc.open_stream(source)
            for batch in reader:
                yield pa.Table.from_batches([self._decoded(batch)], self.schema)

    def _encoded(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if not self._as_runs:
            return batch
        columns = list(batch.columns)
        for i in self._as_runs:
            columns[i] = pc.run_end_encode(columns[i], run_end_type=pa.int32())
        return pa.RecordBatch.from_arrays(columns, schema=self._stored)

    def _decoded(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if not self._as_runs:
            return batch
        columns = list(batch.columns)
        for i in self._as_runs:
            columns[i] = pc.run_end_decode(columns[i])
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)
