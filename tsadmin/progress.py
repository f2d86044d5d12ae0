"""A rich progress bar on stderr for a person at a terminal; nothing otherwise."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

# rich is imported only when a bar is drawn: about 50 ms that a command run by cron or
# a script (no terminal) would otherwise pay for nothing


@contextlib.contextmanager
def byte_progress(
    enabled: bool, total: int | None, label: str
) -> Iterator[Callable[[int, int], None] | None]:
    """Yields a callback ``(bytes_done, rows_done)``, or ``None`` when disabled."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total, rows=0)

        def update(done: int, rows: int) -> None:
            bar.update(task, completed=done, rows=rows)

        yield update


@contextlib.contextmanager
def count_progress(
    enabled: bool, total: int, label: str
) -> Iterator[Callable[[int, int], None] | None]:
    """Yields a callback ``(done, total)`` driving a bar of steps, or ``None`` when disabled."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done, _total: bar.update(task, completed=done)
