"""The S3 store: ``s3://bucket/prefix`` on any S3-compatible object store.

Client: boto3 (credentials, region, profile and ``AWS_ENDPOINT_URL`` from the
standard AWS environment; nothing secret is ever taken on the command line). Chosen
for the three things archives need and botocore does well: conditional writes
(``If-None-Match: *`` on PutObject, the commit of a manifest and later of a
promotion), multipart uploads with bounded memory (``upload_file``: parts of
``PART_BYTES``, a few at a time), and ranged reads; plus its standard retry mode
(backoff with jitter on throttling, 5xx and dropped connections). Request
checksums are sent only where S3 requires them: our objects carry their own.

An object is visible only once PutObject or CompleteMultipartUpload succeeded, so a
killed upload never shows as an object (the parts of an unfinished multipart
upload are the store's to expire: a lifecycle rule, see the README).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.errors import NotFound, StoreUnavailable
from engine.stores.base import ObjectInfo, Store

PART_BYTES = 16 << 20
CONCURRENCY = 4


def _connect(where: str) -> tuple[Any, Any]:
    """A boto3 S3 client and the transfer settings of multipart uploads."""
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        # checksums only where an operation requires one: every object we write
        # carries its own digests (SHA-256 in manifests and log segments, CRC32C
        # per WAL record), checked when read; botocore's default CRC on every
        # request costs CPU on the byrl path and trips S3-compatible stores that
        # do not know its trailing-checksum encoding
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    try:
        client = boto3.client("s3", config=config)
    except BotoCoreError as exc:  # partial credentials, a bad region or profile
        raise StoreUnavailable(
            f"{where}: {exc}",
            hint="set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile), "
            "and AWS_REGION",
        ) from None
    transfer = TransferConfig(
        multipart_threshold=PART_BYTES,
        multipart_chunksize=PART_BYTES,
        max_concurrency=CONCURRENCY,
    )
    return client, transfer


class S3Store(Store):
    def __init__(
        self, bucket: str, prefix: str, *, connection: tuple[Any, Any] | None = None
    ) -> None:
        """The store at ``s3://bucket/prefix``; over ``connection`` (a client and its
        transfer settings) when given: a store's children share their parent's, one
        connection pool and one loaded service model (a new boto3 client costs ~0.2 s)."""
        self.bucket = bucket
        self.prefix = prefix
        self._connection = connection or _connect(self.describe())
        self._client, self._transfer = self._connection

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def child(self, prefix: str) -> S3Store:
        return S3Store(self.bucket, self._key(prefix.strip("/")), connection=self._connection)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, action: Any, *args: Any, **kwargs: Any) -> Any:
        """``action(*args, **kwargs)``; failures of the store are typed engine errors."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return action(*args, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(f"no {what} in {self.describe()}") from None
            raise StoreUnavailable(
                f"{self.describe()}: {what}: {code or 'refused'} ({exc})",
                hint=_hint(code),
            ) from None
        except BotoCoreError as exc:
            raise StoreUnavailable(
                f"{self.describe()}: {what}: {exc}",
                hint="check AWS_ENDPOINT_URL, the network and the credentials",
            ) from None

    def list(self, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        extra = {"StartAfter": self._key(start_after)} if start_after else {}
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix), **extra
        )
        cut = len(self.prefix) + 1 if self.prefix else 0
        for page in self._call("list", list, pages):
            for item in page.get("Contents", []):
                modified = item["LastModified"].timestamp()
                yield ObjectInfo(item["Key"][cut:], int(item["Size"]), modified)

    def read(self, key: str) -> bytes:
        reply = self._call(key, self._client.get_object, Bucket=self.bucket, Key=self._key(key))
        return bytes(self._call(key, reply["Body"].read))

    def read_range(self, key: str, start: int, length: int) -> bytes:
        reply = self._call(
            key,
            self._client.get_object,
            Bucket=self.bucket,
            Key=self._key(key),
            Range=f"bytes={start}-{start + length - 1}",
        )
        return bytes(self._call(key, reply["Body"].read))

    def download(self, key: str, target: Path) -> None:
        from engine.io.fileio import IO

        IO.mkdirs(target.parent)
        self._call(
            key,
            self._client.download_file,
            self.bucket,
            self._key(key),
            str(target),
            Config=self._transfer,
        )

    def write(self, key: str, data: bytes) -> None:
        self._call(key, self._client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data)

    def upload(self, key: str, source: Path, *, consume: bool = False) -> None:
        self._call(
            key,
            self._client.upload_file,
            str(source),
            self.bucket,
            self._key(key),
            Config=self._transfer,
        )

    def write_if_absent(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*"
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            return bool(self._call(key, _raise, exc))
        except Exception as exc:  # connection failures: typed like every other call
            return bool(self._call(key, _raise, exc))
        return True

    def exists(self, key: str) -> bool:
        try:
            self._call(key, self._client.head_object, Bucket=self.bucket, Key=self._key(key))
        except NotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        self._call(key, self._client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def create(self) -> None:
        pass  # a bucket is the operator's to make: a missing one fails every request

    def require_root(self) -> None:
        pass  # a missing bucket fails the request that meets it (NoSuchBucket)


def _raise(exc: BaseException) -> None:
    raise exc


def _hint(code: str) -> str:
    if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
        return "check the credentials and that they may list, get, put and delete on the prefix"
    if code == "NoSuchBucket":
        return "create the bucket, or fix the URL"
    return "check AWS_ENDPOINT_URL, AWS_REGION and the credentials"
