"""Backups to object storage, end to end: the real CLI against a real S3-protocol server
(moto, over HTTP on 127.0.0.1), configured only through the standard AWS environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from tests.conftest import CLEAN_ENV, ROOT, S3_SERVERS, run_cli, s3_env_of
from tests.servers import make_bucket

T0 = 1_732_400_000_000_000_000


@pytest.fixture(scope="module", params=S3_SERVERS)
def s3(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Each test against moto and against a real SeaweedFS."""
    env = s3_env_of(request, request.param)
    make_bucket(env, "backups")
    yield env


@pytest.fixture(scope="module")
def real_s3(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """SeaweedFS alone, for the end-to-end runs (a cron script, killed commands): every
    store call they make is held against both servers by the tests above, and each
    run is a dozen processes."""
    env = s3_env_of(request, "seaweedfs")
    make_bucket(env, "backups")
    yield env


def _client(env: dict[str, str]):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )


def _keys(env: dict[str, str], prefix: str) -> list[str]:
    found = _client(env).list_objects_v2(Bucket="backups", Prefix=prefix).get("Contents", [])
    return sorted(item["Key"] for item in found)


def _load(data_dir: Path, db: str, lines: str, env: dict[str, str]) -> None:
    if run_cli(data_dir, "db", "show", db, env=env).code != 0:
        assert run_cli(data_dir, "db", "create", db, env=env).code == 0
    done = run_cli(data_dir, "ingest", "lp", db, "-", stdin=lines, env=env)
    assert done.code == 0, done.err


def _checksum(data_dir: Path, db: str, env: dict[str, str]) -> str:
    out = run_cli(data_dir, "--format", "json", "db", "checksum", db, env=env)
    assert out.code == 0, out.err
    return str(out.json()["sha256"])


LINES = "".join(
    f"cpu,host=h{i % 7},dc=z{i % 3} usage={i * 0.5},n={i}i {T0 + i * 10**9}\n"
    f"mem,host=h{i % 5} free={i}i {T0 + i * 10**9}\n"
    for i in range(2000)
)
SOME_LINES = "".join(LINES.splitlines(keepends=True)[:200])


