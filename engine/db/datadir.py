"""The data directory: one sub-directory per database.

A database is created whole or not at all: it is built under a hidden
temporary name and renamed into place. Dropping renames it to a hidden name
first, so a crash mid-drop never leaves a half database under its real name.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import AlreadyExists, InvalidArgument, NotFound, Remedy, StorageError
from engine.io.fileio import IO
from engine.io.lock import WriterLock, process_alive
from engine.log import wal
from engine.names import validate_name
from engine.settings import Settings, WalLevel
from engine.storage import manifest as manifest_format
from engine.storage.manifest import Manifest

_HIDDEN_PREFIX = "."


def require_data_dir(data_dir: Path) -> Path:
    """``data_dir`` if it is a directory: a mistyped path must not look like an empty one."""
    if not data_dir.is_dir():
        raise NotFound(
            f"data directory {data_dir} does not exist",
            hint="check the path; creating a database creates its data directory",
        )
    return data_dir


def ensure_data_dir(data_dir: Path) -> Path:
    """``data_dir``, created (owner-only, durably) if missing: for the commands that
    create a database (a second site starts from nothing). A path that exists and is not
    a directory is refused."""
    if data_dir.exists() and not data_dir.is_dir():
        raise InvalidArgument(f"data directory {data_dir} is a file, not a directory")
    IO.mkdirs(data_dir)
    return data_dir


def database_dir(data_dir: Path, name: str) -> Path:
    return data_dir / validate_name("database", name)


def existing_database_dir(data_dir: Path, name: str) -> Path:
    """The directory of database ``name``, for reading: nothing is changed on disk. While
    a replace that died between its renames has left the old database aside (the next
    writer puts it back), readers read it there."""
    path = database_dir(require_data_dir(data_dir), name)
    if not (path / manifest_format.FILENAME).exists():
        aside = _dead_leftovers(data_dir, name, kinds=("replaced",))
        if aside and (aside[0][0] / manifest_format.FILENAME).exists():
            return aside[0][0]
        raise NotFound(
            f"database {name} does not exist in {data_dir}",
            hint="list the databases of the data directory",
        ).advise(Remedy.LIST_DATABASES)
    return path


def writable_database_dir(data_dir: Path, name: str) -> Path:
    """The directory of database ``name``, for a writer: first undoes what interrupted
    restores, creations and drops left behind (of any database, their processes dead)."""
    clear_leftovers(data_dir)
    return existing_database_dir(data_dir, name)


def create_database(data_dir: Path, name: str, settings: Settings) -> Path:
    """Create an empty database; its settings are logged as the WAL's first record."""
    target = database_dir(data_dir, name)
    if settings.wal_level is WalLevel.BYRL:
        raise InvalidArgument(
            "wal_level byrl needs replication, which this version does not have yet",
            hint="use sync (the default) or flush",
        )
    if target.exists():
        raise AlreadyExists(f"database {name} already exists in {data_dir}")
    ensure_data_dir(data_dir)
    clear_leftovers(data_dir)
    staging = data_dir / f"{_HIDDEN_PREFIX}{name}.creating.{os.getpid()}"
    IO.remove_tree(staging)
    IO.mkdirs(staging / wal.WAL_DIR)
    uuid, epoch = manifest_format.new_identity()
    manifest = Manifest(database=name, settings=settings, uuid=uuid, epoch=epoch)
    manifest_format.install(staging, manifest)
    writer = wal.WalWriter(
        staging / wal.WAL_DIR / wal.CURRENT, name, 1, create=True, uuid=uuid, epoch=epoch
    )
    change = {"op": "settings", "settings": settings.to_json()}
    writer.append(wal.encode_record(1, 0, wal.RecordType.DDL, wal.encode_ddl(change)))
    writer.fsync()
    writer.close()
    try:
        IO.rename_new(staging, target)  # fails if the name appeared meanwhile: never merged
    except StorageError as exc:
        IO.remove_tree(staging)
        raise AlreadyExists(f"database {name} already exists in {data_dir}") from exc
    return target


def list_databases(data_dir: Path) -> list[str]:
    require_data_dir(data_dir)
    names = {
        entry.name
        for entry in data_dir.iterdir()
        if not entry.name.startswith(_HIDDEN_PREFIX) and (entry / manifest_format.FILENAME).exists()
    }
    names |= {database for _, database, _ in _dead_leftovers(data_dir, kinds=("replaced",))}
    return sorted(names)


def drop_database(data_dir: Path, name: str) -> None:
    """Delete a database; refused while a writer holds it."""
    path = writable_database_dir(data_dir, name)
    lock = WriterLock(path, name)
    try:
        doomed = data_dir / f"{_HIDDEN_PREFIX}{name}.dropping.{os.getpid()}"
        IO.rename(path, doomed)
    finally:
        lock.release()
    IO.crash_point("drop.after_rename")
    IO.remove_tree(doomed)  # a kill here leaves it to the next writer's clear_leftovers


def swap_in(data_dir: Path, name: str, staging: Path) -> None:
    """Put the database built in ``staging`` in place of ``name`` (which may not exist).

    Refused while a writer holds the old database. A crash between moving the
    old one aside and moving the new one in is undone by
    :func:`clear_leftovers` at the next write command.
    """
    target = database_dir(data_dir, name)
    if not target.exists():
        IO.rename(staging, target)
        return
    lock = WriterLock(target, name)
    aside = data_dir / f"{_HIDDEN_PREFIX}{name}.replaced.{os.getpid()}"
    try:
        IO.rename(target, aside)
        IO.crash_point("restore.between_renames")
        IO.rename(staging, target)
    finally:
        lock.release()
    IO.remove_tree(aside)


_LEFTOVER_KINDS = ("replaced", "restoring", "creating", "dropping")


def _dead_leftovers(
    data_dir: Path, name: str = "*", kinds: tuple[str, ...] = _LEFTOVER_KINDS
) -> list[tuple[Path, str, str]]:
    """``(path, database, kind)`` of hidden ``.NAME.KIND.PID`` entries whose process died."""
    if not data_dir.is_dir():
        return []
    found = []
    for leftover in sorted(data_dir.glob(f"{_HIDDEN_PREFIX}{name}.*.*")):
        stem, _, pid = leftover.name[1:].rpartition(".")
        database, _, kind = stem.rpartition(".")
        if kind in kinds and pid.isdigit() and not process_alive(int(pid)) and database:
            found.append((leftover, database, kind))
    return found


def clear_leftovers(data_dir: Path) -> None:
    """Undo a replace that died between its two renames (the old database comes back as
    it was); delete what dead creations, restores and drops left behind."""
    for leftover, database, kind in _dead_leftovers(data_dir):
        target = data_dir / database
        if kind == "replaced" and not target.exists():
            try:
                IO.rename(leftover, target)
            except StorageError:
                continue  # another writer put it back first
        else:
            IO.remove_tree(leftover)
