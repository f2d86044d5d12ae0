"""Names and the paths built from them: the one module that turns a name into a path.

Rules (each matched against the whole string, so a trailing newline never
slips through as ``$`` would let it):

* database: ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}``, never ``.`` or ``..``;
  it is the database's directory name;
* table, tag and field: anything line protocol can carry, as InfluxDB takes it:
  a non-empty string of at most 65,535 UTF-8 bytes without a line feed (dots,
  dashes, spaces, commas, ``=``, leading digits and non-ASCII letters included),
  compared byte for byte (no case folding, no Unicode normalisation);
* archive: ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``, never ``.`` or ``..``.

A tag or field key ``time`` is refused per line, as InfluxDB 1.x refuses it; a
key ``ts`` (the name of every table's timestamp column) is stored in the column
``time`` (:func:`column_for_key`), which therefore never clashes with anything.

A table name never becomes a path as it is: :func:`table_dir_name` escapes it
into a directory name of lowercase ASCII letters, digits, ``_``, ``.``, ``-``
and ``~XX`` escapes (one per UTF-8 byte of anything else, upper-case letters
included), so two names that differ in case or in Unicode normalisation get
two directories also on a case-insensitive or normalising file system
(macOS, Windows). The escaping is reversible (:func:`table_of_dir_name`) for
names whose escaped form fits in :data:`DIR_NAME_MAX` characters; a longer one
keeps its escaped start and ends in ``~~`` and 32 hex digits of its SHA-256.
Nothing needs to reverse a directory name: the manifest lists every segment
by path and the archive manifest every file.

Paths inside a database directory (segments) and inside an archive (its
Parquet files) are built here from validated names and integers only, so no
value read from a manifest can point outside the directory it belongs to.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path, PurePosixPath
from typing import Literal

from engine.errors import InvalidArgument

DATABASE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
LEGACY_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")  # the rule before 0.3
ARCHIVE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
ARCHIVE_FILE_RE = re.compile(r"[0-9]{6,12}\.parquet")
TABLES_DIR = "tables"

_RULES = {
    "database": (DATABASE_RE, "names match [A-Za-z0-9_][A-Za-z0-9_.-]{0,63}"),
    "archive": (ARCHIVE_RE, "use letters, digits, '_', '.', '-' (up to 128)"),
}
NAME_MAX_BYTES = 65535
NAME_RULE = "a name is 1 to 65,535 bytes of UTF-8 without a line feed"
DIR_NAME_MAX = 120
_DIR_KEEP = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_.-")
_ESCAPED = re.compile(r"~([0-9a-f]{2})")


def is_valid(kind: str, name: object) -> bool:
    if not isinstance(name, str):
        return False
    if kind in _RULES:
        return bool(_RULES[kind][0].fullmatch(name)) and name not in (".", "..")
    return _data_name_problem(name) is None


NameKind = Literal["database", "archive", "table", "tag", "field", "column"]


def validate_name(kind: NameKind, name: str) -> str:
    """Return ``name`` if it is a legal ``kind`` name (database, archive, table, tag,
    field, column), else raise :class:`InvalidArgument`."""
    if kind in _RULES:
        if not is_valid(kind, name):
            raise InvalidArgument(f"invalid {kind} name {name!r}", hint=_RULES[kind][1])
        return name
    problem = _data_name_problem(name) if isinstance(name, str) else "not a string"
    if problem is not None:
        shown = name if len(name) <= 80 else f"{name[:60]}…"
        raise InvalidArgument(f"invalid {kind} name {shown!r}: {problem}", hint=NAME_RULE)
    return name


def _data_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a table, tag or field name (None: it can)."""
    if not name:
        return "it is empty"
    if "\n" in name:
        return "it holds a line feed"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid UTF-8"
    if size > NAME_MAX_BYTES:
        return f"it is {size:,} bytes long"
    return None


TIME_KEY = "time"  # InfluxDB 1.x refuses it as a tag or field key, and so do we
TS_KEY = "ts"  # our timestamp column's name: a user's key "ts" is kept in column "time"


def column_for_key(key: str) -> str:
    """The column that holds tag or field ``key``: the key itself, but a key ``ts`` (the
    name of our timestamp column) lives in the column ``time``, a name no key can take."""
    return TIME_KEY if key == TS_KEY else key


def key_of_column(column: str) -> str:
    """The tag or field key a column holds (the inverse of :func:`column_for_key`)."""
    return TS_KEY if column == TIME_KEY else column


def table_dir_name(table: str) -> str:
    """The directory name of ``table``: see the module docstring."""
    raw = validate_name("table", table).encode("utf-8")
    escaped = "".join(
        chr(byte) if byte in _DIR_KEEP and not (i == 0 and byte == 0x2E) else f"~{byte:02x}"
        for i, byte in enumerate(raw)
    )
    if len(escaped) <= DIR_NAME_MAX:
        return escaped
    head = escaped[:80]
    head = head[: head.rfind("~")] if "~" in head[-2:] else head  # never half an escape
    return f"{head}~~{hashlib.sha256(raw).hexdigest()[:32]}"


def table_of_dir_name(directory: str) -> str | None:
    """The table whose directory is ``directory`` (None: a digest-named or foreign one)."""
    if "~~" in directory:
        return None
    try:
        raw = _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), directory).encode("latin-1")
        table = raw.decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None
    return table if is_valid("table", table) and table_dir_name(table) == directory else None


def _check_int(what: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{what} {value!r} is not an integer")
    return value


def table_dir(table: str) -> str:
    """A table's directory, relative to the database directory."""
    return f"{TABLES_DIR}/{table_dir_name(table)}"


def segment_path(table: str, partition: int, file_id: int) -> str:
    """``tables/<table dir>/p<partition start>/<file id>.parquet``, relative to the database."""
    partition = _check_int("partition", partition)
    file_id = _check_int("segment id", file_id)
    if file_id < 0:
        raise InvalidArgument(f"segment id {file_id} is negative")
    return f"{table_dir(table)}/p{partition}/{file_id:06d}.parquet"


def archive_file_path(table: str, number: int) -> str:
    """An archive member: ``<table directory>/<NNNNNN>.parquet``, relative to the archive."""
    return f"{table_dir_name(table)}/{_check_int('file number', number):06d}.parquet"


def check_archive_file_path(path: str, table: str) -> None:
    """Raise ``ValueError`` unless ``path`` is exactly a Parquet member of ``table``:
    under its directory name, or (archives before 0.3) under the name itself when that
    is a name of the old rule."""
    pure = PurePosixPath(path)
    directories = {table_dir_name(table)}
    if LEGACY_NAME_RE.fullmatch(table):
        directories.add(table)
    if (
        pure.as_posix() != path
        or pure.is_absolute()
        or len(pure.parts) != 2
        or pure.parts[0] not in directories
        or not ARCHIVE_FILE_RE.fullmatch(pure.parts[1])
    ):
        raise ValueError(f"path {path!r} is not a Parquet file of table {table}")


# -- the data directory ---------------------------------------------------------------

DATA_DIR_ENV = "TSADMIN_DATA_DIR"
DEFAULT_DATA_DIR = "tsdata"


def resolve_data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """``path``, else ``$TSADMIN_DATA_DIR``, else ``./tsdata`` (here, not with the
    database layer, so that a command line finds it without loading the engine)."""
    return Path(path or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)
