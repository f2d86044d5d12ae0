"""Scratch directories: files a command stages or fetches and removes when it is done
(an archive built for a remote store, an archive fetched from one, the log a
point-in-time restore downloads).

They all live under one directory tsadmin owns, ``$TMPDIR/tsadmin-<uid>/`` (mode
0700), each named ``<kind>-<pid>-<random>``. A process killed before it removed
its own leaves one behind: every command that makes a scratch directory first
removes those whose process is no longer alive (and ``backup prune`` does too), so
leftovers never pile up. A directory of a live process is never touched, and a
name that does not have this shape is not ours and is left alone.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.io.fileio import IO
from engine.io.lock import process_alive

_NAME = re.compile(r"([a-z]+)-(?P<pid>[0-9]+)-([0-9a-f]{8})")


def scratch_root() -> Path:
    return Path(tempfile.gettempdir()) / f"tsadmin-{os.getuid()}"


def make(kind: str) -> Path:
    """A new scratch directory of this process (the caller removes it); the
    leftovers of dead processes are removed first."""
    clear_dead()
    path = scratch_root() / f"{kind}-{os.getpid()}-{os.urandom(4).hex()}"
    IO.mkdirs(path)
    return path


@contextmanager
def scratch(kind: str) -> Iterator[Path]:
    """A scratch directory for the ``with`` block, removed after it however it ends."""
    path = make(kind)
    try:
        yield path
    finally:
        IO.remove_tree(path)


def dead() -> list[Path]:
    """The scratch directories of processes that are gone."""
    return of_dead_processes(scratch_root(), _NAME)


def of_dead_processes(directory: Path, names: re.Pattern[str]) -> list[Path]:
    """The entries of ``directory`` whose name matches ``names`` and whose process (the
    group named ``pid``) is gone: what a killed command left."""
    if not directory.is_dir():
        return []
    found = []
    for entry in sorted(directory.iterdir()):
        match = names.fullmatch(entry.name)
        if match and not process_alive(int(match.group("pid"))):
            found.append(entry)
    return found


def clear_dead() -> list[str]:
    """Remove the scratch directories of processes that are gone; their paths."""
    removed = []
    for entry in dead():
        IO.remove_tree(entry)
        removed.append(str(entry))
    return removed
