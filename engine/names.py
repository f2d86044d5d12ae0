"""Names and the paths built from them: the one module that turns a name into a path.

Rules (each matched against the whole string, so a trailing newline never
slips through as ``$`` would let it):

* database: ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}``, never ``.`` or ``..``;
  it is the database's directory name;
* table, tag and field: ``[A-Za-z_][A-Za-z0-9_]{0,63}``;
* archive: ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``, never ``.`` or ``..``.

Paths inside a database directory (segments) and inside an archive (its
Parquet files) are built here from validated names and integers only, so no
value read from a manifest can point outside the directory it belongs to.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from engine.errors import InvalidArgument

DATABASE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
ARCHIVE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
ARCHIVE_FILE_RE = re.compile(r"[0-9]{6,12}\.parquet")
TABLES_DIR = "tables"

_RULES = {
    "database": (DATABASE_RE, "names match [A-Za-z0-9_][A-Za-z0-9_.-]{0,63}"),
    "archive": (ARCHIVE_RE, "use letters, digits, '_', '.', '-' (up to 128)"),
}
NAME_RULE = "names match [A-Za-z_][A-Za-z0-9_]{0,63}"
_DEFAULT_RULE = (NAME_RE, NAME_RULE)


def is_valid(kind: str, name: object) -> bool:
    pattern, _ = _RULES.get(kind, _DEFAULT_RULE)
    return isinstance(name, str) and bool(pattern.fullmatch(name)) and name not in (".", "..")


def validate_name(kind: str, name: str) -> str:
    """Return ``name`` if it is a legal ``kind`` name (database, archive, table, tag,
    field, column), else raise :class:`InvalidArgument`."""
    if not is_valid(kind, name):
        _, rule = _RULES.get(kind, _DEFAULT_RULE)
        raise InvalidArgument(f"invalid {kind} name {name!r}", hint=rule)
    return name


def _check_int(what: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{what} {value!r} is not an integer")
    return value


def table_dir(table: str) -> str:
    """A table's directory, relative to the database directory."""
    return f"{TABLES_DIR}/{validate_name('table', table)}"


def segment_path(table: str, partition: int, file_id: int) -> str:
    """``tables/<table>/p<partition start>/<file id>.parquet``, relative to the database."""
    partition = _check_int("partition", partition)
    file_id = _check_int("segment id", file_id)
    if file_id < 0:
        raise InvalidArgument(f"segment id {file_id} is negative")
    return f"{table_dir(table)}/p{partition}/{file_id:06d}.parquet"


def archive_file_path(table: str, number: int) -> str:
    """An archive member: ``<table>/<NNNNNN>.parquet``, relative to the archive."""
    return f"{validate_name('table', table)}/{_check_int('file number', number):06d}.parquet"


def check_archive_file_path(path: str, table: str) -> None:
    """Raise ``ValueError`` unless ``path`` is exactly a Parquet member of ``table``."""
    pure = PurePosixPath(path)
    if (
        pure.as_posix() != path
        or pure.is_absolute()
        or len(pure.parts) != 2
        or pure.parts[0] != table
        or not ARCHIVE_FILE_RE.fullmatch(pure.parts[1])
    ):
        raise ValueError(f"path {path!r} is not a Parquet file of table {table}")
