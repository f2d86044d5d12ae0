"""Exit codes and the one place engine errors become them.

=====  ==================================================================
code   meaning
=====  ==================================================================
0      success
1      failure (not found, already exists, disk full, I/O error, ...)
2      usage: bad option, bad name, bad value
3      verification found problems (``wal verify``, ``backup verify``, ...)
4      the database is locked by another writer
5      the database (or a file of it) is corrupt
6      bad input data: ingest stopped at a bad line, or a field type conflict
7      partial load: ingest finished, but skipped rejected lines or rows
8      a ``byrl`` write was not confirmed by its replica store in time
9      writes refused: the database is a standby, or was fenced by a promotion
=====  ==================================================================
"""

from __future__ import annotations

from enum import IntEnum

from engine.errors import (
    BadInput,
    Corruption,
    EngineError,
    InvalidArgument,
    Locked,
    ReplicaTimeout,
    SchemaConflict,
    VerificationFailed,
    WritesRefused,
)


class Exit(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    VERIFY_FAILED = 3
    LOCKED = 4
    CORRUPT = 5
    BAD_INPUT = 6
    PARTIAL = 7
    NOT_REPLICATED = 8
    WRITES_REFUSED = 9


_BY_CLASS: list[tuple[type[EngineError], Exit]] = [
    (InvalidArgument, Exit.USAGE),
    (VerificationFailed, Exit.VERIFY_FAILED),
    (Locked, Exit.LOCKED),
    (Corruption, Exit.CORRUPT),
    (BadInput, Exit.BAD_INPUT),
    (SchemaConflict, Exit.BAD_INPUT),
    (ReplicaTimeout, Exit.NOT_REPLICATED),
    (WritesRefused, Exit.WRITES_REFUSED),
]


# Engine parameters as this CLI spells them: engine messages never name our options, so
# the one exit point adds the option a refused value came from.
OPTION_OF = {
    "on_error": "--on-error",
    "mode": "--mode",
    "keep_last": "--keep-last",
    "delimiter": "--delimiter",
    "tz": "--tz",
    "target": "--to-time/--to-lsn",
    "where": "--where",
    "end": "--end",
}


def worded(error: EngineError) -> str:
    """The error's message, with the CLI option it concerns when there is one."""
    param = getattr(error, "param", None)
    option = OPTION_OF.get(param) if param else None
    return f"{error.message} (option {option})" if option else error.message


def exit_code_for(error: EngineError) -> Exit:
    for cls, code in _BY_CLASS:
        if isinstance(error, cls):
            return code
    return Exit.FAILURE
