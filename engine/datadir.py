"""The data directory: one sub-directory per database.

A database is created whole or not at all: it is built under a hidden
temporary name and renamed into place. Dropping renames it to a hidden name
first, so a crash mid-drop never leaves a half database under its real name.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from engine import manifest as manifest_format
from engine import wal
from engine.errors import AlreadyExists, NotFound
from engine.fileio import IO
from engine.lock import WriterLock
from engine.manifest import Manifest
from engine.names import validate_name
from engine.settings import Settings, WalLevel

DATA_DIR_ENV = "TSADMIN_DATA_DIR"
DEFAULT_DATA_DIR = "tsdata"
_HIDDEN_PREFIX = "."


def resolve_data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """``path``, else ``$TSADMIN_DATA_DIR``, else ``./tsdata``."""
    return Path(path or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def database_dir(data_dir: Path, name: str) -> Path:
    return data_dir / validate_name("database", name)


def existing_database_dir(data_dir: Path, name: str) -> Path:
    path = database_dir(data_dir, name)
    finish_interrupted_swaps(data_dir, name)
    if not (path / manifest_format.FILENAME).exists():
        raise NotFound(
            f"database {name} does not exist in {data_dir}",
            hint="list databases with 'tsadmin db list'",
        )
    return path


def create_database(data_dir: Path, name: str, settings: Settings) -> Path:
    """Create an empty database; its settings are logged as the WAL's first record."""
    from engine.errors import InvalidArgument

    target = database_dir(data_dir, name)
    if settings.wal_level is WalLevel.BYRL:
        raise InvalidArgument(
            "wal_level byrl needs replication, which this version does not have yet",
            hint="use sync (the default) or flush",
        )
    if target.exists():
        raise AlreadyExists(f"database {name} already exists in {data_dir}")
    IO.mkdirs(data_dir)
    staging = data_dir / f"{_HIDDEN_PREFIX}{name}.creating.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    IO.mkdirs(staging / wal.WAL_DIR)
    manifest_format.install(staging, Manifest(database=name, settings=settings))
    writer = wal.WalWriter(staging / wal.WAL_DIR / wal.CURRENT, name, 1, create=True)
    change = {"op": "settings", "settings": settings.to_json()}
    writer.append(wal.encode_record(1, 0, wal.RecordType.DDL, wal.encode_ddl(change)))
    writer.fsync()
    writer.close()
    try:
        os.rename(staging, target)  # fails if the name appeared meanwhile: never merged
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise AlreadyExists(f"database {name} already exists in {data_dir}") from exc
    IO.fsync_dir(data_dir)
    return target


def list_databases(data_dir: Path) -> list[str]:
    if not data_dir.is_dir():
        return []
    return sorted(
        entry.name
        for entry in data_dir.iterdir()
        if not entry.name.startswith(_HIDDEN_PREFIX) and (entry / manifest_format.FILENAME).exists()
    )


def drop_database(data_dir: Path, name: str) -> None:
    """Delete a database; refused while a writer holds it."""
    path = existing_database_dir(data_dir, name)
    lock = WriterLock(path, name)
    try:
        doomed = data_dir / f"{_HIDDEN_PREFIX}{name}.dropping.{os.getpid()}"
        os.rename(path, doomed)
        IO.fsync_dir(data_dir)
    finally:
        lock.release()
    shutil.rmtree(doomed)


def swap_in(data_dir: Path, name: str, staging: Path) -> None:
    """Put the database built in ``staging`` in place of ``name`` (which may not exist).

    Refused while a writer holds the old database. A crash between moving the
    old one aside and moving the new one in is undone by
    :func:`finish_interrupted_swaps` at the next command.
    """
    target = database_dir(data_dir, name)
    if not target.exists():
        os.rename(staging, target)
        IO.fsync_dir(data_dir)
        return
    lock = WriterLock(target, name)
    aside = data_dir / f"{_HIDDEN_PREFIX}{name}.replaced.{os.getpid()}"
    try:
        os.rename(target, aside)
        IO.fsync_dir(data_dir)
        IO.crash_point("restore.between_renames")
        os.rename(staging, target)
        IO.fsync_dir(data_dir)
    finally:
        lock.release()
    shutil.rmtree(aside)


def finish_interrupted_swaps(data_dir: Path, name: str) -> None:
    """Undo a replace that died between its two renames; clear dead restores' leftovers."""
    if not data_dir.is_dir():
        return
    target = data_dir / name
    for leftover in sorted(data_dir.glob(f"{_HIDDEN_PREFIX}{name}.*.*")):
        kind, _, pid = leftover.name[len(name) + 2 :].partition(".")
        if (
            kind not in ("replaced", "restoring", "creating")
            or not pid.isdigit()
            or _alive(int(pid))
        ):
            continue
        if kind == "replaced" and not target.exists():
            os.rename(leftover, target)  # the old database comes back as it was
            IO.fsync_dir(data_dir)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
