"""Ingest input: files and pipes (a pipe read as its lines arrive), gzip and zstd
streams, cut into blocks of whole lines numbered from 1.

A damaged compressed input is bad input naming the file, never a library's
exception; a read that ends inside a zstd frame is an error, not a short input.
"""

from __future__ import annotations

import io
import os
import select
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

import zstandard

from engine.errors import BadInput, InvalidArgument, NotFound
from engine.io.fileio import IO

BLOCK_BYTES = 1 << 20
GATHER_WAIT = 0.002  # seconds a pipe may stay empty before a block is cut short
GATHER_MAX = 0.05  # seconds a block may wait, in all, for a pipe to fill it


class ReadCount(Protocol):
    """Where the bytes read are counted (the ingest report)."""

    bytes: int


def line_blocks(
    stream: BinaryIO, report: ReadCount, flush_due_in: Callable[[], float | None]
) -> Iterator[tuple[bytes | None, int]]:
    """Blocks of whole lines with the number of their first line; ``(None, n)`` when a pipe
    stayed quiet until a flush was due."""
    carry = b""
    line = 1
    for chunk in _chunks(stream, flush_due_in):
        if chunk is None:
            yield None, line
            continue
        report.bytes += len(chunk)
        data = carry + chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            carry = data
            continue
        block, carry = data[:cut], data[cut:]
        yield block, line
        line += block.count(b"\n")
    if carry:
        yield carry, line


def _chunks(stream: BinaryIO, flush_due_in: Callable[[], float | None]) -> Iterator[bytes | None]:
    """Chunks of input as they arrive; ``None`` when a pipe was idle until a flush was due.

    A pipe or FIFO is read from its descriptor after ``select()``, so a slow producer's
    lines are committed on time instead of waiting for the next chunk; files and
    decompressing streams are simply read.
    """
    fd = _pipe_descriptor(stream)
    if fd is None:
        reader = getattr(stream, "read1", stream.read)
        while chunk := reader(BLOCK_BYTES):
            yield chunk
        return
    while True:
        ready, _, _ = select.select([fd], [], [], flush_due_in())
        if not ready:
            yield None
            continue
        chunk = _read_available(fd)
        if not chunk:
            return
        yield chunk


def _read_available(fd: int) -> bytes:
    """What the pipe holds now and what follows at once, up to a block.

    A pipe gives at most its buffer (64 KiB) a read, and a fast producer refills it just
    after each read: reading only what is there at that instant made blocks of ~170 TSBS
    lines, and the vectorised parser's fixed cost per block cut a piped ingest to a
    third of a file's rate. So reading goes on while more arrives within GATHER_WAIT,
    up to a block, and for GATHER_MAX at most: a producer that pauses has written what
    it had, and a slow one's lines wait milliseconds, never until the flush interval."""
    parts = [os.read(fd, BLOCK_BYTES)]
    size = len(parts[0])
    deadline = time.monotonic() + GATHER_MAX
    while parts[-1] and size < BLOCK_BYTES:
        wait = min(GATHER_WAIT, deadline - time.monotonic())
        if wait <= 0 or not select.select([fd], [], [], wait)[0]:
            break
        parts.append(os.read(fd, BLOCK_BYTES - size))
        size += len(parts[-1])
    if not parts[-1] and len(parts) > 1:
        parts.pop()  # end of input: the next read returns b"" again and ends the loop
    return b"".join(parts)


def _pipe_descriptor(stream: BinaryIO) -> int | None:
    if not isinstance(stream, io.BufferedReader):
        return None
    fd = stream.fileno()
    return None if stat.S_ISREG(os.fstat(fd).st_mode) else fd


class CountingReader:
    """A file wrapper that counts bytes read, for progress."""

    def __init__(self, stream: BinaryIO, report: ReadCount) -> None:
        self._stream = stream
        self._report = report
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._report.bytes += len(data)
        return data

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def open_source(path: str) -> tuple[BinaryIO, int | None, Callable[[], int] | None]:
    """Open ``path`` (``-`` is standard input) for ingest, decompressing .gz and .zst.

    Returns the stream, its size on disk when known, and how far into the file on disk
    reading has got (for progress: decompressed bytes would overrun the file's size).
    """
    import gzip
    import sys

    if path == "-":
        return sys.stdin.buffer, None, None
    file = Path(path)
    if not file.exists():
        raise NotFound(f"no such input file: {path}")
    if not file.is_file():
        raise InvalidArgument(f"input {path} is not a file")
    size = file.stat().st_size
    raw = IO.guard(lambda: file.open("rb"), file)
    if file.suffix == ".gz":
        gz = _Decompressing(gzip.GzipFile(fileobj=raw), path, "gzip")
        return cast(BinaryIO, gz), size, raw.tell
    if file.suffix in (".zst", ".zstd"):
        return cast(BinaryIO, _Decompressing(_ZstdFrames(raw), path, "zstd")), size, raw.tell
    return raw, size, raw.tell


class _ZstdFrames:
    """zstd frames one after the other, decoded as they come; input that ends inside a
    frame is an error (zstandard's stream reader would end quietly, losing the rest)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._frame = zstandard.ZstdDecompressor().decompressobj()
        self._started = False

    def read(self, size: int = -1) -> bytes:
        while True:
            chunk = self._raw.read(BLOCK_BYTES)
            if not chunk:
                if self._started and not self._frame.eof:
                    raise EOFError("the input ends inside a zstd frame (cut short)")
                return b""
            out = []
            while chunk:
                if self._frame.eof:
                    self._frame = zstandard.ZstdDecompressor().decompressobj()
                self._started = True
                out.append(self._frame.decompress(chunk))
                chunk = self._frame.unused_data if self._frame.eof else b""
            data = b"".join(out)
            if data:
                return data

    def close(self) -> None:
        self._raw.close()


class _Decompressing(io.RawIOBase):
    """A decompressing reader whose damage (not compressed at all, cut short, corrupt)
    is bad input naming the file, not a library's exception."""

    def __init__(self, stream: Any, path: str, kind: str) -> None:
        self._stream = stream
        self._path = path
        self._kind = kind

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return bytes(self._stream.read(size))
        except (OSError, EOFError, ValueError, zstandard.ZstdError) as exc:
            raise BadInput(
                f"{self._path}: not a valid {self._kind} file, or cut short ({exc})",
                hint=f"check the file (e.g. '{'gzip -t' if self._kind == 'gzip' else 'zstd -t'} "
                f"{self._path}'), or rename it if it is not compressed",
                source=self._path,
            ) from None

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
        super().close()
