"""The one layer through which the engine writes its files, with fault injection.

Every durable byte (WAL records, segments, manifests) goes through :data:`IO`,
so tests and ``tsadmin crash simulate`` can inject faults into a real process
without mocks. Faults are configured in-process through ``IO.faults`` or, for
a child process, through the environment variable ``TSADMIN_FAULTS``: a
``;``-separated list of

``crash@POINT[:N]``
    SIGKILL this process the N-th time (default 1st) the named crash point
    is reached (``IO.crash_point(name)``; e.g. ``checkpoint.after_rotate``).
``pause@POINT[:N]`` with ``gate=DIR``
    the N-th time the crash point is reached, create ``DIR/POINT.reached`` and
    wait until ``DIR/POINT.go`` exists: a test holds this process at exactly that
    step (an upload in flight, say) while another process acts, then lets it go.
``bug@POINT[:N]``
    the N-th time the crash point is reached, raise :class:`PlantedBug` (not an
    engine error): a bug planted where the code meets it, to prove it is reported.
``enospc@TAG[:N]``
    from the N-th write (default 1st) tagged ``TAG`` on, writes fail with
    ``ENOSPC`` until ``IO.faults.clear()``. ``TAG`` ``*`` matches all.
``torn@TAG[:N]``
    the N-th write tagged ``TAG`` writes only its first half, then the process
    is killed (a torn write).
``slowfsync=MS``
    every fsync takes MS milliseconds longer (a slow disk), to exercise group commit.
``nofsync``
    fsync does nothing: a planted bug for proving that the power-loss
    simulation catches a missing fsync.
``journal=PATH``
    append a durability journal to PATH (see below).

Power loss is simulated from the journal. It names files by inode, which a
rename does not change, so a kill between a rename and its journal line
cannot confuse it. One line per event:

* ``C ino``: file created or truncated;
* ``O ino size``: an existing file opened for appending; its ``size`` bytes
  count as durable, later ones only once fsynced;
* ``S ino size``: fsync returned, ``size`` bytes are durable.

After the writer is killed, :func:`simulate_power_loss` walks the directory,
and cuts every journalled file back to its last durable size (a file created
during the run and never fsynced keeps its name and loses every byte). Files not in the journal
existed before the run and count as durable. Directory entries (creations,
renames, removals) count as durable once the call returned: the engine
fsyncs the directory right after each.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from engine.errors import DiskFull, StorageError

FAULTS_ENV = "TSADMIN_FAULTS"
COPY_THREADS = 2
T = TypeVar("T")


@dataclass
class Faults:
    crash_points: dict[str, int] = field(default_factory=dict)
    pauses: dict[str, int] = field(default_factory=dict)
    bugs: dict[str, int] = field(default_factory=dict)
    gate: str | None = None
    enospc: dict[str, int] = field(default_factory=dict)
    torn: dict[str, int] = field(default_factory=dict)
    nofsync: bool = False
    slow_fsync_ms: float = 0.0
    journal_path: str | None = None
    counters: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> Faults:
        faults = cls()
        for item in filter(None, (part.strip() for part in spec.split(";"))):
            faults.add(item)
        return faults

    def add(self, item: str) -> None:
        if item == "nofsync":
            self.nofsync = True
            return
        if item.startswith("slowfsync="):
            self.slow_fsync_ms = float(item.split("=", 1)[1])
            return
        if item.startswith("journal="):
            self.journal_path = item.split("=", 1)[1]
            return
        if item.startswith("gate="):
            self.gate = item.split("=", 1)[1]
            return
        kind, _, target = item.partition("@")
        name, _, nth = target.partition(":")
        tables = {
            "crash": self.crash_points,
            "pause": self.pauses,
            "bug": self.bugs,
            "enospc": self.enospc,
            "torn": self.torn,
        }
        table = tables.get(kind)
        if table is None or not name:
            raise ValueError(f"bad fault spec {item!r}")
        table[name] = int(nth or 1)

    def active(self) -> bool:
        """Whether any fault, pause, crash point or journal is configured."""
        return bool(
            self.crash_points
            or self.pauses
            or self.bugs
            or self.enospc
            or self.torn
            or self.nofsync
            or self.slow_fsync_ms
            or self.journal_path
        )

    def clear(self) -> None:
        self.crash_points.clear()
        self.pauses.clear()
        self.bugs.clear()
        self.enospc.clear()
        self.torn.clear()
        self.nofsync = False
        self.slow_fsync_ms = 0.0
        self.counters.clear()

    def tick(self, key: str) -> int:
        self.counters[key] = self.counters.get(key, 0) + 1
        return self.counters[key]


class PlantedBug(RuntimeError):
    """What ``bug@POINT`` raises: an exception the engine does not expect."""


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class AppendFile:
    """A file written at its end, with an explicit fsync; the WAL's file."""

    def __init__(self, layer: FileLayer, path: Path, tag: str, *, create: bool) -> None:
        self._layer = layer
        self.path = path
        self.tag = tag
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if create else 0)
        self._fd = layer.guard(lambda: os.open(path, flags, 0o600), path)
        self.size = os.lseek(self._fd, 0, os.SEEK_END)
        inode = os.fstat(self._fd).st_ino
        layer.journal("C", inode) if create else layer.journal("O", inode, self.size)

    def fileno(self) -> int:
        return self._fd

    def write(self, data: bytes) -> None:
        """Append ``data``; on failure the file is cut back so no partial record stays."""
        start = self.size
        try:
            self._layer.before_write(self.tag, self._fd, data)
            written = 0
            view = memoryview(data)
            while written < len(data):
                written += os.write(self._fd, view[written:])
        except OSError as exc:
            self._cut_back(start)
            raise self._layer.translate(exc, self.path) from exc
        self.size = start + len(data)

    def _cut_back(self, size: int) -> None:
        try:
            os.ftruncate(self._fd, size)
            os.lseek(self._fd, size, os.SEEK_SET)
        except OSError:
            pass

    def truncate(self, size: int) -> None:
        self._layer.guard(lambda: os.ftruncate(self._fd, size), self.path)
        os.lseek(self._fd, size, os.SEEK_SET)
        self.size = size

    def fsync(self) -> None:
        self._layer.fsync_fd(self._fd, self.path, self.size)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class FileLayer:
    """File operations with fault injection and an optional durability journal."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self._lock = threading.Lock()

    # -- faults -----------------------------------------------------------------
    def crash_point(self, name: str) -> None:
        """A place where a test may ask this process to die (``crash@name``)."""
        nth = self.faults.crash_points.get(name)
        if nth is not None and self.faults.tick("crash:" + name) == nth:
            _kill_self()
        nth = self.faults.pauses.get(name)
        if nth is not None and self.faults.tick("pause:" + name) == nth:
            self._hold(name)
        nth = self.faults.bugs.get(name)
        if nth is not None and self.faults.tick("bug:" + name) == nth:
            raise PlantedBug(f"planted bug at {name}")

    def _hold(self, name: str) -> None:
        """``pause@name``: say so, then wait for the test's go (see the module docstring)."""
        gate = Path(self.faults.gate or ".")
        (gate / f"{name}.reached").write_bytes(b"")
        while not (gate / f"{name}.go").exists():
            time.sleep(0.005)

    def before_write(self, tag: str, fd: int, data: bytes) -> None:
        with self._lock:
            count = self.faults.tick("write:" + tag)
            for key in (tag, "*"):
                nth = self.faults.enospc.get(key)
                if nth is not None and count >= nth:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            nth = self.faults.torn.get(tag)
        if nth is not None and count == nth:
            os.write(fd, data[: max(1, len(data) // 2)])
            _kill_self()

    @staticmethod
    def translate(exc: OSError, path: Path) -> Exception:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return DiskFull(
                f"no space left on device writing {path}",
                hint="free disk space and retry; nothing of the refused write was kept",
            )
        return StorageError(f"{exc.strerror or exc} on {path}")

    def guard(self, action: Callable[[], T], path: Path) -> T:
        try:
            return action()
        except OSError as exc:
            raise self.translate(exc, path) from exc

    # -- journal ----------------------------------------------------------------
    def journal(self, event: str, *paths: Path | str | int) -> None:
        if self.faults.journal_path is None:
            return
        line = " ".join([event, *(str(p) for p in paths)]) + "\n"
        fd = os.open(self.faults.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    # -- operations -------------------------------------------------------------
    def open_append(self, path: Path, tag: str, *, create: bool = False) -> AppendFile:
        return AppendFile(self, path, tag, create=create)

    def fsync_fd(self, fd: int, path: Path, size: int) -> None:
        if self.faults.nofsync:
            return
        if self.faults.slow_fsync_ms:
            time.sleep(self.faults.slow_fsync_ms / 1000)
        self.guard(lambda: os.fsync(fd), path)
        self.journal("S", os.fstat(fd).st_ino, size)

    def fsync_dir(self, directory: Path) -> None:
        if self.faults.nofsync:
            return
        fd = self.guard(lambda: os.open(directory, os.O_RDONLY | os.O_DIRECTORY), directory)
        try:
            self.guard(lambda: os.fsync(fd), directory)
        finally:
            os.close(fd)

    def write_file_atomic(self, path: Path, data: bytes, tag: str) -> None:
        """Write ``data`` to ``path`` so that a crash leaves the old or the new file, whole.

        Temporary file, fsync, rename over, fsync the directory. A failure
        removes the temporary file and leaves ``path`` as it was.
        """
        tmp = path.with_name(path.name + ".tmp")
        out = self.open_append(tmp, tag, create=True)
        try:
            out.write(data)
            out.fsync()
        except BaseException:
            out.close()
            self.remove(tmp, missing_ok=True)
            raise
        out.close()
        self.rename(tmp, path)

    def write_file_visible(self, path: Path, data: bytes, tag: str) -> None:
        """Replace ``path`` with ``data`` atomically for readers, without making it
        durable (no fsync): for a hint that is rebuilt from elsewhere when a crash loses
        or empties it (the caller reads it tolerantly)."""
        tmp = path.with_name(path.name + ".tmp")
        out = self.open_append(tmp, tag, create=True)
        try:
            out.write(data)
        except BaseException:
            out.close()
            self.remove(tmp, missing_ok=True)
            raise
        out.close()
        self.guard(lambda: os.replace(tmp, path), tmp)

    def copy_file(self, source: Path, target: Path, tag: str) -> None:
        """Copy ``source`` to a new file ``target``, fsynced, its directory entry durable."""
        self.copy_files([(source, target)], tag)

    def copy_files(self, pairs: list[tuple[Path, Path]], tag: str) -> None:
        """Copy each source to its new target, every target fsynced, then each target
        directory once: durable together, as a tree that is swapped in afterwards needs.

        Two copies run at a time (copying and fsync release the GIL; a restore overlaps
        them with its checks), one by one while faults are injected, so that the N-th
        write of a fault is the same write in every run."""
        directories = list(dict.fromkeys(target.parent for _, target in pairs))
        for directory in directories:
            self.mkdirs(directory)
        if len(pairs) < 2 or self.faults.active():
            for source, target in pairs:
                self._copy_synced(source, target, tag)
        else:
            from concurrent.futures import ThreadPoolExecutor  # few commands copy files

            with ThreadPoolExecutor(COPY_THREADS) as pool:
                for _ in pool.map(lambda pair: self._copy_synced(pair[0], pair[1], tag), pairs):
                    pass
        for directory in directories:
            self.fsync_dir(directory)

    def _copy_synced(self, source: Path, target: Path, tag: str) -> None:
        out = self.open_append(target, tag, create=True)
        try:
            with source.open("rb") as handle:
                if not self._kernel_copy(handle.fileno(), out, tag):
                    while chunk := handle.read(8 << 20):
                        out.write(chunk)
            out.fsync()
        finally:
            out.close()

    def _kernel_copy(self, source_fd: int, out: AppendFile, tag: str) -> bool:
        """Copy the whole source in the kernel (``copy_file_range``: no bytes through
        Python, a reflink where the file system can); False when faults are injected
        into ``tag`` (the copy goes through ``write`` then) or the kernel cannot."""
        if self.faults.enospc or self.faults.torn or self.faults.journal_path:
            return False
        size = os.fstat(source_fd).st_size
        try:
            done = 0
            while done < size:
                step = os.copy_file_range(source_fd, out.fileno(), size - done, done, done)
                if step == 0:
                    raise StorageError(f"{out.path}: the source ended after {done} of {size} bytes")
                done += step
        except OSError as exc:
            unsupported = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP)
            if done == 0 and exc.errno in unsupported:
                return False
            raise self.translate(exc, out.path) from exc
        out.size += done
        return True

    def rename(self, src: Path, dst: Path) -> None:
        self.guard(lambda: os.replace(src, dst), src)
        self.fsync_dir(dst.parent)

    def rename_new(self, src: Path, dst: Path) -> None:
        """Rename a directory to a name that must not exist (or be an empty directory)."""
        self.guard(lambda: os.rename(src, dst), src)
        self.fsync_dir(dst.parent)

    def link_new(self, src: Path, dst: Path) -> bool:
        """Give the file ``src`` the further name ``dst`` only if no file has that name (a
        hard link: atomic, and refused for an existing name); durable when this returns.
        Returns False, changing nothing, when ``dst`` exists."""
        try:
            os.link(src, dst)
        except FileExistsError:
            return False
        except OSError as exc:
            raise self.translate(exc, dst) from exc
        self.fsync_dir(dst.parent)
        return True

    def remove(self, path: Path, *, missing_ok: bool = False) -> None:
        try:
            os.remove(path)
        except FileNotFoundError:
            if not missing_ok:
                raise
        except OSError as exc:
            raise self.translate(exc, path) from exc

    def remove_many(self, paths: Iterable[Path]) -> None:
        parents = set()
        for path in paths:
            self.remove(path, missing_ok=True)
            parents.add(path.parent)
        for parent in parents:
            if parent.exists():
                self.fsync_dir(parent)

    def remove_tree(self, path: Path) -> None:
        """Delete a directory and everything in it (if it exists); the removal of its
        entry is durable when this returns."""
        if not path.exists() and not path.is_symlink():
            return
        self.crash_point("remove_tree")
        try:
            if path.is_symlink() or not path.is_dir():
                os.remove(path)
            else:
                shutil.rmtree(path)
        except OSError as exc:
            raise self.translate(exc, path) from exc
        self.fsync_dir(path.parent)

    def mkdirs(self, directory: Path) -> None:
        """Create ``directory`` (and parents) and make the new entries durable."""
        missing = []
        current = directory
        while not current.exists():
            missing.append(current)
            current = current.parent
        for new in reversed(missing):
            self.guard(lambda: new.mkdir(mode=0o700, exist_ok=True), new)  # noqa: B023
            self.fsync_dir(new.parent)


IO = FileLayer(Faults.parse(os.environ.get(FAULTS_ENV, "")))


def simulate_power_loss(journal_path: Path, root: Path) -> dict[str, int]:
    """Cut the files under ``root`` back to what the journal says was durable.

    Returns the bytes dropped per file (relative path).
    """
    durable: dict[int, int | None] = {}
    created: set[int] = set()
    for line in journal_path.read_text().splitlines() if journal_path.exists() else []:
        event, *args = line.split(" ")
        inode = int(args[0])
        if event == "C":
            durable[inode] = None
            created.add(inode)
        elif event == "O":
            durable.setdefault(inode, int(args[1]))
        elif event == "S":
            durable[inode] = int(args[1])
    dropped: dict[str, int] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        info = path.stat()
        if info.st_ino not in durable:
            continue
        size = durable[info.st_ino]
        name = str(path.relative_to(root))
        durable_size = 0 if size is None else size
        if info.st_size > durable_size and (size is not None or info.st_ino in created):
            os.truncate(path, durable_size)
            dropped[name] = info.st_size - durable_size
    return dropped
