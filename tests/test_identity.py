"""Database identity (replication's foundation): a UUID made at db create and an epoch,
in the manifest and in every WAL file's header (WAL format version 2 and later; version 1 files
are still read, and a database made before identities gets one at its first writer)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from engine.log import wal
from engine.log.reader import scan_file
from tests.conftest import ROOT, run_cli

T0 = 1_732_400_000_000_000_000


def _manifest(db_dir: Path) -> dict[str, object]:
    return json.loads((db_dir / "manifest.json").read_text())  # type: ignore[no-any-return]


def test_a_new_database_carries_its_identity_in_manifest_and_wal(data_dir: Path) -> None:
    assert run_cli(data_dir, "db", "create", "m").code == 0
    manifest = _manifest(data_dir / "m")
    header = scan_file(data_dir / "m" / "wal" / "current.wal").header
    assert header is not None and header.version == wal.VERSION >= 2
    assert (header.uuid, header.epoch) == (manifest["uuid"], manifest["epoch"]) != ("", 0)
    assert run_cli(data_dir, "ingest", "lp", "m", "-", stdin=f"cpu v=1 {T0}\n").code == 0
    assert run_cli(data_dir, "checkpoint", "m").code == 0  # a new WAL file: same identity
    rotated = scan_file(data_dir / "m" / "wal" / "current.wal").header
    assert rotated is not None and rotated.uuid == manifest["uuid"]
    assert _manifest(data_dir / "m")["uuid"] == manifest["uuid"]
    shown = run_cli(data_dir, "--format", "json", "db", "show", "m").json()
    assert (shown["uuid"], shown["epoch"]) == (manifest["uuid"], 1)
    other = data_dir / "other"
    other.mkdir()
    assert run_cli(other, "db", "create", "m").code == 0
    assert _manifest(other / "m")["uuid"] != manifest["uuid"]


def test_a_database_from_before_identities_gets_one_and_reads_the_same(tmp_path: Path) -> None:
    golden = tmp_path / "g"
    shutil.copytree(ROOT / "tests" / "testdata" / "golden-0.2-a539e9b", golden)
    data = golden / "data"
    before = run_cli(data, "--format", "json", "db", "checksum", "golden").json()
    assert "uuid" not in _manifest(data / "golden")
    old_header = scan_file(data / "golden" / "wal" / "current.wal").header
    assert old_header is not None and old_header.version == 1
    assert run_cli(data, "checkpoint", "golden").code == 0
    assert len(str(_manifest(data / "golden")["uuid"])) == 36
    after = run_cli(data, "--format", "json", "db", "checksum", "golden").json()
    assert after["sha256"] == before["sha256"]


def test_a_wal_file_of_another_database_is_never_replayed(data_dir: Path) -> None:
    other = data_dir.parent / "other"
    other.mkdir()
    for place in (data_dir, other):
        assert run_cli(place, "db", "create", "m", "--wal-level", "sync").code == 0
        assert run_cli(place, "ingest", "lp", "m", "-", stdin=f"cpu v=1 {T0}\n").code == 0
    # the same name, another database: its WAL put in place of this one's
    shutil.copy(other / "m" / "wal" / "current.wal", data_dir / "m" / "wal" / "current.wal")
    refused = run_cli(data_dir, "select", "m", "cpu")
    assert refused.code == 5 and "WAL of database" in refused.err


def test_an_archive_carries_the_identity_of_its_database(data_dir: Path, tmp_path: Path) -> None:
    assert run_cli(data_dir, "db", "create", "m").code == 0
    assert run_cli(data_dir, "ingest", "lp", "m", "-", stdin=f"cpu v=1 {T0}\n").code == 0
    made = run_cli(data_dir, "--format", "json", "backup", "create", "m", "--to",
                   str(tmp_path / "b"), "--name", "a")  # fmt: skip
    assert made.code == 0, made.err
    archived = json.loads((tmp_path / "b" / "a" / "manifest.json").read_text())
    assert (archived["uuid"], archived["epoch"]) == (_manifest(data_dir / "m")["uuid"], 1)
    # a restored copy is a database of its own: a new identity
    assert run_cli(data_dir, "restore", str(tmp_path / "b" / "a"), "--db", "copy").code == 0
    assert _manifest(data_dir / "copy")["uuid"] not in ("", archived["uuid"])
