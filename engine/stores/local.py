"""The local file-system store: a directory; keys are relative paths under it.

Every change goes through the fault-injecting I/O layer (:mod:`engine.io.fileio`): an
object is written under a temporary name beside its final one (``.<name>.tmp-<pid>``),
fsynced, then renamed over it (or, for :meth:`LocalStore.write_if_absent`, hard-linked
to a name that must not exist) and the directory fsynced. Listing skips those
temporary names and anything that is not a regular file. The store's directory is
made only by :meth:`LocalStore.create` (when the store is first configured): a write
to a store whose directory is gone fails as the store being unavailable.
"""

from __future__ import annotations

import builtins
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from engine.errors import InvalidArgument, NotFound, StoreUnavailable
from engine.io.fileio import IO
from engine.stores.base import ObjectInfo, Store

CHUNK = 8 << 20


class LocalStore(Store):
    def __init__(self, root: Path, top: Path | None = None) -> None:
        self.root = root
        self.top = top or root  # the configured root; ``root`` of a child is inside it

    def describe(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        # plain string checks: a follower resolves thousands of keys (pathlib's parse
        # was a tenth of its catch-up)
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") or "\0" in p for p in parts):
            raise InvalidArgument(f"store key {key!r} is not a plain relative path")
        return self.root / key

    def child(self, prefix: str) -> LocalStore:
        return LocalStore(self._path(prefix.strip("/")), self.top)

    @property
    def local_dir(self) -> Path:
        return self.root

    def delete_tree(self, prefix: str) -> None:
        super().delete_tree(prefix)
        IO.remove_tree(self._path(prefix.strip("/")))  # and the emptied directories

    def create(self) -> None:
        IO.mkdirs(self.top)

    def require_root(self) -> None:
        if not self.top.is_dir():
            raise StoreUnavailable(
                f"store {self.top} does not exist: an unmounted volume or a deleted directory?",
                hint="mount or restore it (a store's directory is made only when the store "
                "is first configured, never by a later write)",
            )

    def list(self, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        # walk only the directory the prefix is in: a replica's log is listed often
        folder = prefix.rpartition("/")[0]
        top = self._path(folder) if folder else self.root
        if not top.is_dir():
            return
        found: list[ObjectInfo] = []
        self._walk(str(top), f"{folder}/" if folder else "", prefix, start_after, found)
        yield from sorted(found, key=lambda info: info.key)

    def _walk(
        self,
        directory: str,
        base: str,
        prefix: str,
        start_after: str,
        found: builtins.list[ObjectInfo],
    ) -> None:
        # Another process may delete an object or its directory while this lists: what
        # is gone by the time it is looked at is not listed (an object store's listing
        # is no more of a snapshot than this).
        try:
            entries = os.scandir(directory)
        except FileNotFoundError:
            return
        with entries:
            for entry in entries:
                key = base + entry.name
                if entry.is_dir(follow_symlinks=False):
                    if prefix.startswith(key + "/") or key.startswith(prefix.rstrip("/")):
                        self._walk(entry.path, key + "/", prefix, start_after, found)
                    continue
                if entry.name.startswith(".") and ".tmp-" in entry.name:
                    continue  # an object being written (or left by a killed writer)
                if key <= start_after or not key.startswith(prefix):
                    continue
                if entry.is_file(follow_symlinks=False):
                    try:
                        stat = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    found.append(ObjectInfo(key, stat.st_size, stat.st_mtime))

    def read(self, key: str) -> bytes:
        path = self._path(key)
        try:  # one open, no stat first: a follower reads many small objects
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"no {key} in {self.root}") from None
        except OSError as exc:
            raise IO.translate(exc, path) from exc
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise NotFound(f"no {key} in {self.root}")
            chunks = []
            while chunk := IO.guard(lambda: os.read(fd, CHUNK), path):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        path = self._path(key)
        with IO.guard(lambda: path.open("rb"), path) as handle:
            handle.seek(start)
            return handle.read(length)

    def download(self, key: str, target: Path) -> None:
        IO.copy_file(self._path(key), target, "store.download")

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        self.require_root()
        IO.mkdirs(path.parent)
        IO.write_file_atomic(path, data, "store.write")

    def upload(self, key: str, source: Path, *, consume: bool = False) -> None:
        path = self._path(key)
        self.require_root()
        if consume and source.stat().st_dev == _device_of(path.parent):
            IO.mkdirs(path.parent)
            IO.rename(source, path)  # durable: the directory is fsynced
            return
        temporary = self._temporary(path)
        IO.copy_file(source, temporary, "store.upload")
        try:
            IO.rename(temporary, path)
        except BaseException:
            IO.remove(temporary, missing_ok=True)
            raise

    def write_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        self.require_root()
        IO.mkdirs(path.parent)
        temporary = self._temporary(path)
        out = IO.open_append(temporary, "store.write", create=True)
        try:
            out.write(data)
            out.fsync()
            out.close()
            return IO.link_new(temporary, path)  # durable: the directory is fsynced
        finally:
            out.close()
            IO.remove(temporary, missing_ok=True)

    def exists(self, key: str) -> bool:
        path = self._path(key)
        return path.is_file() and not path.is_symlink()

    def delete(self, key: str) -> None:
        path = self._path(key)
        IO.remove(path, missing_ok=True)

    @staticmethod
    def _temporary(path: Path) -> Path:
        return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _device_of(directory: Path) -> int:
    """The device of ``directory``, or of its nearest existing parent."""
    while not directory.exists():
        directory = directory.parent
    return directory.stat().st_dev
