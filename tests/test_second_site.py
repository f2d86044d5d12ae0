"""The second site's two ways to lose acknowledged data (issue 23), held shut:

* a standby the primary's history moved on without (a reseed after the store was cut
  off past the hold limit) rebuilds from the new snapshot or stops and says so, and
  ``promote`` never exits 0 behind what the store holds;
* a ``byrl`` write whose upload is in flight while the standby is promoted is either
  on the new primary or never acknowledged.

Real CLI processes on two sites; an upload is held at an exact step by the I/O
layer's ``pause@POINT`` gate (the process waits for the test's go file)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import CLEAN_ENV
from tests.test_replication import (
    FAST,
    batches_in,
    big_lines,
    checksum,
    lines,
    ok,
    sites,
    tsadmin,
)


def cut_off_and_reseed(tmp_path: Path, a: Path, url: Path, *, marker: bool = True) -> None:
    """The store goes away while the primary writes past its hold limit, comes back,
    and the primary's shipper reseeds it (with or without writing its marker)."""
    aside = tmp_path / "store-aside"
    url.rename(aside)
    url.write_text("not a directory")
    notes = ""
    for k in range(2, 5):
        notes += ok(tsadmin(a, "ingest", "lp", "m", "-", stdin=big_lines(k, 20_000))).err
    assert "needs a reseed" in notes, notes
    url.unlink()
    aside.rename(url)
    if marker:
        shipped = ok(tsadmin(a, "replicate", "m", "--once", "--format", "json")).json()
        assert shipped[0]["reseeded"]
    else:  # killed between the snapshot and its marker, and never run again
        faults = {"TSADMIN_FAULTS": "crash@ship.reseed_before_marker"}
        assert tsadmin(a, "replicate", "m", "--once", env=faults).code == -9
    assert not list((url / "log" / "0000000001").glob("*.tslog.tmp*"))


