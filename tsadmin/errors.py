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
    Remedy,
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


# The engine names what to do (a Remedy) and never a command; these are the commands.
# {subject} is the database or archive the error concerns.
REMEDY_HINTS: dict[Remedy, str] = {
    Remedy.LIST_DATABASES: "list databases with 'tsadmin db list'",
    Remedy.LIST_WAL_RECORDS: "list them with 'tsadmin wal inspect {subject}'",
    Remedy.VERIFY_WAL: "run 'tsadmin wal verify {subject}' to see the damage, then "
    "'tsadmin wal repair {subject} --salvage --dry-run' to see what a repair would keep",
    Remedy.REPAIR_WAL: "records were lost; restore from a backup or run "
    "'tsadmin wal repair {subject} --salvage'",
    Remedy.SHIP_ONCE: "let the replica catch up (tsadmin replicate {subject} --once), then retry",
    Remedy.ADD_REPLICA: "add one first: tsadmin replica add {subject} URL",
    Remedy.OPEN_FOR_WRITING: "open it for writing once (tsadmin checkpoint {subject}) to give "
    "it one",
    Remedy.PROMOTE: "read from it freely; to make it the primary: tsadmin promote {subject}",
    Remedy.FOLLOW_NEW_PRIMARY: "write to the new primary; to bring this site back, follow the "
    "new primary into a fresh database (tsadmin follow URL NEW_NAME) and drop this one "
    "(tsadmin db drop {subject} --yes)",
    Remedy.VERIFY_ARCHIVE: "'tsadmin backup verify {subject}' lists every problem",
    Remedy.VERIFY_DATABASE: "'tsadmin db verify {subject}' lists every damaged file; restore "
    "the table from a backup, or drop the damaged segments with 'tsadmin db salvage {subject}'",
}


def hint_of(error: EngineError) -> str | None:
    """The hint to print: the remedy as our command when the engine named one."""
    if error.remedy is None:
        return error.hint
    return REMEDY_HINTS[error.remedy].format(subject=error.subject or "DB")
