"""Damaged segments are detected, never served: digests, page CRCs, ``db verify``."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from engine import Batch, Corruption, Database
from engine.db import dbverify
from tests.conftest import new_db, run_cli

T0 = 1_700_000_000_000_000_000


def _small_segment(data_dir: Path) -> tuple[Path, Path]:
    db_dir = new_db(data_dir, "m")
    rows = pa.table(
        {
            "ts": pa.array(range(T0, T0 + 40), pa.int64()),
            "host": ["a", "b"] * 20,
            "v": [i / 3 for i in range(40)],
            "n": list(range(40)),
            "s": [f"x{i}" for i in range(40)],
        }
    )
    with Database.open(db_dir, "m") as db:
        db.write([Batch("cpu", rows, ["host"])])
    (segment,) = sorted(db_dir.rglob("*.parquet"))
    return db_dir, segment


def test_every_byte_flip_of_a_segment_is_detected_never_served(data_dir: Path) -> None:
    db_dir, segment = _small_segment(data_dir)
    original = segment.read_bytes()
    good = Database.open(db_dir, "m", readonly=True).scan("cpu")
    assert good.num_rows == 40
    served_differently, undetected_by_verify = [], []
    for offset in range(len(original)):
        damaged = bytearray(original)
        damaged[offset] ^= 0x04
        segment.write_bytes(bytes(damaged))
        try:
            rows = Database.open(db_dir, "m", readonly=True).scan("cpu")
            served_differently.append((offset, rows.equals(good)))
        except Corruption as exc:
            assert str(segment) in exc.message
        if dbverify.verify_database(db_dir, "m").ok:
            undetected_by_verify.append(offset)
    segment.write_bytes(original)
    assert served_differently == [], "a damaged segment was read without an error"
    assert undetected_by_verify == []
    assert dbverify.verify_database(db_dir, "m").ok


def test_page_crcs_catch_damaged_pages_of_a_segment_without_a_digest(data_dir: Path) -> None:
    """A manifest written before digests existed: the Parquet page CRCs still guard the
    data pages (a flip there is never served as different rows)."""
    import pyarrow.parquet as pq

    db_dir, segment = _small_segment(data_dir)
    from engine.storage import manifest as manifest_format

    loaded = manifest_format.load(db_dir)
    for entry in loaded.tables.values():
        entry.segments = [type(s)(**{**s.to_json(), "sha256": ""}) for s in entry.segments]
    manifest_format.install(db_dir, loaded)
    assert '"sha256": ""' in (db_dir / "manifest.json").read_text()
    original = segment.read_bytes()
    meta = pq.ParquetFile(segment).metadata
    pages = []
    for group in range(meta.num_row_groups):
        for col in range(meta.num_columns):
            chunk = meta.row_group(group).column(col)
            start = chunk.dictionary_page_offset or chunk.data_page_offset
            pages.append((start, start + chunk.total_compressed_size))
    good = Database.open(db_dir, "m", readonly=True).scan("cpu")
    served = []
    for start, end in pages:
        for offset in range(start, end):
            damaged = bytearray(original)
            damaged[offset] ^= 0x04
            segment.write_bytes(bytes(damaged))
            try:
                rows = Database.open(db_dir, "m", readonly=True).scan("cpu")
            except Corruption:
                continue
            if not rows.equals(good):
                served.append(offset)
    segment.write_bytes(original)
    assert served == []


def test_a_damaged_segment_through_the_cli(data_dir: Path, tmp_path: Path) -> None:
    db_dir, segment = _small_segment(data_dir)
    assert run_cli(data_dir, "db", "verify", "m").code == 0
    damaged = bytearray(segment.read_bytes())
    damaged[len(damaged) // 3] ^= 0x01
    segment.write_bytes(bytes(damaged))

    for args in (["select", "m", "cpu"], ["db", "checksum", "m"]):
        result = run_cli(data_dir, *args)
        assert result.code == 5, result
        assert str(segment.name) in result.err and "Traceback" not in result.err

    verify = run_cli(data_dir, "--format", "json", "db", "verify", "m")
    assert verify.code == 3
    problems = verify.json()["problems"]
    assert [p["file"] for p in problems] == [str(segment.relative_to(db_dir))]

    backups = tmp_path / "backups"
    backup = run_cli(data_dir, "backup", "create", "m", "--to", str(backups))
    assert backup.code == 5, backup
    assert not backups.exists() or list(backups.iterdir()) == [], "an archive of damage"


@pytest.mark.parametrize("seed", [1, 2])
def test_crash_simulate_bitflip_flips_segments_and_wal(data_dir: Path, seed: int) -> None:
    new_db(data_dir, "m")
    result = run_cli(
        data_dir,
        "--format",
        "json",
        "crash",
        "simulate",
        "m",
        "--mode",
        "bitflip",
        "--trials",
        "6",
        "--seed",
        str(seed),
    )
    assert result.code == 0, result
    trials = result.json()["trials"]
    assert all(t["verdict"] != "BROKEN" for t in trials)
    assert any(".parquet" in t["detail"] for t in trials)


def test_a_full_disk_at_the_closing_checkpoint_says_every_row_was_committed(
    data_dir: Path, tmp_path: Path
) -> None:
    assert run_cli(data_dir, "db", "create", "m").code == 0
    lines = "".join(f"cpu,host=h{i % 3} v={i}i {T0 + i}\n" for i in range(500))
    result = run_cli(
        data_dir,
        "ingest",
        "lp",
        "m",
        "-",
        stdin=lines,
        env={"TSADMIN_FAULTS": "enospc@segment.write"},
    )
    assert result.code == 1, result
    assert "500 rows committed" in result.err and "no space" in result.err, result.err
    assert run_cli(data_dir, "--format", "json", "db", "checksum", "m").json()["rows"] == 500


@pytest.mark.parametrize("flip", [0x04])
def test_every_byte_flip_under_a_selective_read_is_detected_never_served(
    data_dir: Path, flip: int
) -> None:
    """A read bounded by a tag and a time range checks the footer's digest and the page
    CRCs of what it decodes, not the whole file: no single flipped bit anywhere in the
    file makes it serve other rows (it raises, or the flip was in bytes it never used)."""
    db_dir, segment = _small_segment(data_dir)
    original = segment.read_bytes()
    bounds = {"where": {"host": "a"}, "start": T0 + 5, "end": T0 + 30}
    good = Database.open(db_dir, "m", readonly=True).scan("cpu", **bounds)  # type: ignore[arg-type]
    assert good.num_rows == 12
    served = []
    for offset in range(len(original)):
        damaged = bytearray(original)
        damaged[offset] ^= flip
        segment.write_bytes(bytes(damaged))
        try:
            rows = Database.open(db_dir, "m", readonly=True).scan("cpu", **bounds)  # type: ignore[arg-type]
        except Corruption:
            continue
        if not rows.equals(good):
            served.append(offset)
    segment.write_bytes(original)
    assert served == [], "a damaged segment served other rows"
