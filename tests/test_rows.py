"""``iso_texts`` (how ``select`` prints timestamps, through Arrow's cast to text) writes
what ``strftime`` with ISO_FORMAT writes, in every precision, nulls and the edges of
four-digit years included."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.arrowmods import pa, pc
from engine.settings import UNITS_PER_SECOND
from engine.storage.rows import ISO_FORMAT, iso_texts

FIRST, LAST = -62_135_596_800, 253_402_300_799  # 0001-01-01 and 9999-12-31T23:59:59, in s


@st.composite
def columns(draw: st.DrawFn) -> pa.ChunkedArray:
    unit = draw(st.sampled_from(sorted(UNITS_PER_SECOND)))
    per = UNITS_PER_SECOND[unit]
    low, high = max(FIRST * per - per, -(2**63) + 1), min((LAST + 2) * per, 2**63 - 1)
    edges = st.sampled_from(
        [e for e in (FIRST * per, (LAST + 1) * per - 1, 0, -1, low, high) if low <= e <= high]
    )
    value = st.one_of(st.none(), edges, st.integers(low, high))
    chunks = draw(st.lists(st.lists(value, max_size=20), min_size=1, max_size=3))
    kind = pa.timestamp(unit, tz="UTC")
    return pa.chunked_array([pa.array(c, pa.int64()).cast(kind) for c in chunks], kind)


@settings(max_examples=300, deadline=None)
@given(ts=columns())
def test_iso_texts_are_strftime_texts(ts: pa.ChunkedArray) -> None:
    assert iso_texts(ts).to_pylist() == pc.strftime(ts, format=ISO_FORMAT).to_pylist()
