"""Replication end to end: a primary shipping its log to a store (a local directory, and
a real S3-protocol server on 127.0.0.1), standbys following it, promotion and fencing,
byrl, point-in-time restore; real CLI processes, real kills, real damaged objects."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from engine.replication import layout, logsegment
from engine.stores import open_store
from tests.conftest import CLEAN_ENV, S3_SERVERS, Result, run_cli, s3_env_of
from tests.servers import make_bucket, s3_server

FAST = {"TSADMIN_SHIP_INTERVAL": "0.2"}
T0 = 1_700_000_000_000_000_000


@pytest.fixture(params=["local", *S3_SERVERS])
def store_url(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, dict[str, str]]]:
    """A local directory, moto's S3 and a real SeaweedFS."""
    if request.param == "local":
        yield str(tmp_path / "store"), {}
    else:
        env = s3_env_of(request, request.param)
        make_bucket(env, "replicas")
        yield f"s3://replicas/{tmp_path.name}", env


def sites(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "site-a", tmp_path / "site-b"
    a.mkdir(exist_ok=True)
    b.mkdir(exist_ok=True)
    return a, b


def tsadmin(data: Path, *args: str, env: dict[str, str] | None = None, **kw: Any) -> Result:
    return run_cli(data, *args, env={**FAST, **(env or {})}, **kw)


def ok(result: Result) -> Result:
    assert result.code == 0, (result.code, result.err, result.out)
    return result


def lines(batch: int, rows: int = 10) -> str:
    """One transaction's worth: ``rows`` points, all carrying ``batch``."""
    return "".join(
        f"cpu,host=h{i} usage={batch},batch={batch}i {T0 + batch * 1000 + i}\n" for i in range(rows)
    )


def checksum(data: Path, db: str, env: dict[str, str] | None = None) -> str:
    return str(
        ok(tsadmin(data, "db", "checksum", db, "--format", "json", env=env)).json()["sha256"]
    )


def batches_in(data: Path, db: str) -> dict[int, int]:
    """batch -> rows holding it (a whole transaction shows all its rows)."""
    out = ok(tsadmin(data, "select", "m" if db == "m" else db, "cpu", "--format", "json"))
    counts: dict[int, int] = {}
    for row in out.json():
        counts[int(row["batch"])] = counts.get(int(row["batch"]), 0) + 1
    return counts


def setup_primary(a: Path, url: str, env: dict[str, str], *, batches: int = 3) -> None:
    ok(tsadmin(a, "db", "create", "m", env=env))
    ok(tsadmin(a, "replica", "add", "m", url, env=env))
    for k in range(1, batches + 1):
        ok(tsadmin(a, "ingest", "lp", "m", "-", stdin=lines(k), env=env))


# -- ship and follow -------------------------------------------------------------------------


def test_standby_follows_a_writing_primary_to_equal_checksums(
    tmp_path: Path, store_url: tuple[str, dict[str, str]]
) -> None:
    url, env = store_url
    a, b = sites(tmp_path)
    setup_primary(a, url, env, batches=1)
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tsadmin",
            "--data-dir",
            str(b),
            "follow",
            url,
            "--db",
            "m",
            "--interval",
            "200ms",
        ],
        env={**CLEAN_ENV, **FAST, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for k in range(2, 12):
            ok(tsadmin(a, "ingest", "lp", "m", "-", stdin=lines(k), env=env))
            if k == 6:  # readable while it follows; writes refused with how to promote
                deadline = time.monotonic() + 30  # until the follower has applied a batch
                while tsadmin(b, "select", "m", "cpu", "--limit", "1").code != 0:
                    assert time.monotonic() < deadline, "the standby never became readable"
                    time.sleep(0.1)
                refused = tsadmin(b, "ingest", "lp", "m", "-", stdin=lines(99))
                assert refused.code == 9 and "standby" in refused.err
                assert "tsadmin promote m" in refused.err
        want = checksum(a, "m")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = ok(tsadmin(b, "replica", "status", "m", "--format", "json", env=env)).json()
            caught_up = status["behind_records"] == 0 and status["applied_lsn"] > 0
            if caught_up and checksum(b, "m") == want:
                break
            time.sleep(0.2)
    finally:
        follower.send_signal(signal.SIGTERM)
        _out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    assert checksum(b, "m") == checksum(a, "m")
    status = ok(tsadmin(a, "replica", "status", "m", "--format", "json", env=env)).json()
    assert status["replicas"][0]["state"] == "ok"
    assert status["replicas"][0]["lag_records"] == 0


# -- kills of the primary ---------------------------------------------------------------------


# where the shipper dies, and at its how-manieth visit there (these were the five distinct
# draws of six random seeds, one drawn twice; named, each runs once and says what it is)
KILL_POINTS = [
    ("crash@ship.before_upload", 2),
    ("crash@ship.after_upload", 2),
    ("torn@store.write", 1),
    ("torn@store.write", 2),
    ("torn@store.write", 3),
]


@pytest.mark.parametrize(("point", "nth"), KILL_POINTS)
def test_kill_of_the_primary_leaves_the_follower_an_exact_prefix(
    tmp_path: Path, point: str, nth: int
) -> None:
    url = str(tmp_path / "store")
    a, b = sites(tmp_path)
    setup_primary(a, url, {}, batches=2)
    # several ingests; one of their shippers is killed (at close, or in the background)
    for k in range(3, 9):
        faults = f"{point}:{nth}" if k == 5 else ""
        result = tsadmin(
            a, "ingest", "lp", "m", "-", stdin=lines(k), env={"TSADMIN_FAULTS": faults}
        )
        assert result.code in (0, -9), result.err
    # mid-checkpoint with WAL held: an ingest that cannot ship, then a killed checkpoint
    tsadmin(
        a,
        "ingest",
        "lp",
        "m",
        "-",
        stdin=lines(9),
        env={"TSADMIN_FAULTS": "crash@ship.before_upload"},
    )
    tsadmin(a, "checkpoint", "m", env={"TSADMIN_FAULTS": "crash@checkpoint.after_manifest"})
    ok(tsadmin(b, "follow", url, "--db", "m", "--once"))
    prefix = batches_in(b, "m")
    assert all(count == 10 for count in prefix.values()), prefix  # no half transaction
    assert sorted(prefix) == list(range(1, len(prefix) + 1)), prefix  # a prefix, no hole
    # restarted, the shipper resumes without a gap
    ok(tsadmin(a, "replicate", "m", "--once"))
    ok(tsadmin(b, "follow", url, "--db", "m", "--once"))
    assert batches_in(b, "m") == {k: 10 for k in range(1, 10)}
    assert checksum(b, "m") == checksum(a, "m")


# -- byrl ------------------------------------------------------------------------------------------

BYRL_CHILD = """
import sys, pyarrow as pa
from pathlib import Path
from engine.db.database import Database, Batch
db = Database.open(Path(sys.argv[1]), "m")
rows = pa.table({"ts": pa.array([1_700_000_000_000_000_000], pa.int64()), "host": ["acked"],
                 "usage": [42.0]})
db.write([Batch("cpu", rows, ["host"])])
print("ACK", flush=True)
import time; time.sleep(600)
"""


def test_byrl_acknowledged_write_survives_the_loss_of_the_primary(
    tmp_path: Path, store_url: tuple[str, dict[str, str]]
) -> None:
    url, env = store_url
    a, b = sites(tmp_path)
    setup_primary(a, url, env, batches=1)
    ok(tsadmin(a, "config", "set", "m", "wal_level", "byrl", env=env))
    child = subprocess.Popen(
        [sys.executable, "-c", BYRL_CHILD, str(a / "m")],
        env={**CLEAN_ENV, **env, "TSADMIN_SHIP_HOLD": "1"},  # only byrl ships
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line.strip() == "ACK", child.stderr.read() if child.stderr else ""
    child.kill()
    child.wait()
    shutil.rmtree(a)  # site A is lost
    ok(tsadmin(b, "follow", url, "--db", "m", "--once", env=env))
    ok(tsadmin(b, "promote", "m", env=env))
    rows = ok(tsadmin(b, "select", "m", "cpu", "--where", "host=acked", "--format", "json")).json()
    assert [r["usage"] for r in rows] == [42.0]
    # the new primary writes and ships under the new epoch
    ok(tsadmin(b, "ingest", "lp", "m", "-", stdin=lines(7), env=env))
    store = open_store(url) if not env else _s3_store(url, env)
    assert layout.list_segments(store, 2)
    # and the store restores any point of that history, across the promotion
    branch = layout.read_claims(store)[1].branch_lsn
    report = ok(
        tsadmin(
            b,
            "restore",
            url,
            "--db",
            "at_branch",
            "--to-lsn",
            str(branch),
            "--format",
            "json",
            env=env,
        )
    ).json()
    assert report["reached_lsn"] == branch
    assert [
        r["usage"]
        for r in ok(
            tsadmin(b, "select", "at_branch", "cpu", "--where", "host=acked", "--format", "json")
        ).json()
    ] == [42.0]
    beyond = tsadmin(b, "restore", url, "--db", "later", "--to-lsn", "999999", env=env)
    assert beyond.code == 2 and "beyond the log" in beyond.err


def test_byrl_write_fails_with_exit_8_when_the_store_does_not_answer(tmp_path: Path) -> None:
    with s3_server() as env:
        make_bucket(env, "gone")
        a, _ = sites(tmp_path)
        url = "s3://gone/m"
        setup_primary(a, url, env, batches=1)
        ok(tsadmin(a, "config", "set", "m", "wal_level", "byrl", env=env))
        ok(tsadmin(a, "config", "set", "m", "replica_timeout", "2s", env=env))
    # the server is gone now
    started = time.monotonic()
    result = tsadmin(
        a, "ingest", "lp", "m", "-", stdin=lines(2), env={**env, "AWS_MAX_ATTEMPTS": "1"}
    )
    assert result.code == 8, result.err
    assert "no replica store confirmed it" in result.err
    assert time.monotonic() - started < 60
    assert "Traceback" not in result.err


# -- damaged stores -----------------------------------------------------------------------


def _segments(store: Path) -> list[Path]:
    return sorted((store / "log" / "0000000001").glob("*.tslog"))


@pytest.fixture
def shipped(tmp_path: Path) -> tuple[Path, Path]:
    a, _ = sites(tmp_path)
    url = tmp_path / "store"
    setup_primary(a, str(url), {}, batches=5)
    assert len(_segments(url)) >= 4
    return a, url


def _flip_a_byte_of(victim: Path) -> Path:
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    return victim


def test_a_corrupted_segment_stops_follow_and_restore_naming_it(
    tmp_path: Path, shipped: tuple[Path, Path]
) -> None:
    _, url = shipped
    victim = _flip_a_byte_of(_segments(url)[2])
    b = tmp_path / "site-b"
    result = tsadmin(b, "follow", str(url), "--db", "m", "--once")
    assert result.code == 5 and victim.name in result.err, result.err
    restored = tsadmin(b, "restore", str(url), "--db", "r", "--to-lsn", "100000")
    assert restored.code == 5 and victim.name in restored.err, restored.err
    assert not (b / "r").exists()


def test_a_live_follower_stopped_by_damage_leaves_status_stopped_with_the_error(
    tmp_path: Path, shipped: tuple[Path, Path]
) -> None:
    _, url = shipped
    victim = _flip_a_byte_of(_segments(url)[2])
    b = tmp_path / "site-b"
    result = tsadmin(b, "follow", str(url), "--db", "m", "--interval", "0.1")  # not --once
    assert result.code == 5 and victim.name in result.err, result.err
    status = tsadmin(b, "--format", "json", "replica", "status", "m")
    assert status.code == 0, status.err
    report = status.json()
    assert report["state"] == "stopped", report
    assert victim.name in str(report["error"]), report


def test_a_store_whose_directory_vanished_is_unavailable_not_recreated(tmp_path: Path) -> None:
    a, _ = sites(tmp_path)
    url = tmp_path / "volume" / "store"
    setup_primary(a, str(url), {}, batches=2)
    assert any(url.rglob("*.tslog"))
    shutil.rmtree(tmp_path / "volume")  # the volume was unmounted
    wrote = ok(tsadmin(a, "ingest", "lp", "m", "-", stdin=lines(3)))  # sync: committed here
    assert f"store {url} does not exist" in wrote.err  # its closing round could not ship
    shipped = tsadmin(a, "replicate", "m", "--once")
    assert shipped.code == 1 and f"store {url} does not exist" in shipped.err, shipped.err
    assert not url.exists() and not (tmp_path / "volume").exists()
    status = ok(tsadmin(a, "--format", "json", "replica", "status", "m")).json()
    (replica,) = status["replicas"]
    assert replica["state"] == "lagging" and "does not exist" in str(replica["error"]), replica
    ok(tsadmin(a, "config", "set", "m", "wal_level", "byrl"))
    ok(tsadmin(a, "config", "set", "m", "replica_timeout", "1s"))
    refused = tsadmin(a, "ingest", "lp", "m", "-", stdin=lines(4))
    assert refused.code == 8 and "does not exist" in refused.err, refused.err
    assert not url.exists()


def test_a_missing_segment_stops_follow_and_restore_naming_the_gap(
    tmp_path: Path, shipped: tuple[Path, Path]
) -> None:
    _, url = shipped
    segments = _segments(url)
    segments[2].unlink()
    b = tmp_path / "site-b"
    result = tsadmin(b, "follow", str(url), "--db", "m", "--once")
    assert result.code == 5 and "misses LSNs" in result.err and segments[3].name in result.err
    restored = tsadmin(b, "restore", str(url), "--db", "r", "--to-lsn", "100000")
    assert restored.code == 5 and "misses LSNs" in restored.err
    assert not (b / "r").exists()


def test_duplicated_segments_change_nothing(tmp_path: Path, shipped: tuple[Path, Path]) -> None:
    a, url = shipped
    segments = _segments(url)
    # one object re-uploaded whole (same key), and a second object spanning two segments
    # (the same records, linked the same way), as a shipper re-run could leave
    segments[1].write_bytes(segments[1].read_bytes())
    two = [logsegment.decode(p.read_bytes(), p.name) for p in segments[2:4]]
    merged = logsegment.encode(
        two[0].header.uuid,
        1,
        [_raw(r) for seg in two for r in seg.records],
        rows=sum(s.header.rows for s in two),
        first_commit_ns=two[0].header.first_commit_ns,
        last_commit_ns=two[1].header.last_commit_ns,
        previous=two[0].header.previous,
    )
    key = logsegment.object_key(1, two[0].header.first_lsn, two[1].header.last_lsn)
    (url / key).write_bytes(merged)
    b = tmp_path / "site-b"
    ok(tsadmin(b, "follow", str(url), "--db", "m", "--once"))
    assert checksum(b, "m") == checksum(a, "m")
    # applied again from an earlier position (a crash between an apply and its record)
    state_path = b / "m" / "standby.json"
    state = json.loads(state_path.read_text())
    state["applied_lsn"], state["previous"] = two[0].header.last_lsn, two[0].digest.hex()
    state_path.write_text(json.dumps(state))
    ok(tsadmin(b, "follow", str(url), "--db", "m", "--once"))
    assert checksum(b, "m") == checksum(a, "m")
    ok(tsadmin(b, "restore", str(url), "--db", "r", "--to-lsn", str(two[1].header.last_lsn)))
    restored = batches_in(b, "r")
    assert sorted(restored) == list(range(1, len(restored) + 1)) and set(restored.values()) == {10}


def _raw(record: Any) -> bytes:
    from engine.log import wal

    return wal.encode_record(record.lsn, record.txn, record.type, record.payload)


# -- promotion and fencing -----------------------------------------------------------------------


def test_two_promotes_one_wins_old_primary_fenced_followers_ignore_its_uploads(
    tmp_path: Path, store_url: tuple[str, dict[str, str]]
) -> None:
    url, env = store_url
    a, _ = sites(tmp_path)
    b1, b2, c = tmp_path / "b1", tmp_path / "b2", tmp_path / "c"
    for d in (b1, b2, c):
        d.mkdir()
    setup_primary(a, url, env, batches=3)
    ok(tsadmin(b1, "follow", url, "--db", "m", "--once", env=env))
    ok(tsadmin(b2, "follow", url, "--db", "m", "--once", env=env))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tsadmin", "--data-dir", str(d), "promote", "m"],
            env={**CLEAN_ENV, **FAST, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for d in (b1, b2)
    ]
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    loser_err = next(err for code, err in results if code == 1)
    assert "claimed first" in loser_err
    winner = b1 if results[0][0] == 0 else b2
    # the old primary is fenced at its next write, with a message naming the promotion
    fenced = tsadmin(a, "ingest", "lp", "m", "-", stdin=lines(50), env=env)
    assert fenced.code == 9 and "fenced" in fenced.err and "epoch 2" in fenced.err
    # an upload of the old primary past the branch (one in flight at the promotion)
    store = open_store(url) if not env else _s3_store(url, env)
    claims = layout.read_claims(store)
    branch = claims[1].branch_lsn
    forged = logsegment.encode(
        claims[0].uuid,
        1,
        [_raw_commit_ddl(branch + 1)],
        rows=0,
        first_commit_ns=0,
        last_commit_ns=0,
        previous=bytes.fromhex(claims[1].previous) if claims[1].previous else bytes(32),
    )
    store.write(logsegment.object_key(1, branch + 1, branch + 1), forged)
    ok(tsadmin(winner, "ingest", "lp", "m", "-", stdin=lines(4), env=env))
    ok(tsadmin(c, "follow", url, "--db", "m", "--once", env=env))
    assert checksum(c, "m") == checksum(winner, "m")
    assert 50 not in batches_in(c, "m")
    # the loser keeps following and moves on to the new epoch
    ok(tsadmin(b2 if winner == b1 else b1, "follow", url, "--db", "m", "--once", env=env))
    assert checksum(b2 if winner == b1 else b1, "m") == checksum(winner, "m")


def _raw_commit_ddl(lsn: int) -> bytes:
    from engine.log import wal

    change = {"op": "table", "table": "forged", "tags": [], "fields": {"x": "float64"}}
    return wal.encode_record(lsn, 0, wal.RecordType.DDL, wal.encode_ddl(change))


def _s3_store(url: str, env: dict[str, str]) -> Any:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return open_store(url)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# -- point-in-time restore ------------------------------------------------------------------------


def test_point_in_time_restore_equals_the_state_at_that_point(tmp_path: Path) -> None:
    from engine.db.database import Batch, Database
    from engine.ops import database_checksum

    a, b = sites(tmp_path)
    url = str(tmp_path / "store")
    ok(tsadmin(a, "db", "create", "m"))
    ok(tsadmin(a, "replica", "add", "m", url))
    history: list[tuple[int, int, str]] = []  # (LSN, commit time, checksum) after each commit
    db = Database.open(a / "m", "m", background=False)
    try:
        for k in range(1, 16):
            rows = pa.table(
                {
                    "ts": pa.array([1_700_000_000_000_000_000 + i for i in range(5)], pa.int64()),
                    "host": [f"h{(k + i) % 4}" for i in range(5)],
                    "v": [float(k)] * 5,
                }
            )
            result = db.write([Batch("cpu", rows, ["host"])])
            time.sleep(0.002)
            history.append((result.lsn, time.time_ns(), database_checksum(a, "m").sha256))
            if k == 8:
                db.replication.ship_all()  # type: ignore[union-attr]
                db.replication.shipper(url).snapshot()  # type: ignore[union-attr]
    finally:
        db.close()
    rng = random.Random(7)
    last_lsn = history[-1][0]
    targets = sorted(rng.sample(range(history[0][0], last_lsn + 1), 5))
    for target in targets:
        name = f"l{target}"
        report = ok(
            tsadmin(b, "restore", url, "--db", name, "--to-lsn", str(target), "--format", "json")
        ).json()
        expected = max(h for h in history if h[0] <= target)
        assert report["reached_lsn"] == expected[0]
        assert checksum(b, name) == expected[2]
    for index in rng.sample(range(len(history) - 1), 3):
        lsn, when, digest = history[index]
        name = f"t{index}"
        report = ok(
            tsadmin(b, "restore", url, "--db", name, "--to-time", f"{when}ns", "--format", "json")
        ).json()
        assert report["reached_lsn"] == lsn
        assert checksum(b, name) == digest
    beyond = tsadmin(b, "restore", url, "--db", "x", "--to-lsn", str(last_lsn + 5))
    assert beyond.code == 2 and "beyond the log" in beyond.err
    dry = ok(
        tsadmin(
            b,
            "restore",
            url,
            "--db",
            "x",
            "--to-lsn",
            str(last_lsn),
            "--dry-run",
            "--format",
            "json",
        )
    ).json()
    assert dry["dry_run"] and dry["reached_lsn"] == last_lsn and not (b / "x").exists()


# -- hold limits ---------------------------------------------------------------------------------


def big_lines(batch: int, rows: int) -> str:
    rng = random.Random(batch)
    return "".join(
        f'cpu,host=h{i % 50} usage={rng.random()},batch={batch}i,note="{rng.getrandbits(64):x}" '
        f"{1_700_000_000_000_000_000 + batch * 10_000_000 + i}\n"
        for i in range(rows)
    )


def test_replica_past_the_hold_limits_needs_reseed_then_is_reseeded_and_equal(
    tmp_path: Path,
) -> None:
    a, b = sites(tmp_path)
    url = tmp_path / "store"
    ok(tsadmin(a, "db", "create", "m"))
    ok(tsadmin(a, "replica", "add", "m", str(url)))
    ok(tsadmin(a, "config", "set", "m", "replica_hold_bytes", "1MiB"))
    ok(tsadmin(a, "ingest", "lp", "m", "-", stdin=lines(1)))
    # the store goes away (a file where its directory was): nothing ships
    aside = tmp_path / "store-aside"
    url.rename(aside)
    url.write_text("not a directory")
    notes = ""
    for k in range(2, 5):
        result = ok(tsadmin(a, "ingest", "lp", "m", "-", stdin=big_lines(k, 20_000)))
        notes += result.err
    assert "needs a reseed" in notes, notes
    status = ok(tsadmin(a, "replica", "status", "m", "--format", "json")).json()
    assert status["replicas"][0]["state"] == "needs reseed"
    # the store comes back: the shipper reseeds it, a standby made from it is equal
    url.unlink()
    aside.rename(url)
    shipped = ok(tsadmin(a, "replicate", "m", "--once", "--format", "json")).json()
    assert shipped[0]["snapshot"] and shipped[0]["reseeded"]
    status = ok(tsadmin(a, "replica", "status", "m", "--format", "json")).json()
    assert status["replicas"][0]["state"] == "ok"
    ok(tsadmin(b, "follow", str(url), "--db", "m", "--once"))
    assert checksum(b, "m") == checksum(a, "m")


# -- deletes and retention (issue 13) ---------------------------------------------------------


def test_deletes_and_expiry_are_shipped_and_applied_by_the_standby(
    tmp_path: Path, store_url: tuple[str, dict[str, str]]
) -> None:
    url, env = store_url
    a, b = sites(tmp_path)
    setup_primary(a, url, env, batches=4)
    old = "".join(f"mem,host=h{i} v={i} {T0 + i}\n" for i in range(5))  # 2023: long expired
    ok(tsadmin(a, "ingest", "lp", "m", "-", stdin=old, env=env))
    ok(tsadmin(b, "follow", url, "--db", "m", "--once", env=env))
    assert checksum(a, "m") == checksum(b, "m")
    lsn_before = ok(tsadmin(a, "db", "show", "m", "--format", "json")).json()["last_lsn"]
    # batch 2 of host h3 and h4 removed; then every 2023 partition expired
    start, end = str(T0 + 2000), str(T0 + 3000)
    for host in ("h3", "h4"):
        ok(tsadmin(a, "delete", "m", "cpu", "--start", start, "--end", end, "--where",
                   f"host={host}", "--yes", env=env))  # fmt: skip
    assert batches_in(a, "m") == {1: 10, 2: 8, 3: 10, 4: 10}
    ok(tsadmin(a, "replicate", "m", "--once", env=env))
    ok(tsadmin(b, "follow", url, "--db", "m", "--once", env=env))
    assert checksum(a, "m") == checksum(b, "m") and batches_in(b, "m")[2] == 8
    ok(tsadmin(a, "config", "set", "m", "retention", "30d", "--yes", env=env))  # T0: 2023
    assert _rows(a, "mem") == [] and _rows(a, "cpu") == []
    ok(tsadmin(a, "replicate", "m", "--once", env=env))
    ok(tsadmin(b, "follow", url, "--db", "m", "--once", env=env))
    assert checksum(a, "m") == checksum(b, "m")
    assert _rows(b, "mem") == [] and _rows(b, "cpu") == []
    shown = ok(tsadmin(b, "config", "get", "m", "retention")).out.strip()
    assert shown == "30d"
    # a point-in-time restore to before the deletes has the rows again
    ok(tsadmin(b, "restore", url, "--db", "past", "--to-lsn", str(lsn_before), env=env))
    assert batches_in(b, "past") == {1: 10, 2: 10, 3: 10, 4: 10}
    assert len(_rows(b, "mem", "past")) == 5


def _rows(data: Path, table: str, db: str = "m") -> list[dict[str, Any]]:
    result = tsadmin(data, "select", db, table, "--format", "json")
    if result.code != 0 and "does not exist" in result.err:
        return []
    return list(ok(result).json())
