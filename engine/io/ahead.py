"""Work beside the caller on the second core: a stream produced on a thread of its
own a few items ahead of its consumer (:func:`ahead`), and a spare worker thread made
on first use (:class:`SpareThread`).

A scan merges segments (pyarrow decodes, compares and copies with the GIL released)
and its consumer formats and hashes the rows (pyarrow and hashlib release it too):
run one after the other they use one core of two. :func:`ahead` lets the producer
work on the next item while the consumer handles this one, and holds at most
``depth`` items finished and not yet taken, so memory stays a few items.

The producer's generator runs to its end, or is closed on the producer's thread as
soon as the consumer stops (its ``finally`` blocks run there, before :func:`ahead`
returns); an error it raises reaches the consumer after the items before it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

T = TypeVar("T")


class _Handoff(Generic[T]):
    """The items finished and not yet taken, and how the stream ended."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.items: deque[T] = deque()
        self.done = False
        self.error: BaseException | None = None
        self.stopped = False  # the consumer has gone: produce no more
        self.changed = threading.Condition()

    def put(self, item: T) -> bool:
        """Hand ``item`` over once there is room; False if the consumer has gone."""
        with self.changed:
            while len(self.items) >= self.depth and not self.stopped:
                self.changed.wait()
            if self.stopped:
                return False
            self.items.append(item)
            self.changed.notify_all()
            return True

    def finish(self, error: BaseException | None) -> None:
        with self.changed:
            self.done, self.error = True, error
            self.changed.notify_all()

    def take(self) -> tuple[bool, T | None]:
        """The next item (True, item), or (False, None) at the end; raises the
        producer's error after the items before it."""
        with self.changed:
            while not self.items and not self.done:
                self.changed.wait()
            if self.items:
                item = self.items.popleft()
                self.changed.notify_all()
                return True, item
            if self.error is not None:
                raise self.error
            return False, None

    def stop(self) -> None:
        with self.changed:
            self.stopped = True
            self.items.clear()
            self.changed.notify_all()


def ahead(items: Iterable[T], depth: int = 1, name: str = "ahead") -> Generator[T, None, None]:
    """The items of ``items``, produced on a thread named ``name`` while the consumer
    handles the ones before, at most ``depth`` of them waiting. Nothing starts until
    the first item is asked for; the thread never outlives the returned generator
    (exhausted, closed or collected): a consumer that may stop early closes it."""
    handoff: _Handoff[T] = _Handoff(max(1, depth))

    def produce() -> None:
        source = iter(items)
        error: BaseException | None = None
        try:
            for item in source:
                if not handoff.put(item):
                    break
        except BaseException as exc:  # handed to the consumer, raised there
            error = exc
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                try:
                    close()  # the generator's cleanup, on the thread that ran it
                except BaseException as exc:
                    error = error or exc
            handoff.finish(error)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            more, item = handoff.take()
            if not more:
                return
            yield cast(T, item)
    finally:
        handoff.stop()
        thread.join()


R = TypeVar("R")


class SpareThread:
    """One worker thread for work that runs beside the caller, made on first use: a
    command that never needs it neither starts it nor imports ``concurrent.futures``."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, work: Callable[..., R], *args: Any) -> Future[R]:
        with self._lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        return self._pool.submit(work, *args)
