"""A primary's shipping to its replica stores, seen from the database: started with the
writer, restarted when the replica list changes, waited on at ``byrl``.

The shipping itself is the replication layer's, reached through the seam in
``shipping.py``; this module only decides when it runs.
"""

from __future__ import annotations

from engine.db import shipping
from engine.db.core import Core
from engine.settings import WalLevel


def start(core: Core, background: bool) -> None:
    core.replication = shipping.factory()(
        core.dir,
        core.name,
        core.settings.replicas,
        lambda: (core.manifest.uuid, core.manifest.epoch),
        settings=lambda: core.settings,
    )
    core.replication.start(background)


def restart(core: Core) -> None:
    """Ship to the stores the settings name now (nothing changes if they are the same)."""
    urls = core.settings.replicas
    current = core.replication
    if current is not None and current.urls == urls:
        return
    if current is not None:
        current.close(final=False)
        core.replication = None
    if urls and core.role == "primary":
        start(core, background=core.background)


def wait(core: Core, lsn: int) -> None:
    """At byrl, block until every replica store holds ``lsn`` (or raise
    :class:`ReplicaTimeout`, :class:`WritesRefused`); at other levels return."""
    if core.settings.wal_level is WalLevel.BYRL and core.replication is not None:
        core.replication.wait_confirmed(lsn, core.settings.replica_timeout_ms / 1000)


def notify(core: Core) -> None:
    """A commit landed: the shipper looks now (a byrl write was shipped before it returned)."""
    if core.replication is not None and core.settings.wal_level is not WalLevel.BYRL:
        core.replication.notify()


def notes(core: Core) -> list[str]:
    """What the shipper reported (reseeds) and the stores it could not reach."""
    rep = core.replication
    if rep is None:
        return []
    errors = [f"replica {url} is behind: {message}" for url, message in rep.errors.items()]
    return [*rep.notices, *errors]
