"""Archives in a store: the commit protocol, listing, reading, and the garbage of
killed uploads. Backup, verify, list, prune and restore reach a store only here.

An archive ``NAME`` is the objects ``NAME/<table dir>/NNNNNN.parquet`` and
``NAME/manifest.json``. It is published by claiming the name (``NAME/.claim``,
written only if absent, deleted at the end), uploading every Parquet file, then
writing the manifest only if no object has its key: the manifest is the commit
point. A reader lists manifests and ignores every other object, so an upload that
was killed, or lost the race for its name, never shows as an archive; its files
are *unreferenced* (under a name with no manifest) and ``backup prune`` deletes
them once they are older than a grace period (default a day, so an upload still
running in another process is never touched).

Reading an archive from a remote store downloads it, with its base chain, into a
temporary directory (streamed, a few files at a time) and hands that to the
archive checks and the restore, which then verify every byte as they do for a
local archive; a local store's archive is read where it is.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from engine.archive import format as archive
from engine.errors import AlreadyExists, InvalidArgument, NotFound
from engine.io import scratch
from engine.io.fileio import IO
from engine.stores import Store, is_url, open_store

TRANSFERS = 4  # files moved at a time
CLAIM = ".claim"  # NAME/.claim: this name is being written
GRACE_SECONDS = 24 * 3600
Progress = Callable[[int, int], None]


def split_location(location: str) -> tuple[Store, str]:
    """``s3://bucket/prefix/NAME`` or ``/dir/NAME`` -> (the store, ``NAME``)."""
    trimmed = location.rstrip("/")
    if is_url(trimmed):
        head, _, name = trimmed.rpartition("/")
        if head.endswith(":/") or not name:
            raise InvalidArgument(f"{location!r} names a store, not an archive in it")
        return open_store(head), archive.check_archive_name(name)
    path = Path(trimmed)
    return open_store(str(path.parent)), archive.check_archive_name(path.name)


def manifest_key(name: str) -> str:
    return f"{name}/{archive.MANIFEST}"


def archive_names(store: Store) -> list[str]:
    """The names of the store's archives: top-level prefixes holding a manifest."""
    names = []
    for info in store.list():
        parts = info.key.split("/")
        if len(parts) == 2 and parts[1] == archive.MANIFEST and not parts[0].startswith("."):
            names.append(parts[0])
    return sorted(names)


def read_manifest(store: Store, name: str) -> tuple[archive.ArchiveManifest, bytes]:
    data = store.read(manifest_key(name))
    where = f"{store.describe()}/{name}/{archive.MANIFEST}"
    return archive.decode(data, where), data


def require_store(store: Store) -> None:
    """A local store that does not exist is a typo, not an empty store."""
    root = store.local_dir
    if root is not None and not root.is_dir():
        raise NotFound(f"backup directory {root} does not exist")


# -- reading -------------------------------------------------------------------------------


@contextlib.contextmanager
def fetched(store: Store, name: str, *, files: bool = True) -> Iterator[Path]:
    """The archive ``name`` (and its bases) as a local directory, for the checks and the
    restore; a remote store's archives are downloaded into a temporary directory that is
    removed afterwards (only their manifests, without ``files``)."""
    if store.local_dir is not None:
        yield store.local_dir / name
        return
    with scratch.scratch("fetch") as root:
        pending, seen = [name], set()
        while pending:
            current = pending.pop()
            if current in seen:
                break  # a loop: chain() reports it
            seen.add(current)
            try:
                manifest, data = read_manifest(store, current)
            except NotFound:
                break  # a missing base: chain() reports it
            keys = [f"{current}/{f.path}" for t in manifest.tables.values() for f in t.files]
            _download_all(store, keys if files else [], root)
            (root / current).mkdir(parents=True, exist_ok=True)
            (root / current / archive.MANIFEST).write_bytes(data)
            if manifest.base is not None:
                pending.append(manifest.base["name"])
        if not (root / name / archive.MANIFEST).exists():
            raise NotFound(f"no archive {name} in {store.describe()}")
        yield root / name


def _download_all(store: Store, keys: list[str], root: Path) -> None:
    def one(key: str) -> None:
        store.download(key, root.joinpath(*PurePosixPath(key).parts))

    with ThreadPoolExecutor(TRANSFERS) as pool:
        for _ in pool.map(one, keys):
            pass


