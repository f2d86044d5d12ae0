"""The vectorised line-protocol path against the exact parser, on generated input.

The corpus (test_lineprotocol.py) holds both paths to InfluxData's cases; most
of those are single odd lines. Here Hypothesis writes blocks of many lines of
several shapes, plain and not, with edits that push lines onto the fallback,
and both paths must give the same points or the same first error."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.ingest import lpnative
from engine.ingest.lineprotocol import LineError, parse
from tests.lpcorpus import fast_points

NAMES = st.sampled_from(["cpu", "mem", "h", "héllo", "a_b", "x1", "ts", "t", "i"])
TAG_VALUES = st.sampled_from(["a", "b", "host_1", "ü", "0", "x-y", "1.5"])
VALUES = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(lambda v: f"{v}i"),
    st.integers(0, 2**64 - 1).map(lambda v: f"{v}u"),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1", "-0", "1.", ".5", "-.5", "1e5", "1.5E-3", "00012", "1e99", "9" * 40]),
    st.sampled_from(["t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"]),
    st.sampled_from(['"x"', '""', '"a b"', '"q\\"q"', '"multi\nline"', '"ü"']),
)
TIMES = st.one_of(
    st.just(""),
    st.integers(-(2**63), 2**63 - 1).map(lambda v: f" {v}"),
    st.sampled_from([" 1700000000000000000", " 9999999999999999999", " -5", " 0"]),
)
EDITS = st.sampled_from(["", "", "", "", " ", "\\", ",", "=", "#", "\r", '"', "\t", "  "])


@st.composite
def lines(draw: st.DrawFn) -> str:
    shape_tags = draw(st.lists(NAMES, max_size=3))
    shape_fields = draw(st.lists(NAMES, min_size=1, max_size=3))
    measurement = draw(NAMES)
    out = []
    for _ in range(draw(st.integers(1, 6))):
        tags = "".join(f",{k}={draw(TAG_VALUES)}" for k in shape_tags)
        fields = ",".join(f"{k}={draw(VALUES)}" for k in shape_fields)
        line = f"{measurement}{tags} {fields}{draw(TIMES)}"
        edit = draw(EDITS)
        if edit:
            at = draw(st.integers(0, len(line)))
            line = line[:at] + edit + line[at:]
        out.append(line)
    return "\n".join(out)


def exact(text: str, precision: str) -> tuple[list[tuple[object, ...]] | None, str | None]:
    try:
        points = parse(text, precision=precision, default_time=1_234_567_890_123)
        return [(p.measurement, p.tags, p.fields, p.kinds, p.time, p.line) for p in points], None
    except LineError as exc:
        return None, str(exc)


def vectorised(
    text: str, precision: str, path: str = "vectorised"
) -> tuple[list[tuple[object, ...]] | None, str | None]:
    try:
        points = fast_points(text, precision, 1_234_567_890_123, path)
        return [(p.measurement, p.tags, p.fields, p.kinds, p.time, p.line) for p in points], None
    except LineError as exc:
        return None, str(exc)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(lines(), min_size=1, max_size=6).map("\n".join),
    st.sampled_from(["ns", "us", "ms", "s"]),
    st.booleans(),
)
def test_vectorised_path_gives_the_exact_parsers_points(
    text: str, precision: str, newline: bool
) -> None:
    text += "\n" if newline else ""
    expected = exact(text, precision)
    assert vectorised(text, precision) == expected
    if lpnative.active() == "native":
        assert vectorised(text, precision, "native") == expected


def test_most_plain_lines_take_the_fast_path() -> None:
    """Guard against a PLAIN_LINE that quietly sends everything to the fallback."""
    from engine.arrowmods import pc
    from engine.ingest.lpfast import PLAIN_LINE, split_lines

    text = (
        'cpu,host=a,region=eu usage=1i,idle=2.5,up=t,name="x" 1700000000000000000\n'
        "mem,host=b free=3u\n"
        "cpu,host=a\\ b usage=1i 1\n"
    )
    lines = split_lines(text.encode())
    assert pc.match_substring_regex(lines, PLAIN_LINE).to_pylist() == [True, True, False]
