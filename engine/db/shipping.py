"""The seam between a database's writer and its replication.

The database layer says here what it needs of shipping (:class:`Shipping`: start,
wake up after a commit, wait until a store holds an LSN, close) and the replication
layer provides it (``engine.replication.primary.Replication``). The package
(``engine/__init__.py``) connects the two when it is first imported, which every
process does before it opens a database, so no module of this layer imports
replication. A process in which nothing was connected refuses to open a database with
replicas rather than write without shipping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # at run time only names: the package imports this module at start-up
    from engine.errors import BackgroundBug
    from engine.settings import Settings


class Progress(Protocol):
    """One store's position, as status and metrics show it."""

    @property
    def url(self) -> str: ...
    @property
    def shipped_lsn(self) -> int: ...
    @property
    def shipped_commit_ns(self) -> int: ...
    @property
    def reseeds(self) -> int: ...
    @property
    def error(self) -> str | None: ...


class Shipping(Protocol):
    """A primary's shipping to its replica stores, while the database is open."""

    urls: tuple[str, ...]  # the stores it ships to
    fenced: str | None  # why writes are refused: a standby was promoted past us
    bug: BackgroundBug | None  # an unexpected exception in a background round
    errors: dict[str, str]  # store URL -> why its last round failed
    notices: list[str]  # reseeds and the like, for the writer to report

    def start(self, background: bool) -> None: ...
    def close(self, final: bool) -> None: ...
    def notify(self) -> None: ...
    def wait_confirmed(self, lsn: int, timeout: float) -> None: ...
    def take_notices(self) -> list[str]: ...
    def progress(self) -> Sequence[Progress]: ...


class ShippingFactory(Protocol):
    def __call__(
        self,
        db_dir: Path,
        database: str,
        urls: tuple[str, ...],
        identity: Callable[[], tuple[str, int]],
        *,
        settings: Callable[[], Settings],
    ) -> Shipping: ...


_loader: list[Callable[[], ShippingFactory]] = []


def connect(loader: Callable[[], ShippingFactory]) -> None:
    """Say where shipping comes from (called once, by the package)."""
    _loader[:] = [loader]


def factory() -> ShippingFactory:
    from engine.errors import StorageError

    if not _loader:
        raise StorageError(
            "this process cannot ship to replica stores (replication is not connected)",
            hint="open databases through the engine package",
        )
    return _loader[0]()
