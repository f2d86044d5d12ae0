"""Settings changes of an open database, replica stores included: validated, logged as
a DDL record and fsynced, then applied; a change of ``wal_level`` to or from ``off``
(and to ``byrl``) checkpoints first, so no record of one regime is replayed under the
other."""

from __future__ import annotations

from dataclasses import replace

from engine.db import replicas
from engine.db import replicastate as replication_state
from engine.db.checkpointing import Checkpoints
from engine.db.core import Core
from engine.errors import AlreadyExists, InvalidArgument, NotFound, Remedy
from engine.settings import Settings, WalLevel


class Configure:
    def __init__(self, core: Core, checkpoints: Checkpoints) -> None:
        self.core = core
        self.checkpoints = checkpoints

    def set_setting(self, key: str, value: str) -> Settings:
        """Change one setting, logged and fsynced; to or from ``off`` checkpoints first."""
        core = self.core
        core.check_writable()
        new = core.settings.with_value(key, value)
        if new.wal_level is WalLevel.BYRL and not new.replicas:
            raise InvalidArgument(
                "wal_level byrl acknowledges a write once a replica store holds it, and "
                f"database {core.name} has no replica",
                hint="add a replica store first",
            ).advise(Remedy.ADD_REPLICA, core.name)
        if new.wal_level is WalLevel.OFF and new.replicas:
            raise InvalidArgument(
                f"database {core.name} ships its WAL to replicas; wal_level off writes none",
                hint="remove the replicas first, or use sync or flush",
            )
        return self.change(new)

    def change(self, new: Settings) -> Settings:
        """Log and apply ``new``; to or from off and to byrl checkpoint first."""
        core = self.core
        level, old = new.wal_level, core.settings.wal_level
        if (level is WalLevel.OFF) != (old is WalLevel.OFF) or (
            level is WalLevel.BYRL and old is not WalLevel.BYRL
        ):
            self.checkpoints.checkpoint("wal_level change")
        with core.write_lock:
            core.log_ddl({"op": "settings", "settings": new.to_json()})
            core.settings = new
        core.wake.set()
        replicas.restart(core)
        return new

    def add_replica(self, url: str) -> Settings:
        """Ship this database's log to the store ``url`` from now on (logged, fsynced). The
        WAL after the current checkpoint is held until the store has a snapshot. The
        store is made and checked first by ``engine.replication.primary.add_replica``."""
        core = self.core
        core.check_writable()
        if url in core.settings.replicas:
            raise AlreadyExists(f"database {core.name} already ships to {url}")
        if core.settings.wal_level is WalLevel.OFF:
            raise InvalidArgument(
                f"database {core.name} has wal_level off: it has no WAL to ship",
                hint="set wal_level to sync, flush or byrl first",
            )
        pin = replication_state.ShipState(
            url, core.manifest.epoch, shipped_lsn=core.manifest.checkpoint_lsn
        )
        if replication_state.load_ship_state(core.dir, url) is None:
            replication_state.save_ship_state(core.dir, pin)
        return self.change(replace(core.settings, replicas=(*core.settings.replicas, url)))

    def remove_replica(self, url: str) -> Settings:
        core = self.core
        core.check_writable()
        if url not in core.settings.replicas:
            raise NotFound(
                f"database {core.name} does not ship to {url}",
                hint=f"its replicas: {', '.join(core.settings.replicas) or 'none'}",
            )
        remaining = tuple(u for u in core.settings.replicas if u != url)
        new = replace(core.settings, replicas=remaining)
        if new.wal_level is WalLevel.BYRL and not remaining:
            new = replace(new, wal_level=WalLevel.SYNC)  # byrl without a replica is refused
        settings = self.change(new)
        replication_state.forget(core.dir, url)
        return settings
