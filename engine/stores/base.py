"""The store interface: what backup, verify, list, prune, restore and replication may
ask of wherever archives live. Keys are ``/``-separated and relative to the store's
root (its directory, or its bucket and prefix)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: float = 0.0  # when it was last written (seconds since the epoch)


class Store(ABC):
    """One archive store. Writes are atomic: a reader sees a whole object or none."""

    @abstractmethod
    def describe(self) -> str:
        """The store as an operator names it (a path, or ``s3://bucket/prefix``)."""

    @abstractmethod
    def list(self, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order; only keys after
        ``start_after`` when given (a follower polling a growing log lists the new part)."""

    @abstractmethod
    def child(self, prefix: str) -> Store:
        """The store rooted at ``prefix`` inside this one (``snapshots`` of a replica)."""

    @abstractmethod
    def read(self, key: str) -> bytes:
        """The whole object (for small ones: manifests). Raises NotFound."""

    @abstractmethod
    def read_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes of the object from ``start`` (fewer at its end)."""

    @abstractmethod
    def download(self, key: str, target: Path) -> None:
        """Copy the object to the new local file ``target``, streaming, in bounded memory."""

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Create or replace the object, atomically."""

    @abstractmethod
    def upload(self, key: str, source: Path, *, consume: bool = False) -> None:
        """Create or replace the object from a local file, streaming (multipart when
        large), atomically: a killed upload leaves no object behind. ``consume``: the
        file is not needed afterwards (a local store may move it instead of copying)."""

    @abstractmethod
    def write_if_absent(self, key: str, data: bytes) -> bool:
        """Create the object only if no object has the key (the commit of a manifest, a
        promotion); False, changing nothing, when one has."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; no error if it is already gone."""

    def exists(self, key: str) -> bool:
        return any(info.key == key for info in self.list(key))

    @property
    def local_dir(self) -> Path | None:
        """The directory whose files are this store's objects, when they are files of
        this machine; None for a remote store. A caller may then build beside the final
        place (so a rename publishes) and read in place instead of downloading."""
        return None

    def delete_tree(self, prefix: str) -> None:
        """Every object under ``prefix``, and whatever held only them."""
        for info in list(self.list(prefix)):
            self.delete(info.key)

    @abstractmethod
    def create(self) -> None:
        """Make the store's root where it is first configured (a replica added, a first
        backup to it). Writes never make it afterwards: a root that vanished (an
        unmounted volume, a deleted directory) is the store being unavailable, not a
        new, empty store. A bucket is never made: a missing one is always an error."""

    @abstractmethod
    def require_root(self) -> None:
        """Raise StoreUnavailable when the store's root is gone (see :meth:`create`);
        a bucket that is gone fails the request that meets it."""
