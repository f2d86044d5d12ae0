"""Segments read two at a time on threads (engine/db/scansources.py, ``read_ahead``): results
come in order, a reader's error reaches the consumer at its turn, and no reader thread
outlives the consumer, whether it reads to the end or stops early."""

from __future__ import annotations

import threading

import pytest

from engine.db.scansources import read_ahead


def _readers_alive() -> int:
    return sum(t.name == "segment-read" and t.is_alive() for t in threading.enumerate())


def test_results_come_in_order_with_at_most_two_reads_at_once() -> None:
    running, most = [0], [0]
    lock = threading.Lock()
    entered = threading.Barrier(2)

    def read(item: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        if item < 2:
            entered.wait(timeout=10)  # the first two run side by side, or this times out
        with lock:
            running[0] -= 1
        return item * 10

    assert list(read_ahead(list(range(7)), read)) == [i * 10 for i in range(7)]
    assert most[0] == 2
    assert _readers_alive() == 0


def test_an_error_is_raised_at_its_turn_after_the_results_before_it() -> None:
    def read(item: int) -> int:
        if item == 3:
            raise OSError("segment 3 is damaged")
        return item

    got: list[int] = []
    with pytest.raises(OSError, match="segment 3"):
        for value in read_ahead(list(range(6)), read):
            got.append(value)
    assert got == [0, 1, 2]
    assert _readers_alive() == 0


def test_a_consumer_that_stops_early_waits_for_the_reader_in_flight() -> None:
    """Closing the results waits for the read under way (it may hold an open file)."""
    release = threading.Event()

    def read(item: int) -> int:
        if item == 1:
            release.wait(timeout=30)
        return item

    results = read_ahead(list(range(5)), read)
    assert next(results) == 0  # item 1 is being read meanwhile, blocked
    closer = threading.Thread(target=results.close)
    closer.start()
    closer.join(timeout=0.3)
    assert (
        closer.is_alive()
    )  # still waiting for the blocked reader (a close that did not wait returns at once)
    release.set()
    closer.join(timeout=30)
    assert not closer.is_alive()
    assert _readers_alive() == 0
