"""A stream produced on a thread ahead of its consumer (engine/io/ahead.py): the items
in order, never more than ``depth`` waiting, the producer's error at its turn, and the
producer's generator closed on its own thread when the consumer stops early."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from engine.io.ahead import ahead


def _alive(name: str) -> int:
    return sum(t.name == name and t.is_alive() for t in threading.enumerate())


def test_items_come_in_order_and_the_producer_stays_within_its_depth() -> None:
    produced = [0]

    def numbers() -> Iterator[int]:
        for i in range(200):
            produced[0] += 1
            yield i

    taken = []
    for item in ahead(numbers(), depth=2, name="t-order"):
        # waiting: at most 2; one more may be made and held while it waits for room
        assert produced[0] <= len(taken) + 1 + 2 + 1
        taken.append(item)
    assert taken == list(range(200))
    assert _alive("t-order") == 0


def test_the_producers_error_comes_after_the_items_before_it() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("segment damaged")

    seen = []
    with pytest.raises(ValueError, match="segment damaged"):
        for item in ahead(failing(), name="t-error"):
            seen.append(item)
    assert seen == [1, 2]
    assert _alive("t-error") == 0


def test_stopping_early_closes_the_producer_on_its_thread_before_returning() -> None:
    cleaned: list[str] = []

    def endless() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:  # a scan removes its spill files here
            cleaned.append(threading.current_thread().name)

    stream = ahead(endless(), name="t-stop")
    assert [next(stream), next(stream)] == [0, 1]
    stream.close()  # type: ignore[attr-defined]
    assert cleaned == ["t-stop"]
    assert _alive("t-stop") == 0


def test_nothing_is_produced_until_the_first_item_is_asked_for() -> None:
    started = threading.Event()

    def watched() -> Iterator[int]:
        started.set()
        yield 1

    stream = ahead(watched(), name="t-lazy")
    assert not started.is_set() and _alive("t-lazy") == 0
    assert list(stream) == [1]