@pytest.fixture
def reseeded_store(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Site A reseeded its store after an outage; site B's standby was made before it."""
    a, b = sites(tmp_path)
    url = tmp_path / "store"
    ok(tsadmin(a, "db", "create", "m"))
    ok(tsadmin(a, "replica", "add", "m", str(url)))
    ok(tsadmin(a, "config", "set", "m", "replica_hold_bytes", "1MiB"))
    ok(tsadmin(a, "ingest", "lp", "m", "-", stdin=lines(1)))
    ok(tsadmin(b, "follow", str(url), "--db", "m", "--once"))
    assert batches_in(b, "m") == {1: 10}
    return a, b, url


def test_a_standby_behind_a_reseed_rebuilds_to_the_primarys_checksum(
    tmp_path: Path, reseeded_store: tuple[Path, Path, Path]
) -> None:
    a, b, url = reseeded_store
    cut_off_and_reseed(tmp_path, a, url)
    status = ok(tsadmin(b, "replica", "status", "m", "--format", "json")).json()
    assert status["state"] == "needs rebuild", status
    followed = ok(tsadmin(b, "follow", str(url), "--db", "m", "--once"))
    assert "rebuilt from snapshot" in followed.err and "reseeded" in followed.err
    assert checksum(b, "m") == checksum(a, "m")
    status = ok(tsadmin(b, "replica", "status", "m", "--format", "json")).json()
    assert status["state"] == "ok", status
    # and it follows on from there
    ok(tsadmin(a, "ingest", "lp", "m", "-", stdin=lines(9)))
    ok(tsadmin(b, "follow", str(url), "--db", "m", "--once"))
    assert checksum(b, "m") == checksum(a, "m")


def test_promote_of_a_standby_behind_a_reseed_rebuilds_first(
    tmp_path: Path, reseeded_store: tuple[Path, Path, Path]
) -> None:
    a, b, url = reseeded_store
    cut_off_and_reseed(tmp_path, a, url)
    expected = checksum(a, "m")
    report = ok(tsadmin(b, "promote", "m", "--format", "json")).json()
    assert report["rebuilt_from"] and report["gave_up"] is None
    assert checksum(b, "m") == expected


def test_promote_rebuilds_from_a_reseed_snapshot_whose_marker_was_never_written(
    tmp_path: Path, reseeded_store: tuple[Path, Path, Path]
) -> None:
    a, b, url = reseeded_store
    cut_off_and_reseed(tmp_path, a, url, marker=False)
    expected = checksum(a, "m")
    ok(tsadmin(b, "promote", "m"))
    assert checksum(b, "m") == expected


def test_a_live_follower_rebuilds_from_a_newer_snapshot_no_segment_continues(
    tmp_path: Path, reseeded_store: tuple[Path, Path, Path]
) -> None:
    a, b, url = reseeded_store
    cut_off_and_reseed(tmp_path, a, url, marker=False)
    follower = subprocess.Popen(
        [sys.executable, "-m", "tsadmin", "--data-dir", str(b), "follow", str(url), "--db", "m"],
        env={**CLEAN_ENV, **FAST, "TSADMIN_STALE_GRACE": "0.5"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stderr is not None
        line = follower.stderr.readline()  # the follower says so as it happens
        assert "rebuilt from snapshot" in line and "no log segment continues" in line, line
    finally:
        follower.terminate()
        follower.wait(timeout=30)
    assert follower.returncode == 0
    assert checksum(b, "m") == checksum(a, "m")


def test_with_no_usable_snapshot_follow_stops_status_says_why_promote_refuses(
    tmp_path: Path, reseeded_store: tuple[Path, Path, Path]
) -> None:
    a, b, url = reseeded_store
    cut_off_and_reseed(tmp_path, a, url)
    marker = next((url / "log" / "0000000001").glob("*.reseed"))
    snapshot = json_of(marker)["snapshot"]
    (url / "snapshots" / snapshot / "manifest.json").unlink()  # the reseed snapshot is lost
    followed = tsadmin(b, "follow", str(url), "--db", "m", "--once")
    assert followed.code == 5, followed.err
    assert "cannot be continued" in followed.err and "reseeded" in followed.err
    status = ok(tsadmin(b, "replica", "status", "m", "--format", "json")).json()
    assert status["state"] == "needs rebuild" and "cannot be continued" in status["error"]
    refused = tsadmin(b, "promote", "m")
    assert refused.code == 5 and "behind what its store holds" in refused.err, refused.err
    assert "Nothing was changed" in refused.err
    assert not list((url / "epochs").glob("*.fence"))  # refused before fencing anyone
    forced = ok(tsadmin(b, "promote", "m", "--force", "--format", "json")).json()
    assert forced["gave_up"]["from_lsn"] == forced["branch_lsn"] + 1
    assert "gave up LSNs" in " ".join(forced["notes"])
    assert batches_in(b, "m") == {1: 10}


def json_of(path: Path) -> dict[str, object]:
    import json

    value = json.loads(path.read_bytes())
    assert isinstance(value, dict)
    return value


# -- byrl through a promotion -------------------------------------------------------------------


def held_ingest(a: Path, gate: Path, point: str, batch: int) -> subprocess.Popen[str]:
    """A byrl ingest whose shipper stops at ``point`` until the test says go."""
    gate.mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "tsadmin", "--data-dir", str(a), "ingest", "lp", "m", "-"],
        env={
            **CLEAN_ENV,
            "TSADMIN_SHIP_HOLD": "1",  # only the byrl round ships
            "TSADMIN_FAULTS": f"gate={gate};pause@{point}",
        },
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def byrl_pair(tmp_path: Path) -> tuple[Path, Path, Path]:
    a, b = sites(tmp_path)
    url = tmp_path / "store"
    ok(tsadmin(a, "db", "create", "m"))
    ok(tsadmin(a, "replica", "add", "m", str(url)))
    ok(tsadmin(a, "ingest", "lp", "m", "-", stdin=lines(1)))
    ok(tsadmin(a, "config", "set", "m", "wal_level", "byrl"))
    ok(tsadmin(b, "follow", str(url), "--db", "m", "--once"))
    return a, b, url


def promote_during(tmp_path: Path, point: str, batch: int) -> tuple[int, str, dict[int, int]]:
    """A byrl write held at ``point`` while site B is promoted; its exit code, stderr, and
    the batches the new primary holds."""
    a, b, _ = byrl_pair(tmp_path)
    gate = tmp_path / "gate"
    writer = held_ingest(a, gate, point, batch)
    assert writer.stdin is not None
    writer.stdin.write(lines(batch))
    writer.stdin.close()
    writer.stdin = None
    wait_for(gate / f"{point}.reached")
    ok(tsadmin(b, "promote", "m"))
    (gate / f"{point}.go").write_bytes(b"")
    _out, err = writer.communicate(timeout=120)
    return writer.returncode, err, batches_in(b, "m")


def test_byrl_upload_landing_after_the_promotion_is_not_acknowledged(tmp_path: Path) -> None:
    code, err, on_b = promote_during(tmp_path, "ship.before_upload", 2)
    assert code == 9 and "fenced" in err, (code, err)  # never acknowledged
    assert 2 not in on_b


def test_byrl_upload_landed_before_the_fence_is_on_the_new_primary(tmp_path: Path) -> None:
    code, err, on_b = promote_during(tmp_path, "ship.before_confirm", 2)
    assert code == 9 and "fenced" in err, (code, err)  # its confirmation came too late
    assert on_b.get(2) == 10  # but the promotion drained it: nothing half-applied


@pytest.mark.parametrize("seed", range(4))
def test_byrl_acknowledged_writes_survive_promotions_at_random_moments(
    tmp_path: Path, seed: int
) -> None:
    """A writer commits byrl batches in a loop while the standby is promoted at a random
    moment: every acknowledged batch is whole on the new primary."""
    rng = random.Random(seed)
    a, b, _ = byrl_pair(tmp_path)
    acked: list[int] = []
    writer = subprocess.Popen(
        [sys.executable, "-c", LOOP_CHILD, str(a / "m")],
        env={**CLEAN_ENV, "TSADMIN_SHIP_INTERVAL": "0.05", "PYTHONPATH": os.getcwd()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    for _ in range(rng.randint(2, 12)):
        acked.append(int(writer.stdout.readline().split()[1]))
    ok(tsadmin(b, "promote", "m"))
    for line in writer.stdout:
        if line.startswith("ACK"):
            acked.append(int(line.split()[1]))
    writer.wait(timeout=120)
    _ = writer.stderr.read() if writer.stderr else ""
    on_b = batches_in(b, "m")
    missing = [k for k in acked if on_b.get(k) != 10]
    assert not missing, (missing, sorted(on_b))
    assert writer.returncode == 9  # fenced: it stopped acknowledging


LOOP_CHILD = """
import sys, pyarrow as pa
from pathlib import Path
from engine.db.database import Database, Batch
from engine.errors import EngineError
db = Database.open(Path(sys.argv[1]), "m")
T0 = 1_700_000_000_000_000_000
try:
    for k in range(100, 100000):
        rows = pa.table({"ts": pa.array([T0 + k * 1000 + i for i in range(10)], pa.int64()),
                         "host": [f"h{i}" for i in range(10)],
                         "usage": [float(k)] * 10, "batch": pa.array([k] * 10, pa.int64())})
        db.write([Batch("cpu", rows, ["host"])])
        print("ACK", k, flush=True)
except EngineError as exc:
    print("REFUSED", exc, file=sys.stderr, flush=True)
    db.abandon()
    sys.exit(9)
"""


# -- what serve says about it -------------------------------------------------------------------


def test_serve_logs_a_reseed_and_counts_it_in_metrics(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from tests.test_serve import get, post, serving

    a, _ = sites(tmp_path)
    url = tmp_path / "store"
    ok(tsadmin(a, "db", "create", "m", "--checkpoint-interval", "1s"))
    ok(tsadmin(a, "replica", "add", "m", str(url)))
    ok(tsadmin(a, "config", "set", "m", "replica_hold_bytes", "1MiB"))
    ok(tsadmin(a, "ingest", "lp", "m", "-", stdin=lines(1)))
    aside = tmp_path / "store-aside"
    with serving(a, "--format", "json", env=FAST) as server:
        url.rename(aside)
        url.write_text("not a directory")
        for k in range(2, 5):
            answer = post(f"{server.url}/write?db=m", big_lines(k, 20_000).encode())
            assert answer.status == 204, answer.body
        deadline = time.monotonic() + 60
        status: dict[str, object] = {}
        while status.get("state") != "needs reseed":  # the next checkpoint drops the WAL
            assert time.monotonic() < deadline, status
            status = ok(tsadmin(a, "replica", "status", "m", "--format", "json")).json()
            status = status["replicas"][0]
        url.unlink()
        aside.rename(url)
        reseeds = 0.0
        while reseeds < 1:
            assert time.monotonic() < deadline
            families = text_string_to_metric_families(get(f"{server.url}/metrics").body.decode())
            reseeds = sum(
                s.value
                for f in families
                if f.name == "tsadmin_replica_reseeds"
                for s in f.samples
                if s.name.endswith("_total")
            )
        assert server.stop() == 0
    events = [json.loads(x) for x in server.stderr.splitlines() if x.startswith("{")]
    said = [e["message"] for e in events if e.get("event") == "replication"]
    assert any("needs a reseed" in m for m in said), server.stderr
    assert any("was reseeded from snapshot" in m for m in said), server.stderr


# -- a store that stays small --------------------------------------------------------------------


def test_periodic_snapshots_and_the_window_keep_the_store_small_and_restorable(
    tmp_path: Path,
) -> None:
    from engine.replication import storekeeping
    from engine.settings import Settings
    from engine.stores import open_store

    a, b = sites(tmp_path)
    url = tmp_path / "store"
    ok(tsadmin(a, "db", "create", "m"))
    ok(tsadmin(a, "replica", "add", "m", str(url)))
    ok(tsadmin(a, "config", "set", "m", "replica_snapshot_bytes", "64KiB"))
    ok(tsadmin(a, "config", "set", "m", "replica_pitr_window", "1h"))
    said = ""
    for k in range(1, 6):
        ok(tsadmin(a, "ingest", "lp", "m", "-", stdin=big_lines(k, 4_000)))
        said += ok(tsadmin(a, "replicate", "m", "--once")).err
    status = ok(tsadmin(a, "replica", "status", "m", "--format", "json")).json()["replicas"][0]
    assert status["snapshots"] >= 4, (status, said)  # one per 64 KiB of log shipped
    assert "bytes of log shipped since snapshot" in said
    # an hour later the window holds the newest snapshot only, and the log after it
    store = open_store(str(url))
    uuid = status_uuid(a)
    settings = Settings.build(replica_pitr_window="1h")
    pruned = storekeeping.prune_store(store, uuid, settings, now=time.time() + 7200)
    assert pruned.snapshots_deleted == status["snapshots"] - 1, pruned
    after = ok(tsadmin(a, "replica", "status", "m", "--format", "json")).json()["replicas"][0]
    assert after["snapshots"] == 1 and after["store_bytes"] < status["store_bytes"] / 2
    # what is left restores the latest state (by time) and builds a standby equal to A
    expected = checksum(a, "m")
    report = ok(
        tsadmin(b, "restore", str(url), "--db", "latest", "--to-time", "now", "--format", "json")
    ).json()
    assert report["snapshot"] == after_newest_snapshot(url)
    assert checksum(b, "latest") == expected
    ok(tsadmin(b, "follow", str(url), "--db", "m", "--once"))
    assert checksum(b, "m") == expected
    early = tsadmin(b, "restore", str(url), "--db", "early", "--to-lsn", "3")
    assert early.code == 2 and "no snapshot at or before" in early.err


def status_uuid(a: Path) -> str:
    return str(ok(tsadmin(a, "replica", "status", "m", "--format", "json")).json()["uuid"])


def after_newest_snapshot(url: Path) -> str:
    names = [p.parent.name for p in (url / "snapshots").glob("*/manifest.json")]
    assert len(names) == 1, names
    return names[0]


def test_a_restore_to_a_time_after_the_last_shipped_commit_reaches_the_end_of_the_log(
    tmp_path: Path,
) -> None:
    a, b = sites(tmp_path)
    url = tmp_path / "store"
    ok(tsadmin(a, "db", "create", "m"))
    ok(tsadmin(a, "replica", "add", "m", str(url)))
    for k in range(1, 4):
        ok(tsadmin(a, "ingest", "lp", "m", "-", stdin=lines(k)))
    # "now" lies after the last shipped commit (the primary closed cleanly)
    result = ok(
        tsadmin(b, "restore", str(url), "--db", "c", "--to-time", "now", "--format", "json")
    )
    assert result.json()["reached_lsn"] > 0 and "ends at" in result.err
    assert checksum(b, "c") == checksum(a, "m")
    future = tsadmin(b, "restore", str(url), "--db", "d", "--to-time", "now+1h")
    assert future.code == 2 and "in the future" in future.err, future.err


def test_compaction_merges_the_log_and_followers_at_every_position_continue(
    tmp_path: Path,
) -> None:
    """Many small segments merged into one: a standby that applied some of them, one at
    the snapshot, and a point-in-time restore inside the merged range all continue."""
    from engine.replication import storekeeping
    from engine.stores import open_store

    a, b = sites(tmp_path)
    url = tmp_path / "store"
    ok(tsadmin(a, "db", "create", "m"))
    ok(tsadmin(a, "replica", "add", "m", str(url)))
    ok(tsadmin(b, "follow", str(url), "--db", "fresh_at_snapshot", "--once"))
    for k in range(1, 4):
        ok(tsadmin(a, "ingest", "lp", "m", "-", stdin=lines(k)))
    ok(tsadmin(b, "follow", str(url), "--db", "m", "--once"))  # applied 1-3
    for k in range(4, 9):
        ok(tsadmin(a, "ingest", "lp", "m", "-", stdin=lines(k)))
    log = url / "log" / "0000000001"
    before = sorted(p.name for p in log.glob("*.tslog"))
    assert len(before) >= 8
    merged = storekeeping.compact_log(open_store(str(url)), age=0)
    after = sorted(p.name for p in log.glob("*.tslog"))
    assert merged == len(before) - 1 and len(after) == 2, after  # the newest stays as it was
    assert any(name.endswith(".c.tslog") for name in after)
    expected = checksum(a, "m")
    ok(tsadmin(b, "follow", str(url), "--db", "m", "--once"))
    assert checksum(b, "m") == expected
    ok(tsadmin(b, "follow", str(url), "--db", "fresh_at_snapshot", "--once"))
    assert checksum(b, "fresh_at_snapshot") == expected
    ok(tsadmin(b, "follow", str(url), "--db", "new", "--once"))
    assert checksum(b, "new") == expected
    # the shipper goes on linking to the segment it shipped last
    ok(tsadmin(a, "ingest", "lp", "m", "-", stdin=lines(9)))
    ok(tsadmin(b, "follow", str(url), "--db", "m", "--once"))
    assert checksum(b, "m") == checksum(a, "m")
    # a restore to a point inside the merged range stops exactly there
    status = ok(tsadmin(a, "replica", "status", "m", "--format", "json")).json()
    assert status["replicas"][0]["state"] == "ok"
    result = ok(
        tsadmin(b, "restore", str(url), "--db", "mid", "--to-lsn", "12", "--format", "json")
    )
    assert result.json()["reached_lsn"] <= 12
    assert sorted(batches_in(b, "mid")) == list(range(1, len(batches_in(b, "mid")) + 1))


def test_commands_that_make_a_database_start_from_a_data_dir_that_does_not_exist(
    tmp_path: Path,
) -> None:
    """follow, restore and a point-in-time restore on a new host (issue 25: they refused a
    missing data dir, and the hint sent the operator to db create): the data dir is made
    owner-only, as db create makes it; a typo still fails for the commands that read."""
    a, _ = sites(tmp_path)
    url = tmp_path / "store"
    ok(tsadmin(a, "db", "create", "m"))
    ok(tsadmin(a, "replica", "add", "m", str(url)))
    ok(tsadmin(a, "ingest", "lp", "m", "-", stdin=lines(1)))
    ok(tsadmin(a, "backup", "create", "m", "--to", str(tmp_path / "bk"), "--name", "full"))
    for new, args in (
        ("follow-host", ("follow", str(url), "--db", "m", "--once")),
        ("restore-host", ("restore", str(tmp_path / "bk" / "full"))),
        ("pitr-host", ("restore", str(url), "--db", "m", "--to-time", "now")),
    ):
        data = tmp_path / new / "var-lib-tsadmin"
        ok(tsadmin(data, *args))
        assert data.stat().st_mode & 0o777 == 0o700
        assert checksum(data, "m") == checksum(a, "m")
    missing = tsadmin(tmp_path / "typo", "db", "list")
    assert missing.code == 1 and "does not exist" in missing.err
    dry = tsadmin(tmp_path / "dry-host", "restore", str(tmp_path / "bk" / "full"), "--dry-run")
    assert dry.code == 0 and not (tmp_path / "dry-host").exists()