def test_full_and_incremental_round_trip_through_s3(
    s3: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    store = f"s3://backups/{tmp_path.name}/nightly"
    _load(data_dir, "m", LINES, s3)
    full = run_cli(data_dir, "--format", "json", "backup", "create", "m", "--to", store, env=s3)
    assert full.code == 0, full.err
    _load(data_dir, "m", f"cpu,host=h1,dc=z1 usage=9.5 {T0}\nmem,host=new free=1i {T0}\n", s3)
    incr = run_cli(
        data_dir, "--format", "json", "backup", "create", "m", "--to", store, "--incremental",
        env=s3,
    )  # fmt: skip
    assert incr.code == 0, incr.err
    assert incr.json()["base"] == Path(full.json()["archive"]).name
    listed = run_cli(data_dir, "--format", "json", "backup", "list", store, env=s3).json()
    assert [a["incremental"] for a in listed] == [False, True]
    archive = incr.json()["archive"]
    assert archive.startswith(store + "/")
    verified = run_cli(data_dir, "--format", "json", "backup", "verify", archive, env=s3)
    assert verified.code == 0 and verified.json()["chain"] == [a["name"] for a in listed]
    restored = run_cli(data_dir, "restore", archive, "--db", "copy", env=s3)
    assert restored.code == 0, restored.err
    assert _checksum(data_dir, "copy", s3) == _checksum(data_dir, "m", s3)
    # the Parquet files, read straight from the bucket by pyarrow's own S3 reader
    manifest = json.loads(
        _client(s3).get_object(Bucket="backups", Key=f"{tmp_path.name}/nightly/"
                               f"{listed[0]['name']}/manifest.json")["Body"].read()
    )  # fmt: skip
    fs = pafs.S3FileSystem(
        access_key="test", secret_key="test", region="us-east-1",
        endpoint_override=s3["AWS_ENDPOINT_URL"],
    )  # fmt: skip
    paths = [
        f"backups/{tmp_path.name}/nightly/{listed[0]['name']}/{f['path']}"
        for f in manifest["tables"]["cpu"]["files"]
    ]
    assert sum(pq.read_table(p, filesystem=fs).num_rows for p in paths) == 2000


def test_the_same_archive_restores_identically_from_disk_and_from_s3(
    s3: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    _load(data_dir, "m", LINES, s3)
    local = tmp_path / "local"
    made = run_cli(data_dir, "--format", "json", "backup", "create", "m", "--to", str(local),
                   "--name", "same", env=s3)  # fmt: skip
    assert made.code == 0, made.err
    remote = f"s3://backups/{tmp_path.name}"
    again = run_cli(data_dir, "backup", "create", "m", "--to", remote, "--name", "same", env=s3)
    assert again.code == 0, again.err
    assert run_cli(data_dir, "restore", str(local / "same"), "--db", "a", env=s3).code == 0
    assert run_cli(data_dir, "restore", f"{remote}/same", "--db", "b", env=s3).code == 0
    assert (
        _checksum(data_dir, "a", s3) == _checksum(data_dir, "b", s3) == _checksum(data_dir, "m", s3)
    )
    taken = run_cli(data_dir, "backup", "create", "m", "--to", remote, "--name", "same", env=s3)
    assert taken.code == 1 and "already exists" in taken.err


def test_a_flipped_byte_in_the_bucket_is_caught_and_refused(
    s3: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    _load(data_dir, "m", LINES, s3)
    remote = f"s3://backups/{tmp_path.name}"
    made = run_cli(data_dir, "--format", "json", "backup", "create", "m", "--to", remote,
                   "--name", "a1", env=s3)  # fmt: skip
    assert made.code == 0, made.err
    client = _client(s3)
    key = next(k for k in _keys(s3, f"{tmp_path.name}/a1/") if k.endswith(".parquet"))
    body = bytearray(client.get_object(Bucket="backups", Key=key)["Body"].read())
    body[len(body) // 2] ^= 0x01
    client.put_object(Bucket="backups", Key=key, Body=bytes(body))
    verified = run_cli(data_dir, "backup", "verify", f"{remote}/a1", env=s3)
    assert verified.code == 3 and "SHA-256" in verified.out + verified.err
    before = _checksum(data_dir, "m", s3)
    refused = run_cli(data_dir, "restore", f"{remote}/a1", "--mode", "replace", "--yes", env=s3)
    assert refused.code == 3, refused.err
    assert _checksum(data_dir, "m", s3) == before  # the target untouched


def test_a_backup_killed_mid_upload_is_never_listed_and_prune_clears_it(
    s3: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    _load(data_dir, "m", LINES, s3)
    remote = f"s3://backups/{tmp_path.name}"
    assert (
        run_cli(data_dir, "backup", "create", "m", "--to", remote, "--name", "good", env=s3).code
        == 0
    )
    killed = run_cli(
        data_dir, "backup", "create", "m", "--to", remote, "--name", "doomed",
        env={**s3, "TSADMIN_FAULTS": "crash@archive.uploaded:1"},
    )  # fmt: skip
    assert killed.code == -9
    assert any(k.startswith(f"{tmp_path.name}/doomed/") for k in _keys(s3, tmp_path.name))
    listed = run_cli(data_dir, "--format", "json", "backup", "list", remote, env=s3).json()
    assert [a["name"] for a in listed] == ["good"]
    kept = run_cli(data_dir, "--format", "json", "backup", "prune", remote, "--keep-last", "1",
                   env=s3).json()  # fmt: skip
    assert kept["leftovers_removed"] == []  # younger than the grace period: maybe still running
    pruned = run_cli(data_dir, "--format", "json", "backup", "prune", remote, "--keep-last", "1",
                     "--grace", "0s", env=s3)  # fmt: skip
    assert pruned.code == 0 and pruned.json()["leftovers_removed"] == ["doomed"]
    assert not any("/doomed/" in k for k in _keys(s3, tmp_path.name))
    assert run_cli(data_dir, "backup", "verify", f"{remote}/good", env=s3).code == 0


def test_prune_on_s3_keeps_the_newest_and_their_bases(
    s3: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    _load(data_dir, "m", SOME_LINES, s3)
    remote = f"s3://backups/{tmp_path.name}"
    for name in ("b1", "b2", "b3"):
        assert (
            run_cli(data_dir, "backup", "create", "m", "--to", remote, "--name", name, env=s3).code
            == 0
        )
    pruned = run_cli(data_dir, "--format", "json", "backup", "prune", remote, "--keep-last", "2",
                     env=s3).json()  # fmt: skip
    assert pruned["deleted"] == ["b1"] and pruned["kept"] == ["b2", "b3"]
    assert not any("/b1/" in k for k in _keys(s3, tmp_path.name))


def test_an_unreachable_store_is_one_clear_line(data_dir: Path, tmp_path: Path) -> None:
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
    }
    _load(data_dir, "m", SOME_LINES, env)
    for args in (
        ("backup", "create", "m", "--to", "s3://backups/x"),
        ("backup", "list", "s3://backups/x"),
        ("restore", "s3://backups/x/a1"),
    ):
        done = run_cli(data_dir, *args, env=env)
        assert done.code == 1, done
        assert done.err.startswith("Error: s3://backups/x") and "Traceback" not in done.err
        assert len(done.err.strip().splitlines()) <= 2
    assert os.listdir(data_dir) == ["m"]  # nothing half-written beside the database


def test_a_local_backup_killed_while_publishing_is_cleared_too(
    data_dir: Path, tmp_path: Path
) -> None:
    _load(data_dir, "m", LINES, {})
    store = tmp_path / "store"
    killed = run_cli(
        data_dir, "backup", "create", "m", "--to", str(store), "--name", "doomed",
        env={"TSADMIN_FAULTS": "crash@archive.uploaded:1"},
    )  # fmt: skip
    assert killed.code == -9 and (store / "doomed").is_dir()
    assert run_cli(data_dir, "--format", "json", "backup", "list", str(store)).json() == []
    pruned = run_cli(data_dir, "--format", "json", "backup", "prune", str(store), "--keep-last",
                     "1", "--grace", "0s")  # fmt: skip
    staged, published = pruned.json()["leftovers_removed"]  # its staging and its part-upload
    assert staged.startswith(".doomed.tmp-") and published == "doomed"
    assert sorted(os.listdir(store)) == []


def test_the_nightly_cron_script_backs_up_to_s3(
    real_s3: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    script = ROOT / "examples" / "cron" / "nightly-backup.sh"
    _load(data_dir, "metrics", SOME_LINES, real_s3)
    store = f"s3://backups/{tmp_path.name}/cron"
    env = {
        **CLEAN_ENV,
        **real_s3,
        "TSADMIN": str(Path(sys.executable).parent / "tsadmin"),
        "TSADMIN_DATA_DIR": str(data_dir),
        "FULL_BACKUP_WEEKDAY": "never",  # else the second run is full on Sundays
    }
    for _ in range(2):
        done = subprocess.run(
            ["bash", str(script), "metrics", store, "2", "0", "0"],
            capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "verified" in done.stderr and "pruned" in done.stderr
    listed = run_cli(data_dir, "--format", "json", "backup", "list", store, env=real_s3).json()
    assert [a["incremental"] for a in listed] == [False, True]
    assert not (tmp_path / "s3:").exists()  # no local directory named after the URL


def test_incremental_backups_tell_apart_rows_a_joined_key_would_confuse(
    data_dir: Path, tmp_path: Path
) -> None:
    # joined with the old separator, ("x\x1fy", "z") and ("x", "y\x1fz") were one row
    _load(data_dir, "m", f"cpu,a=x\x1fy,b=z v=1 {T0}\n", {})
    store = str(tmp_path / "store")
    assert run_cli(data_dir, "backup", "create", "m", "--to", store, "--name", "full").code == 0
    _load(data_dir, "m", f"cpu,a=x,b=y\x1fz v=1 {T0}\n", {})
    made = run_cli(data_dir, "backup", "create", "m", "--to", store, "--incremental",
                   "--name", "incr")  # fmt: skip
    assert made.code == 0, made.err
    assert run_cli(data_dir, "restore", f"{store}/incr", "--db", "copy").code == 0
    assert _checksum(data_dir, "copy", {}) == _checksum(data_dir, "m", {})


def _held_then_killed(data_dir: Path, env: dict[str, str], point: str, *args: str) -> None:
    """Run the command until it reaches the crash point ``point``, then SIGKILL it."""
    gate = Path(tempfile.mkdtemp(prefix="gate-", dir=Path(env["TMPDIR"]).parent))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tsadmin", "--data-dir", str(data_dir), *args],
        env={**CLEAN_ENV, **env, "TSADMIN_FAULTS": f"gate={gate};pause@{point}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    reached = gate / f"{point}.reached"
    while not reached.exists():
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.01)
    proc.kill()
    proc.wait()


def test_killed_commands_leave_scratch_that_the_next_one_clears(
    real_s3: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**real_s3, "TMPDIR": str(tmp)}
    scratch = tmp / f"tsadmin-{os.getuid()}"
    _load(data_dir, "m", SOME_LINES, real_s3)
    store = f"s3://backups/{tmp_path.name}/scratch"
    made = run_cli(data_dir, "--format", "json", "backup", "create", "m", "--to", store, env=env)
    assert made.code == 0, made.err
    archive = str(made.json()["archive"])
    assert os.listdir(scratch) == []  # a finished command leaves nothing

    _held_then_killed(data_dir, env, "archive.uploaded", "backup", "create", "m", "--to", store)
    assert [name.split("-")[0] for name in os.listdir(scratch)] == ["stage"]
    # a restore clears what the dead backup left before it fetches; killed, it leaves its own
    _held_then_killed(data_dir, env, "restore.before_swap", "restore", archive, "--db", "r")
    assert [name.split("-")[0] for name in os.listdir(scratch)] == ["fetch"]

    verified = run_cli(data_dir, "backup", "verify", archive, env=env)
    assert verified.code == 0, verified.err
    assert os.listdir(scratch) == []  # the dead processes' leftovers went first
    assert os.listdir(tmp) == [scratch.name]  # and nothing else was ever made in $TMPDIR
    assert not (data_dir / "r").exists()

    _held_then_killed(data_dir, env, "archive.uploaded", "backup", "create", "m", "--to", store)
    pruned = run_cli(
        data_dir, "--format", "json", "backup", "prune", store, "--keep-last", "5", env=env
    )
    assert pruned.code == 0, pruned.err
    assert [Path(p).name.split("-")[0] for p in pruned.json()["scratch_removed"]] == ["stage"]
    assert os.listdir(scratch) == []
