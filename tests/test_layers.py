"""The engine's layers, held by its import graph (issue 26).

Every module of ``engine/`` is in the subpackage of its layer (the ground and the api
sit at the top of the package); a module may import from its own
layer and the layers below it, never above, and no two modules may import each other
through any path (a cycle), counting imports inside functions and under
``TYPE_CHECKING``. From the bottom up:

=============  ==========================================================================
ground         errors, settings, names, time parsing, the version, CRC-32C, pyarrow
               imported on first use: what every layer uses
io             the one door to the file system (fileio, lock, scratch)
storage        rows, schemas, memtables, segments, manifests, merges, deletes, retention
stores         archive and replica stores (local, S3): only io and the ground below
log            the WAL (format, the read loop, transactions, record kinds, salvage plan,
               group commit)
db             the database: lifecycle and write path over a shared core, checkpoints,
               maintenance, catalog, settings, standby apply, promotion, installs,
               recovery, reads, verify, repair, the data directory, health
ingest         line protocol and CSV in
archive        backup archives: format, backup, restore, the archive store
replication    shipping, following, promotion, point-in-time restore, log segments
server         the write endpoint
api            ``engine.ops`` (what the CLI calls) and the package's facade
harness        crash simulation, the workload child and the demo: programs of their own
=============  ==========================================================================

The database layer ships through a seam it owns (``engine/db/shipping.py``), which the
package connects to the replication layer; what a database needs to know of replication
(is it a standby, is it fenced, which WAL a replica still needs) is read from its own
files (``engine/db/replicastate.py``). A planted upward import, even inside a function,
fails ``test_no_upward_import``."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "engine"

ORDER = [
    "ground", "io", "storage", "stores", "log", "db", "ingest", "archive", "replication",
    "server", "api", "harness",
]  # fmt: skip
# the ground and the api are modules at the top of engine/; every other layer is the
# subpackage of its name
GROUND = {"errors", "settings", "names", "timeparse", "version", "arrowmods", "crc"}
API = {"ops", "results", ""}  # "": the package itself (engine/__init__.py)


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ENGINE.rglob("*.py")):
        parts = path.relative_to(ENGINE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """The engine modules ``path`` imports anywhere in it (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".") if package else []
                up = up[: len(up) - (node.level - 1)]
                base = ".".join([*up, base] if base else up)
            elif base == "engine" or base.startswith("engine."):
                base = base[len("engine.") :] if base != "engine" else ""
            else:
                continue
            # "from engine import wal" depends on engine.log.wal; "from engine.log.wal import X"
            # on engine.log.wal; "from engine import X" (not a module) on the package
            named = [f"{base}.{a.name}" if base else a.name for a in node.names]
            targets = [t for t in named if t in known] or [base]
        for target in targets:
            if target.startswith("engine."):
                target = target[len("engine.") :]
            elif target == "engine":
                target = ""
            if target in known and target != name:
                out.add(target)
    return out


def layer_of(name: str) -> str:
    if name in GROUND:
        return "ground"
    if name in API:
        return "api"
    package = name.split(".")[0]
    if (package in ORDER and "." in name) or (package in ORDER and name == package):
        return package
    raise AssertionError(
        f"engine module {name or 'engine'} has no layer: put it in the subpackage of its layer"
    )


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imported(path, name, known) for name, path in found.items()}


def upward(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    rank = {layer: i for i, layer in enumerate(ORDER)}
    return {
        (a, b)
        for a, targets in edges.items()
        for b in targets
        if rank[layer_of(b)] > rank[layer_of(a)]
        or (layer_of(a) == "stores" and layer_of(b) not in ("stores", "io", "ground"))
    }


def cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[set[str]] = []

    def visit(v: str) -> Iterator[None]:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                yield from visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)
        yield

    for v in sorted(edges):
        if v not in index:
            for _ in visit(v):
                pass
    return out


def test_every_module_has_a_layer() -> None:
    for name in modules():
        layer_of(name)


def test_no_upward_import() -> None:
    found = upward(graph())
    assert found == set(), "upward imports:\n" + "\n".join(
        f"  {a} ({layer_of(a)}) -> {b} ({layer_of(b)})" for a, b in sorted(found)
    )


def test_no_cycle() -> None:
    assert cycles(graph()) == []


# -- the log's semantics stay in the log package (issue 26, item 2) ---------------------

# Reading records out of bytes: only engine/log/reader.py loops over them (the decoder of
# one record, wal.record_at, is called from nowhere else outside the log package).
_RAW_READS = {"record_at", "find_valid_after", "classify"}


def _outside_log() -> Iterator[tuple[str, ast.AST]]:
    for name, path in modules().items():
        if name.startswith("log."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            yield name, node


def _names_record_type(node: ast.AST) -> bool:
    return any(
        isinstance(part, ast.Attribute | ast.Name)
        and (getattr(part, "attr", None) or getattr(part, "id", None)) == "RecordType"
        for part in ast.walk(node)
    )


def test_no_record_type_comparison_outside_the_log() -> None:
    """What a record type means (is it a commit, does it end a transaction) is asked of
    engine/log (walkinds, txn), never decided by comparing types elsewhere."""
    found = [
        f"{name}: line {node.lineno}"
        for name, node in _outside_log()
        if isinstance(node, ast.Compare)
        and any(_names_record_type(side) for side in [node.left, *node.comparators])
    ]
    assert found == [], "RecordType compared outside engine/log:\n  " + "\n  ".join(found)


def test_one_reader_loop() -> None:
    found = [
        f"{name}: line {node.lineno} calls {node.func.attr}"
        for name, node in _outside_log()
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in _RAW_READS
    ]
    assert found == [], "WAL bytes read outside engine/log/reader.py:\n  " + "\n  ".join(found)


# -- no class reaches into another's private members (issue 26, item 4) ------------------

# (module, expression): a classmethod building its own instance
_OWN_INSTANCE = {("db.database", "db._start_writing")}


def _imported_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def test_no_private_member_of_another_object() -> None:
    found = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        modules_here = _imported_names(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
                continue
            owner, attr = node.value.id, node.attr
            if not attr.startswith("_") or attr.startswith("__") or owner in ("self", "cls"):
                continue
            if owner in modules_here or (name, f"{owner}.{attr}") in _OWN_INSTANCE:
                continue
            found.append(f"{name}: line {node.lineno}: {owner}.{attr}")
    assert found == [], "private members reached from outside:\n  " + "\n  ".join(found)


# -- every store behind one interface (issue 26, item 1) ----------------------------------


def test_no_code_outside_the_stores_names_a_store_class() -> None:
    """What differs between a local and an S3 store is a method of the Store interface
    (``local_dir``, ``delete_tree``, ``create``...), not a branch on the class."""
    found = []
    for name, path in modules().items():
        if name == "stores" or name.startswith("stores."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Name) and node.id in ("LocalStore", "S3Store"):
                found.append(f"{name}: line {node.lineno}: {node.id}")
    assert found == [], "store classes named outside engine/stores:\n  " + "\n  ".join(found)
