"""Typed errors raised by the engine.

Every error the engine raises on purpose is an :class:`EngineError`. Each
carries a one-line message (what and where) and an optional hint (what to do).
The CLI maps the classes to exit codes in one place (``tsadmin/errors.py``).
"""

from __future__ import annotations

from enum import Enum
from typing import Self


class Remedy(Enum):
    """What an operator can do next, for a front end to word as its own command. The
    engine never names a command: its hint says the same in plain words (what an HTTP
    client or a log reader sees), and the CLI names the command (``tsadmin/errors.py``).
    The error's ``subject`` is the database or archive the remedy applies to."""

    LIST_DATABASES = "list the databases"
    LIST_WAL_RECORDS = "list the WAL's records"
    VERIFY_WAL = "check the WAL, then see what a repair would keep"
    REPAIR_WAL = "repair the WAL"
    SHIP_ONCE = "run one shipping round"
    ADD_REPLICA = "add a replica store"
    OPEN_FOR_WRITING = "open the database for writing once"
    PROMOTE = "promote the standby"
    FOLLOW_NEW_PRIMARY = "follow the new primary into a fresh database"
    VERIFY_ARCHIVE = "verify the archive"
    VERIFY_DATABASE = "verify the database, then salvage or restore"


class EngineError(Exception):
    """Base of every deliberate engine error."""

    # Set by a command that writes when it stops on this error: how many rows it had
    # committed durably before (None: it committed nothing, or it does not write rows).
    committed_rows: int | None = None
    remedy: Remedy | None = None
    subject: str = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def advise(self, remedy: Remedy, subject: str = "") -> Self:
        """Name the remedy (and the database or archive it applies to) that a front
        end words as its own command; returns the error, to raise."""
        self.remedy, self.subject = remedy, subject
        return self


class InvalidArgument(EngineError):
    """A caller passed a value the engine refuses (bad name, unknown setting...).

    ``param`` names the parameter of the engine call (``on_error``, ``mode``...), so a
    front end can say which of its own options it was; the message never does."""

    def __init__(self, message: str, hint: str | None = None, *, param: str | None = None) -> None:
        super().__init__(message, hint)
        self.param = param


class NotFound(EngineError):
    """A database, table or record that was asked for does not exist."""


class AlreadyExists(EngineError):
    """Something that was to be created exists already."""


class SchemaConflict(EngineError):
    """A write carries a field whose type differs from the stored one."""


class BadInput(EngineError):
    """Input data (a line of line protocol, a CSV row) could not be parsed.

    ``committed_rows`` tells how many rows were durably written before the
    bad input was met, so the caller can report that a re-run is safe.
    """

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        source: str = "",
        line: int = 0,
        column: int = 0,
        committed_rows: int = 0,
    ) -> None:
        super().__init__(message, hint)
        self.source = source
        self.line = line
        self.column = column
        self.committed_rows = committed_rows


class Locked(EngineError):
    """Another process holds the database's writer lock."""

    def __init__(self, message: str, hint: str | None = None, *, pid: int | None = None) -> None:
        super().__init__(message, hint)
        self.pid = pid


class Corruption(EngineError):
    """A file on disk is not what its format says; ``path``/``offset`` say where."""

    def __init__(
        self, message: str, hint: str | None = None, *, path: str = "", offset: int | None = None
    ) -> None:
        super().__init__(message, hint)
        self.path = path
        self.offset = offset


class DiskFull(EngineError):
    """A write failed for lack of space; nothing of the refused batch was kept."""


class StorageError(EngineError):
    """Any other operating-system failure while reading or writing database files."""


class BackgroundBug(StorageError):
    """An unexpected exception in a background thread (a bug): kept so that the next
    write and the close report it, instead of the thread ending in silence."""

    @classmethod
    def of(cls, what: str, exc: BaseException) -> BackgroundBug:
        return cls(
            f"internal error in the background {what}: {type(exc).__name__}: {exc}",
            hint="close and reopen the database (recovery replays what was acknowledged); "
            "please report this",
        )


class VerificationFailed(EngineError):
    """A verification found problems (the report lists them)."""


class StoreUnavailable(EngineError):
    """An archive store (an object store, a remote file system) could not be reached or
    refused the request: the endpoint, credentials or permissions are wrong, or it is
    down. Nothing was changed by the refused request."""


class ReplicaTimeout(EngineError):
    """A ``byrl`` write is durable on the local disk but a replica store did not confirm
    it in time: not acknowledged (the shipper keeps trying)."""


class WritesRefused(EngineError):
    """The database refuses writes because of its role: a standby that follows a primary,
    or a primary fenced off by the promotion of its standby."""
