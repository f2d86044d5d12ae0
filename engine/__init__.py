"""tsadmin's embedded time-series engine: a Python API, no printing, no CLI code."""

# The crash-test harness (engine.harness) is not imported here: it is not part of the
# API, and the workload child runs as `python -m engine.harness.workload`.
# Names are imported when first used (PEP 562): a command that needs a few modules
# does not pay for all of them at start-up.
from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.db import shipping
from engine.version import __version__


def _shipping() -> shipping.ShippingFactory:
    from engine.replication.primary import Replication

    def start(
        db_dir: Path,
        database: str,
        urls: tuple[str, ...],
        identity: Callable[[], tuple[str, int]],
        *,
        settings: Callable[[], Settings],
    ) -> shipping.Shipping:
        return Replication(db_dir, database, urls, identity, settings=settings)

    return start


# The database layer ships through this seam (engine/db/shipping.py); the replication layer
# is imported only when a database with replicas is opened for writing.
shipping.connect(_shipping)

_HOMES: dict[str, str] = {
    "dbverify": "engine.db.dbverify",  # modules: a value of the form engine.X.NAME
    "walcheck": "engine.db.walcheck",
    "walrepair": "engine.db.walrepair",
    "CheckpointReport": "engine.db.checkpoint",
    "CompactionReport": "engine.db.checkpoint",
    "Batch": "engine.db.database",
    "CommitResult": "engine.db.database",
    "Database": "engine.db.database",
    "create_database": "engine.db.datadir",
    "database_dir": "engine.db.datadir",
    "drop_database": "engine.db.datadir",
    "existing_database_dir": "engine.db.datadir",
    "list_databases": "engine.db.datadir",
    "resolve_data_dir": "engine.names",
    "writable_database_dir": "engine.db.datadir",
    "AlreadyExists": "engine.errors",
    "BadInput": "engine.errors",
    "Corruption": "engine.errors",
    "DiskFull": "engine.errors",
    "EngineError": "engine.errors",
    "InvalidArgument": "engine.errors",
    "Locked": "engine.errors",
    "NotFound": "engine.errors",
    "SchemaConflict": "engine.errors",
    "StorageError": "engine.errors",
    "VerificationFailed": "engine.errors",
    "RecoveryReport": "engine.db.recovery",
    "Settings": "engine.settings",
    "WalLevel": "engine.settings",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    home = _HOMES[name]
    value = (
        importlib.import_module(home)
        if home.rpartition(".")[2] == name
        else getattr(importlib.import_module(home), name)
    )
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from engine.db import dbverify, walcheck, walrepair
    from engine.db.checkpoint import CheckpointReport, CompactionReport
    from engine.db.database import Batch, CommitResult, Database
    from engine.db.datadir import (
        create_database,
        database_dir,
        drop_database,
        existing_database_dir,
        list_databases,
        writable_database_dir,
    )
    from engine.db.recovery import RecoveryReport
    from engine.errors import (
        AlreadyExists,
        BadInput,
        Corruption,
        DiskFull,
        EngineError,
        InvalidArgument,
        Locked,
        NotFound,
        SchemaConflict,
        StorageError,
        VerificationFailed,
    )
    from engine.names import resolve_data_dir
    from engine.settings import Settings, WalLevel

__all__ = [
    "AlreadyExists",
    "BadInput",
    "Batch",
    "CheckpointReport",
    "CommitResult",
    "CompactionReport",
    "Corruption",
    "Database",
    "DiskFull",
    "EngineError",
    "InvalidArgument",
    "Locked",
    "NotFound",
    "RecoveryReport",
    "SchemaConflict",
    "Settings",
    "StorageError",
    "VerificationFailed",
    "WalLevel",
    "__version__",
    "create_database",
    "database_dir",
    "dbverify",
    "drop_database",
    "existing_database_dir",
    "list_databases",
    "resolve_data_dir",
    "walcheck",
    "walrepair",
    "writable_database_dir",
]
