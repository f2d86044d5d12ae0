"""Archive stores: where backups live, named by a URL.

* a path or ``file:///path``: a directory of the local file system
  (:mod:`engine.stores.local`);
* ``s3://bucket/prefix``: any S3-compatible object store (:mod:`engine.stores.s3`),
  configured the standard AWS way (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
  ``AWS_REGION``, ``AWS_ENDPOINT_URL`` for MinIO, Ceph, R2 and the like, or a profile).

Every store offers the same small interface (:class:`engine.stores.base.Store`), so
a further one (GCS, Azure, SFTP) is one new module and one line in :func:`open_store`.

Layer 4 of the engine: imports only io and the ground (``tests/test_layers.py``).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from engine.errors import InvalidArgument
from engine.stores.base import ObjectInfo, Store

__all__ = ["ObjectInfo", "Store", "is_url", "open_store"]

SCHEMES = ("file", "s3")


def is_url(location: str) -> bool:
    """Whether ``location`` names a store by URL (``scheme://``) rather than by path."""
    return "://" in location


def open_store(location: str) -> Store:
    """The store ``location`` names: a path, ``file:///path`` or ``s3://bucket/prefix``."""
    if not is_url(location):
        from engine.stores.local import LocalStore

        return LocalStore(Path(location))
    parts = urlsplit(location)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidArgument(f"file URL {location!r} names a host; use file:///path")
        from engine.stores.local import LocalStore

        return LocalStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise InvalidArgument(f"S3 URL {location!r} has no bucket", hint="s3://bucket/prefix")
        from engine.stores.s3 import S3Store

        return S3Store(parts.netloc, unquote(parts.path).strip("/"))
    raise InvalidArgument(
        f"unknown store {parts.scheme!r} in {location!r}",
        hint="use a path, file:///path or s3://bucket/prefix",
    )
