"""Hostile archives: every field of an archive manifest is checked before anything is
read or written, and a refused archive changes nothing anywhere.

Each test takes a sound archive, makes one hostile change (resealing the manifest's
checksum as an attacker would), and runs the real ``restore`` and ``backup verify``.
The whole temporary root is listed before and after: nothing may appear, vanish or
change, inside the data dir or outside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import run_cli

HOUR = 3_600_000_000_000
T0 = 1_700_000_000_000_000_000
LINES = [f"cpu,host=h{i % 3} v={i}i,f={i / 4} {T0 + i * HOUR}" for i in range(60)]


@pytest.fixture(scope="module")
def sound_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sound")
    data = root / "data"
    data.mkdir()
    assert run_cli(data, "db", "create", "src").code == 0
    assert run_cli(data, "ingest", "lp", "src", "-", stdin="\n".join(LINES) + "\n").code == 0
    done = run_cli(
        data,
        "--format",
        "json",
        "backup",
        "create",
        "src",
        "--to",
        str(root / "store"),
        "--name",
        "full",
    )
    assert done.code == 0, done.err
    return root / "store" / "full"


def reseal(body: dict[str, Any]) -> dict[str, Any]:
    """Recompute the manifest checksum as the format spec says (independently of tsadmin)."""
    body.pop("checksum", None)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return {**body, "checksum": hashlib.sha256(canonical).hexdigest()}


def listing(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its kind, size and content digest."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


class Attack:
    def __init__(self, tmp_path: Path, sound: Path) -> None:
        self.root = tmp_path
        self.data = tmp_path / "data"
        self.data.mkdir()
        self.store = tmp_path / "store"
        shutil.copytree(sound.parent, self.store, symlinks=True)
        self.archive = self.store / "full"
        assert run_cli(self.data, "db", "create", "victim").code == 0

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.archive / "manifest.json").read_text())

    def write(self, body: dict[str, Any], *, seal: bool = True) -> None:
        (self.archive / "manifest.json").write_text(json.dumps(reseal(body) if seal else body))

    def edit(self, change: Callable[[dict[str, Any]], None]) -> None:
        body = self.manifest
        change(body)
        self.write(body)

    def first_file(self, body: dict[str, Any]) -> dict[str, Any]:
        return body["tables"]["cpu"]["files"][0]

    def refused(self, *words: str, code: int = 3, restore_args: tuple[str, ...] = ()) -> str:
        """Restore (as a new database and as tables into an existing one) and verify must
        all refuse with ``code``; nothing under the temporary root may change."""
        before = listing(self.root)
        errors = []
        for args in (
            ("restore", str(self.archive), "--db", "fresh", *restore_args),
            ("restore", str(self.archive), "--db", "victim", "--table", "cpu", "--mode", "merge"),
            ("backup", "verify", str(self.archive)),
        ):
            result = run_cli(self.data, *args)
            assert result.code == code, (args, result)
            assert "internal error" not in result.err and "Traceback" not in result.err
            assert len(result.err.strip().splitlines()) <= 2 or args[0] == "backup", result.err
            errors.append(result.err + result.out)
        assert listing(self.root) == before
        for word in words:
            assert word in errors[0], errors[0]
        return errors[0]


@pytest.fixture
def attack(tmp_path: Path, sound_archive: Path) -> Attack:
    return Attack(tmp_path, sound_archive)


def test_a_partition_that_climbs_out_of_the_data_dir(attack: Attack) -> None:
    attack.edit(lambda b: attack.first_file(b).update(partition="0/../../../../escaped/X"))
    attack.refused("partition")
    assert not (attack.root / "escaped").exists()


def test_a_string_partition(attack: Attack) -> None:
    attack.edit(
        lambda b: attack.first_file(b).update(partition=str(attack.first_file(b)["partition"]))
    )
    attack.refused("partition")


def test_a_partition_that_is_not_a_partition_start(attack: Attack) -> None:
    attack.edit(
        lambda b: attack.first_file(b).update(partition=attack.first_file(b)["partition"] + 1)
    )
    attack.refused("partition")


def test_a_file_path_with_dot_dot(attack: Attack) -> None:
    attack.edit(lambda b: attack.first_file(b).update(path="cpu/../../../escaped.parquet"))
    attack.refused("path")


def test_an_absolute_file_path(attack: Attack) -> None:
    attack.edit(lambda b: attack.first_file(b).update(path=str(attack.root / "x.parquet")))
    attack.refused("path")


def test_a_table_name_that_is_a_path(attack: Attack) -> None:
    def rename(body: dict[str, Any]) -> None:
        table = body["tables"].pop("cpu")
        for item in table["files"]:
            item["path"] = item["path"].replace("cpu/", "../x/")
        body["tables"]["../x"] = table

    attack.edit(rename)
    attack.refused("table")


def test_duplicated_file_entries(attack: Attack) -> None:
    def duplicate(body: dict[str, Any]) -> None:
        table = body["tables"]["cpu"]
        table["files"].append(dict(table["files"][0]))
        table["rows"] += table["files"][0]["rows"]

    attack.edit(duplicate)
    attack.refused("listed twice")


def test_a_base_archive_outside_the_store(attack: Attack, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    shutil.copytree(attack.archive, outside / "full")
    os.symlink(outside / "full", attack.store / "base0")
    digest = hashlib.sha256((attack.archive / "manifest.json").read_bytes()).hexdigest()
    attack.edit(
        lambda b: b.update(base={"name": "base0", "snapshot_lsn": 1, "manifest_sha256": digest})
    )
    attack.refused("outside")


def test_a_base_name_that_is_a_path(attack: Attack) -> None:
    attack.edit(
        lambda b: b.update(
            base={"name": "../store", "snapshot_lsn": 1, "manifest_sha256": "0" * 64}
        )
    )
    attack.refused("base.name")


def test_unknown_extra_keys(attack: Attack) -> None:
    attack.edit(lambda b: b.update(payload="x" * 100_000))
    attack.refused("payload")


def test_unknown_keys_in_a_file_entry(attack: Attack) -> None:
    attack.edit(lambda b: attack.first_file(b).update(owner="root"))
    attack.refused("owner")


def test_a_manifest_far_too_large(attack: Attack) -> None:
    body = attack.manifest
    entry = attack.first_file(body)
    with (attack.archive / "manifest.json").open("w") as out:
        out.write('{"format": "tsadmin-archive", "version": 1, "tables": {"cpu": {"files": [')
        chunk = json.dumps(entry) + ","
        for _ in range((65 << 20) // len(chunk) + 1):
            out.write(chunk)
        out.write(json.dumps(entry) + "]}}}")
    attack.refused("larger than")


def test_deep_nesting(attack: Attack) -> None:
    text = json.dumps(reseal(attack.manifest))
    nested = "[" * 50_000 + "]" * 50_000
    start = text.index('"settings": ') + len('"settings": ')
    end = text.index("}", start) + 1
    (attack.archive / "manifest.json").write_text(text[:start] + nested + text[end:])
    attack.refused("depth")


def test_wrong_types(attack: Attack) -> None:
    attack.edit(lambda b: b.update(snapshot_lsn="many"))
    attack.refused("snapshot_lsn")


def test_an_unknown_field_type(attack: Attack) -> None:
    attack.edit(lambda b: b["tables"]["cpu"]["fields"].update(v="float128"))
    attack.refused("fields")


def test_a_tag_named_like_the_timestamp(attack: Attack) -> None:
    attack.edit(lambda b: b["tables"]["cpu"]["tags"].append("ts"))
    attack.refused("timestamp")


def test_negative_and_oversized_counts(attack: Attack) -> None:
    attack.edit(lambda b: attack.first_file(b).update(rows=-1))
    attack.refused("rows")
    attack.edit(lambda b: attack.first_file(b).update(rows=10**12))
    attack.refused("rows")


def test_a_lying_time_range_that_would_hide_rows(attack: Attack) -> None:
    def narrow(body: dict[str, Any]) -> None:
        item = attack.first_file(body)
        item["max_ts"] = item["min_ts"]

    attack.edit(narrow)
    attack.refused("timestamps run from")


def test_a_time_range_outside_its_partition(attack: Attack) -> None:
    attack.edit(lambda b: attack.first_file(b).update(max_ts=T0 + 10**15))
    attack.refused("partition")


def test_a_file_that_decodes_to_far_more_rows_than_declared(attack: Attack) -> None:
    """A small file (dictionary and run-length encoded) holding many more rows than the
    manifest declares: refused before restore, never installed."""
    item = attack.first_file(attack.manifest)
    path = attack.archive / item["path"]
    original = pq.read_table(path)
    many = 2_000_000
    ts = pa.array([item["min_ts"]] * many, pa.timestamp("ns", tz="UTC"))
    rows = pa.table(
        {
            c: (ts if c == "ts" else pa.repeat(original.column(c)[0], many))
            for c in original.column_names
        },
        schema=original.schema,
    )
    pq.write_table(rows, path, compression="zstd")
    data = path.read_bytes()

    def lie(body: dict[str, Any]) -> None:
        entry = attack.first_file(body)
        entry.update(
            bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), max_ts=entry["min_ts"]
        )

    attack.edit(lie)
    attack.refused("rows")


def test_a_link_inside_the_archive(attack: Attack) -> None:
    item = attack.first_file(attack.manifest)
    target = attack.archive / item["path"]
    moved = attack.root / "moved.parquet"
    shutil.move(target, moved)
    os.symlink(moved, target)
    attack.refused("link")


def test_an_archive_asking_for_byrl_restores_at_sync_and_says_so(attack: Attack) -> None:
    attack.edit(lambda b: b["settings"].update(wal_level="byrl"))
    result = run_cli(attack.data, "restore", str(attack.archive), "--db", "fresh")
    assert result.code == 0, result
    assert "byrl" in result.err and "sync" in result.err
    shown = run_cli(attack.data, "--format", "json", "config", "get", "fresh", "wal_level")
    assert shown.code == 0 and "sync" in shown.out and "byrl" not in shown.out


def test_an_archive_of_another_precision_is_refused_before_touching_the_target(
    attack: Attack,
) -> None:
    assert run_cli(attack.data, "db", "create", "milli", "--precision", "ms").code == 0
    before = listing(attack.root)
    result = run_cli(
        attack.data,
        "restore",
        str(attack.archive),
        "--db",
        "milli",
        "--table",
        "cpu",
        "--mode",
        "merge",
    )
    assert result.code != 0 and "precision" in result.err, result
    assert listing(attack.root) == before
    assert run_cli(attack.data, "select", "milli", "cpu").code != 0  # still no table cpu


def test_the_sound_archive_restores(attack: Attack) -> None:
    """The control: without the hostile change, the same commands succeed."""
    assert run_cli(attack.data, "backup", "verify", str(attack.archive)).code == 0
    assert run_cli(attack.data, "restore", str(attack.archive), "--db", "fresh").code == 0
    rows = run_cli(attack.data, "--format", "json", "select", "fresh", "cpu").json()
    assert len(rows) == len(LINES)


def test_rows_out_of_order(attack: Attack) -> None:
    """Files are sorted by series and time, and ``select --limit`` stops early relying on
    it. Restore checks digests and footers, not order (decoding every key would cost it
    several times the copy): a file reordered and resealed restores, ``backup verify``
    finds it, and reads stay right (a read that finds rows out of order reads them all)."""
    item = attack.first_file(attack.manifest)
    path = attack.archive / item["path"]
    rows = pq.read_table(path)
    pq.write_table(rows.take(list(reversed(range(rows.num_rows)))), path, compression="zstd")
    data = path.read_bytes()
    attack.edit(
        lambda b: attack.first_file(b).update(
            bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
        )
    )
    verify = run_cli(attack.data, "backup", "verify", str(attack.archive))
    assert verify.code == 3 and "not sorted" in verify.out + verify.err, verify
    assert run_cli(attack.data, "restore", str(attack.archive), "--db", "fresh").code == 0
    everything = run_cli(attack.data, "--format", "json", "select", "fresh", "cpu").json()
    assert len(everything) == len(LINES)
    for limit in (1, 5, 40):
        head = run_cli(
            attack.data, "--format", "json", "select", "fresh", "cpu", "--limit", str(limit)
        )
        assert head.code == 0, head
        assert head.json() == everything[:limit]
