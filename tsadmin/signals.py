"""Signals and closed pipes become exceptions the one exit point (``tsadmin/app.py``)
turns into a message and an exit code.

SIGINT and SIGTERM raise :class:`Interrupted` in the main thread, whatever the
signal's disposition was at start (a job started in the background of a script
inherits an ignored SIGINT): every long command stops at once, its cleanup
(``finally`` blocks: temporary directories, child processes, the writer lock)
runs, and it says what it had committed. :class:`Interrupted` is not a
``KeyboardInterrupt``, so no library on the way turns it into a silent exit.

A reader that goes away (``tsadmin select … | head -1``) ends the command
quietly: :class:`PipeClosed`, from the guard around standard output.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TextIO


class Interrupted(BaseException):
    """SIGINT (exit 130) or SIGTERM (exit 143) arrived."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def word(self) -> str:
        return "interrupted" if self.signum == signal.SIGINT else "terminated"


class PipeClosed(BaseException):
    """Standard output's reader went away."""


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    # Further signals during the cleanup that follows must not cut it short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(signum)


def install() -> None:
    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    if not isinstance(sys.stdout, _PipeGuard):
        sys.stdout = _PipeGuard(sys.stdout)


@contextmanager
def until_signalled() -> Iterator[threading.Event]:
    """For a service (replicate, follow, serve): SIGTERM and SIGINT set the event, and
    the service stops cleanly (after its current round, or draining) instead of being
    interrupted."""
    stop = threading.Event()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in handlers:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


class _PipeGuard:
    """Standard output whose writes raise :class:`PipeClosed` once the reader is gone."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise PipeClosed() from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise PipeClosed() from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
