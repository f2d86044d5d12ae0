"""tsadmin's embedded time-series engine: a Python API, no printing, no CLI code."""

# The crash-test harness (engine.crashsim, engine.workload) is not imported here: it is
# not part of the API, and the workload child runs as `python -m engine.workload`.
from engine import dbverify, walcheck, walrepair
from engine.checkpoint import CheckpointReport, CompactionReport
from engine.database import Batch, CommitResult, Database
from engine.datadir import (
    create_database,
    database_dir,
    drop_database,
    existing_database_dir,
    list_databases,
    resolve_data_dir,
    writable_database_dir,
)
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
from engine.recovery import RecoveryReport
from engine.settings import Settings, WalLevel

__version__ = "0.1.0"

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
