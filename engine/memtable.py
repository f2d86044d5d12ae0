"""The memtable: batches committed since the last checkpoint, in commit order."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa


@dataclass
class Memtable:
    batches: dict[str, list[pa.Table]] = field(default_factory=dict)
    rows: int = 0
    nbytes: int = 0

    def add(self, table: str, rows: pa.Table) -> None:
        self.batches.setdefault(table, []).append(rows)
        self.rows += rows.num_rows
        self.nbytes += rows.nbytes

    def drop(self, table: str) -> None:
        for rows in self.batches.pop(table, []):
            self.rows -= rows.num_rows
            self.nbytes -= rows.nbytes

    def is_empty(self) -> bool:
        return self.rows == 0

    def tables(self) -> list[str]:
        return list(self.batches)
