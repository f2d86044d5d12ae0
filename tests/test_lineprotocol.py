"""The line-protocol parser against InfluxData's conformance corpus, and named edge cases."""

from __future__ import annotations

import pytest

from engine.ingest.lineprotocol import LineError, parse
from tests.lpcorpus import PATHS, decode_cases, expected_points, our_points

# Cases we knowingly decode differently from the corpus, with the reason. None so far.
KNOWN_DIFFERENCES: dict[str, str] = {}


@pytest.mark.parametrize("path", PATHS)
def test_every_corpus_case(path: str) -> None:
    cases = decode_cases()
    assert len(cases) > 6000
    wrong = []
    for case in cases:
        key = case["input"]["key"]
        if key in KNOWN_DIFFERENCES:
            continue
        try:
            got = our_points(case, path)
            error = None
        except LineError as exc:
            got, error = None, str(exc)
        if "error" in case["output"]:
            if error is None:
                wrong.append((key, "accepted", case["input"]["text"], case["output"]["error"]))
        elif error is not None:
            wrong.append((key, "refused", case["input"]["text"], error))
        elif got != expected_points(case):
            wrong.append((key, "different points", case["input"]["text"], got))
    assert not wrong, f"{len(wrong)} corpus case(s) differ, first: {wrong[:3]}"


def points(text: str, **kwargs: object) -> list[tuple[object, ...]]:
    return [(p.measurement, p.tags, p.fields, p.kinds, p.time) for p in parse(text, **kwargs)]  # type: ignore[arg-type]


def test_escapes_in_names_and_strings() -> None:
    got = points('my\\ cpu,host\\=x=a\\,b value\\ 1="say \\"hi\\" \\\\o/" 5')
    assert got == [
        ("my cpu", {"host=x": "a,b"}, {"value 1": 'say "hi" \\o/'}, {"value 1": "string"}, 5)
    ]


def test_backslash_pairs_are_not_escapes_outside_strings() -> None:
    assert points("m,t=a\\\\ b v=1 1")[0][1] == {"t": "a\\ b"}


def test_every_value_type() -> None:
    got = points('m f=1.5,i=-3i,u=7u,b=TRUE,c=f,s="x" 1')[0]
    assert got[2] == {"f": 1.5, "i": -3, "u": 7, "b": True, "c": False, "s": "x"}
    assert got[3] == {
        "f": "float64",
        "i": "int64",
        "u": "uint64",
        "b": "bool",
        "c": "bool",
        "s": "string",
    }


def test_multiline_string_crlf_comments_and_blank_lines() -> None:
    text = '# header\r\n\r\ncpu v="a\nb" 1\r\n  \ncpu v="c" 2\r'
    got = points(text)
    assert [p[2]["v"] for p in got] == ["a\nb", "c"]


def test_precision_and_default_time() -> None:
    assert points("m v=1 3", precision="s")[0][4] == 3_000_000_000
    assert points("m v=1", precision="ms", default_time=1_234_567_891)[0][4] == 1_234_000_000


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("m,t=1,t=2 v=1", "duplicate tag key"),
        ("m v=1i2", "invalid value"),
        ("m v=99999999999999999999i", "out of range"),
        ("m v=1 12a", "invalid timestamp"),
        ("m v=1 1 2", "unexpected character"),
        ("m, v=1", "expected tag key after comma"),
        ("m v=", "expected a value"),
        ('m v="open', "closing quote"),
        ("\tm v=1", "start of measurement"),
        ("m v=+1", "unrecognized type"),
    ],
)
def test_refusals_say_why_and_where(text: str, reason: str) -> None:
    with pytest.raises(LineError, match=reason) as info:
        points(text)
    assert info.value.line == 1 and info.value.column >= 1
