"""Workload children forked from a server that has already imported the engine.

A workload child is a real process of its own (it is killed with SIGKILL, its faults
kill it, it writes through its own file descriptors), but starting a new interpreter
for each one costs ~0.3 CPU-s of imports (pyarrow and the engine) before the first
write: most of a crash trial. ``multiprocessing``'s fork server imports the workload
once and forks a child per request, so a trial pays for the fork and its own work.

The fork server is single-threaded (``multiprocessing`` starts it as a fresh
interpreter that only imports), which is what makes forking it safe; the process that
asks for children may have threads of its own. It lives as long as that process.

``Child`` answers the part of ``subprocess.Popen``'s interface the harness and the
tests use (text ``stdout``/``stderr`` pipes, ``poll``, ``wait``, ``send_signal``,
``kill``, ``communicate``), so a caller switches by changing where the child comes from.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from multiprocessing.reduction import DupFd
from typing import Protocol, TextIO

from engine.io.fileio import FAULTS_ENV, IO, Faults

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["engine.harness.workload"])


def start_workload(argv: list[str], faults: str = "", env: dict[str, str] | None = None) -> Child:
    """A workload child (``python -m engine.harness.workload ARGV``) forked from the
    preloaded server, with ``faults`` injected and this process's environment (or
    ``env``), as a new process would have."""
    environment = {**(os.environ if env is None else env), FAULTS_ENV: faults}
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        process = _CONTEXT.Process(
            target=_run_workload, args=(argv, environment, _Fd(out_w), _Fd(err_w)), daemon=False
        )
        process.start()
    finally:
        os.close(out_w)
        os.close(err_w)
    out, err = (os.fdopen(fd, "r", encoding="utf-8") for fd in (out_r, err_r))
    return Child(process, out, err)


class _Fd:
    """A file descriptor sent to the fork server with the request (SCM_RIGHTS)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[object, tuple[object]]:
        return _received_fd, (DupFd(self.fd),)


def _received_fd(dup: _Detachable) -> _Fd:
    return _Fd(dup.detach())


class _Detachable(Protocol):
    """What ``DupFd`` gives the child: the descriptor, once."""

    def detach(self) -> int: ...


def _run_workload(argv: list[str], env: dict[str, str], out: _Fd, err: _Fd) -> None:
    """In the forked child: its own stdout, stderr, environment and faults (read at
    import in a new process), then the workload."""
    from engine.harness import workload

    os.dup2(out.fd, 1)
    os.dup2(err.fd, 2)
    os.close(out.fd)
    os.close(err.fd)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
    os.environ.clear()
    os.environ.update(env)
    IO.faults = Faults.parse(env[FAULTS_ENV])
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    workload.main(argv)


class Child:
    """A forked workload child, driven as a ``subprocess.Popen`` with text pipes."""

    def __init__(self, process: multiprocessing.process.BaseProcess, out: TextIO, err: TextIO):
        self._process = process
        self.stdout: TextIO = out
        self.stderr: TextIO = err
        self._readers: list[_Drain] = []

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self._process.exitcode
        if code is None:
            raise subprocess.TimeoutExpired(str(self._process.name), timeout or 0.0)
        return code

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):  # it ended since the check
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Everything still to come on stdout and stderr, once the child has ended
        (``subprocess.TimeoutExpired`` if it has not within ``timeout``; call again)."""
        if not self._readers:
            self._readers = [_Drain(self.stdout), _Drain(self.stderr)]
        for reader in self._readers:
            reader.join(timeout)
            if reader.is_alive():
                raise subprocess.TimeoutExpired(str(self._process.name), timeout or 0.0)
        self.wait(timeout)
        out, err = (reader.text for reader in self._readers)
        return out, err


class _Drain(threading.Thread):
    """Reads one pipe to its end, so that neither pipe fills while the other is read."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(daemon=True)
        self._stream = stream
        self.text = ""
        self.start()

    def run(self) -> None:
        self.text = self._stream.read()
