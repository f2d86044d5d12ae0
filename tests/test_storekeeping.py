"""The replica store's point-in-time window (engine/replication/storekeeping.py): which
snapshots it keeps, as a property over random snapshot histories."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.replication.snapshots import Snapshot
from engine.replication.storekeeping import DAY, created_seconds, snapshots_to_keep

NOW = 1_800_000_000.0


def snap(index: int, at: float) -> Snapshot:
    created = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return Snapshot(f"s{index:05d}", index, 1, created)


@settings(max_examples=300, deadline=None)
@given(
    ages=st.lists(st.floats(0, 20 * DAY), min_size=1, max_size=60),
    window_days=st.floats(0.01, 10),
    target_ages=st.lists(st.floats(0, 10 * DAY), min_size=1, max_size=10),
)
def test_every_moment_of_the_window_keeps_a_snapshot_to_start_from(
    ages: list[float], window_days: float, target_ages: list[float]
) -> None:
    snaps = [snap(i, NOW - age) for i, age in enumerate(sorted(ages, reverse=True))]
    window = window_days * DAY
    kept = snapshots_to_keep(snaps, window, NOW)
    kept_snaps = [s for s in snaps if s.name in kept]
    assert snaps[-1].name in kept  # the newest, always
    for age in target_ages:
        target = NOW - min(age, window)
        had = [s for s in snaps if created_seconds(s) <= target]
        has = [s for s in kept_snaps if created_seconds(s) <= target]
        assert bool(had) == bool(has)
        if had and target >= NOW - DAY:  # in the last day: replay from the very newest
            assert max(map(created_seconds, has)) == max(map(created_seconds, had))
    # bounded: the last day's snapshots, one a day before it, and two more
    last_day = sum(1 for s in snaps if created_seconds(s) >= NOW - DAY)
    assert len(kept) <= last_day + int(window / DAY) + 4


def test_nothing_to_keep_in_an_empty_store() -> None:
    assert snapshots_to_keep([], DAY, NOW) == set()