# -- writing -------------------------------------------------------------------------------


def staging_directory(store: Store, name: str, pid: int) -> Path:
    """Where an archive is built before it is published: beside its final place in a
    local store (so publishing moves files, never copies them), else a scratch
    directory of this machine (:mod:`engine.io.scratch`)."""
    if store.local_dir is not None:
        return store.local_dir / f".{name}.tmp-{pid}"
    return scratch.make("stage")


def publish(
    store: Store,
    staging: Path,
    name: str,
    *,
    next_name: Callable[[], str] | None,
    progress: Progress | None = None,
) -> str:
    """Upload the verified archive in ``staging``: first claim a name (``NAME/.claim``,
    written only if absent, so two backups never write into one name; a taken name
    gives way to ``next_name()``, or is refused when the operator chose it), then the
    Parquet files, then the manifest, only if absent: the commit. Returns the name."""
    name = _claim(store, name, next_name)
    files = sorted(
        p.relative_to(staging).as_posix()
        for p in staging.rglob("*")
        if p.is_file() and p.name != archive.MANIFEST
    )
    total = sum((staging / f).stat().st_size for f in files)
    _upload_all(store, staging, name, files, total, progress)
    if not store.write_if_absent(manifest_key(name), (staging / archive.MANIFEST).read_bytes()):
        raise AlreadyExists(f"archive {name} appeared in {store.describe()} while it was written")
    store.delete(f"{name}/{CLAIM}")
    return name


def _claim(store: Store, name: str, next_name: Callable[[], str] | None) -> str:
    """Take a free name. The manifest is checked *after* the claim is won: a writer
    deletes its claim only once its manifest is written, so a claim won after that
    deletion must still see the manifest (checked before, a backup finishing in
    between would go unseen and the two would race for one manifest)."""
    claim = f"{os.getpid()}@{socket.gethostname()} {time.time():.0f}\n".encode()
    for _ in range(100):
        if store.write_if_absent(f"{name}/{CLAIM}", claim):
            if not store.exists(manifest_key(name)):
                return name
            store.delete(f"{name}/{CLAIM}")
        name = _another(store, name, next_name)
    raise AlreadyExists(f"no free archive name in {store.describe()}")


def _another(store: Store, name: str, next_name: Callable[[], str] | None) -> str:
    if next_name is None:
        raise AlreadyExists(
            f"archive {name} already exists in {store.describe()}, or is being written "
            "(or was left by a killed backup: prune removes that after its grace period)",
            hint="choose another name",
        )
    return next_name()


def _upload_all(
    store: Store, staging: Path, name: str, files: list[str], total: int, progress: Progress | None
) -> None:
    done = [0]

    def one(rel: str) -> None:
        source = staging / rel
        size = source.stat().st_size
        store.upload(f"{name}/{rel}", source, consume=True)
        IO.crash_point("archive.uploaded")
        done[0] += size
        if progress:
            progress(done[0], total)

    with ThreadPoolExecutor(TRANSFERS) as pool:
        for _ in pool.map(one, files):
            pass


def remove_staging(staging: Path) -> None:
    IO.remove_tree(staging)


# -- deleting ------------------------------------------------------------------------------


def delete_archive(store: Store, name: str) -> None:
    """The manifest first (the archive is gone at once), then its files."""
    store.delete(manifest_key(name))
    delete_unreferenced(store, name)


def unreferenced(store: Store, grace_seconds: float) -> list[str]:
    """Names whose objects no manifest commits (a killed or lost upload), all of whose
    objects are older than ``grace_seconds``."""
    newest: dict[str, float] = {}
    committed = set()
    for info in store.list():
        top, sep, rest = info.key.partition("/")
        if not sep or top.startswith("."):
            continue
        if rest == archive.MANIFEST:
            committed.add(top)
        newest[top] = max(newest.get(top, 0.0), info.modified)
    now = time.time()
    return sorted(
        top
        for top, modified in newest.items()
        if top not in committed and now - modified >= grace_seconds
    )


def delete_unreferenced(store: Store, name: str) -> None:
    """Every object under ``name/`` (and, in a local store, its emptied directories)."""
    store.delete_tree(f"{name}/")


def describe(store: Store, name: str) -> str:
    return f"{store.describe().rstrip('/')}/{name}"
