"""The store interface, the same contract for the local file system and for S3 (a real
moto server over HTTP): atomic writes, write-if-absent, listing, ranged reads, large
multipart uploads and streaming downloads, and a store that cannot be reached."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import InvalidArgument, NotFound, StoreUnavailable
from engine.stores import open_store
from engine.stores.base import Store
from tests.conftest import S3_SERVERS, s3_env_of
from tests.servers import make_bucket


@pytest.fixture(params=["local", *S3_SERVERS])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    if request.param == "local":
        local = open_store(str(tmp_path / "store"))
        local.create()  # what replica add and backup create do when they configure one
        return local
    env = s3_env_of(request, request.param)
    make_bucket(env, "backups")
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the client reads the standard AWS environment
    return open_store(f"s3://backups/{tmp_path.name}/nightly")


def test_a_local_store_is_made_only_by_create(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "volume" / "store"))
    with pytest.raises(StoreUnavailable, match="does not exist"):
        store.write("a/manifest.json", b"{}")
    with pytest.raises(StoreUnavailable, match="does not exist"):
        store.child("a").write_if_absent("manifest.json", b"{}")
    assert not (tmp_path / "volume").exists()
    store.create()
    store.child("a").write("manifest.json", b"{}")
    assert store.read("a/manifest.json") == b"{}"


def test_write_read_list_delete(store: Store) -> None:
    store.write("a/manifest.json", b"{}")
    store.write("a/t/000001.parquet", b"x" * 100)
    store.write("b/manifest.json", b"{1}")
    store.write("a/manifest.json", b"{2}")  # replaced whole
    assert store.read("a/manifest.json") == b"{2}"
    assert [(o.key, o.size) for o in store.list("a/")] == [
        ("a/manifest.json", 3),
        ("a/t/000001.parquet", 100),
    ]
    assert store.read_range("a/t/000001.parquet", 90, 50) == b"x" * 10
    store.delete("a/manifest.json")
    store.delete("a/manifest.json")  # gone already: fine
    with pytest.raises(NotFound):
        store.read("a/manifest.json")
    assert [o.key for o in store.list()] == ["a/t/000001.parquet", "b/manifest.json"]


def test_write_if_absent_commits_once(store: Store) -> None:
    assert store.write_if_absent("x/manifest.json", b"first")
    assert not store.write_if_absent("x/manifest.json", b"second")
    assert store.read("x/manifest.json") == b"first"


def test_large_objects_stream_both_ways(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "big.parquet"
    block = os.urandom(1 << 20)
    source.write_bytes(block * 40)  # 40 MiB: three parts on S3
    store.upload("big/000001.parquet", source)
    target = tmp_path / "back" / "big.parquet"
    store.download("big/000001.parquet", target)
    assert target.read_bytes() == source.read_bytes()
    assert [o.size for o in store.list("big/")] == [40 << 20]
    assert store.read_range("big/000001.parquet", (1 << 20) - 2, 4) == block[-2:] + block[:2]


def test_local_store_hides_objects_being_written(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/store")
    store.create()
    store.write("a/manifest.json", b"{}")
    (tmp_path / "store" / "a" / ".000001.parquet.tmp-4242").write_bytes(b"partial")
    assert [o.key for o in store.list()] == ["a/manifest.json"]
    with pytest.raises(InvalidArgument):
        store.read("../escape")


def test_unreachable_store_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    store = open_store("s3://backups/x")
    with pytest.raises(StoreUnavailable, match="s3://backups/x"):
        store.write("a", b"1")
    with pytest.raises(StoreUnavailable):
        list(store.list())


def test_urls() -> None:
    with pytest.raises(InvalidArgument, match="unknown store"):
        open_store("gs://bucket/x")
    with pytest.raises(InvalidArgument, match="no bucket"):
        open_store("s3:///x")
    assert open_store("s3://b/p/q/").describe() == "s3://b/p/q"


def test_a_backup_finishing_while_another_claims_its_name(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two backups pick one name in the same second; the first publishes completely in
    the moment the second is about to claim it. The second must see the finished
    archive and take the next name, not upload into a committed name (CI once caught
    the check-then-claim order losing that race)."""
    from engine.archive import store as archivestore

    def staged(label: str) -> Path:
        staging = tmp_path / f"staging-{label}"
        (staging / "t").mkdir(parents=True)
        (staging / "t" / "000001.parquet").write_bytes(label.encode() * 10)
        (staging / "manifest.json").write_bytes(f'{{"by": "{label}"}}'.encode())
        return staging

    first, second = staged("first"), staged("second")
    claim_for_real = store.write_if_absent
    raced = []

    def claim_after_the_other_finished(key: str, data: bytes) -> bool:
        if key.endswith("/.claim") and not raced:
            raced.append(key)
            monkeypatch.setattr(store, "write_if_absent", claim_for_real)
            assert archivestore.publish(store, first, "m-1", next_name=None) == "m-1"
            monkeypatch.setattr(store, "write_if_absent", claim_after_the_other_finished)
        return claim_for_real(key, data)

    monkeypatch.setattr(store, "write_if_absent", claim_after_the_other_finished)
    name = archivestore.publish(store, second, "m-1", next_name=lambda: "m-2")
    assert raced and name == "m-2"
    assert archivestore.archive_names(store) == ["m-1", "m-2"]
    assert store.read("m-1/manifest.json") == b'{"by": "first"}'
    assert store.read("m-2/t/000001.parquet") == b"second" * 10
    assert not [o.key for o in store.list() if o.key.endswith(".claim")]


def test_a_local_listing_skips_what_another_process_deletes_while_it_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three backups in one second: one gave back its claim (``NAME/.claim``) between
    another's directory read and its stat of that entry, and the other failed with
    "internal error: FileNotFoundError". The deletion is made to land in exactly that
    window: after the directory is read, before its entries are looked at."""
    store = open_store(str(tmp_path / "store"))
    store.create()
    for key in ("a/x", "b/.claim", "b/y", "c/z"):
        store.write(key, b"1")
    doomed = {tmp_path / "store" / "b" / ".claim", tmp_path / "store" / "c"}
    real_scandir = os.scandir

    class ReadThenDeleted:
        """``os.scandir`` whose directory is read at once, after which what
        ``doomed`` names in it is deleted, as another process would."""

        def __init__(self, path: str) -> None:
            with real_scandir(path) as entries:
                self.entries = list(entries)
            for gone in (d for d in doomed if d.parent == Path(path)):
                if gone.is_dir():
                    for child in gone.iterdir():
                        child.unlink()
                    gone.rmdir()
                else:
                    gone.unlink()

        def __iter__(self) -> Iterator[os.DirEntry[str]]:
            return iter(self.entries)

        def __enter__(self) -> ReadThenDeleted:
            return self

        def __exit__(self, *_: object) -> None:
            pass

    monkeypatch.setattr("engine.stores.local.os.scandir", ReadThenDeleted)
    assert [info.key for info in store.list()] == ["a/x", "b/y"]
