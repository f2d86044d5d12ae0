"""Real servers on 127.0.0.1 for the tests: a free port, waiting for a server to answer,
and an S3-protocol server (moto's server mode, in its own process, spoken to over HTTP
by the real client: no mocked client, no patched store)."""

from __future__ import annotations

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
        boto3.client("s3").create_bucket(Bucket=bucket)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
