"""Every request to ``serve`` gets an HTTP answer below 500: hostile bytes in a refused
line, stacked content codings, broken InfluxQL names, and (a property test) random
methods, paths, query strings, headers and bodies sent over a raw socket to a live
server, which must answer each one and still be serving after them all."""

from __future__ import annotations

import gzip
import socket
import urllib.parse
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import new_db
from tests.test_serve import Answer, Server, get, post, rows, serving


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("fuzzed")
    new_db(data_dir, "p")
    with serving(data_dir) as live:
        yield live
        assert get(f"{live.url}/ping").status == 204, "the server stopped answering"
        assert live.stop() == 0, live.stderr
    assert "Traceback" not in live.stderr and "internal error" not in live.stderr, live.stderr


def test_a_refused_line_with_control_bytes_is_answered_and_the_rest_written(
    server: Server,
) -> None:
    body = b"ctl v=1 1732400000000000000\nbad\x00li\x1bne\x7f v=2\ncaf\xc3\xa9 v=\x01\n"
    answer = post(f"{server.url}/write?db=p", body)
    assert answer.status == 400
    header = answer.headers["X-Influxdb-Error"]
    assert header.isascii() and header.isprintable() and "\\x00" in header
    error = str(answer.json()["error"])
    assert "bad\x00li\x1bne\x7f" in error and "dropped=2" in error  # the body keeps the bytes
    assert [r["v"] for r in rows(server.data_dir, "p", "ctl")] == [1.0]


@pytest.mark.parametrize(
    ("coding", "compress", "status"),
    [
        ("x-gzip", 1, 204),
        ("identity, gzip", 1, 204),
        ("gzip, identity", 1, 204),
        ("GZip", 1, 204),
        ("identity", 0, 204),
        ("gzip, gzip", 2, 415),
        ("gzip, gzip", 1, 415),
        ("deflate, gzip", 1, 415),
        ("compress", 0, 415),
        ("x-gzip", 0, 400),  # says gzip, is not
    ],
)
def test_content_codings_are_undone_or_refused_never_read_as_text(
    server: Server, coding: str, compress: int, status: int
) -> None:
    table = f"enc{abs(hash((coding, compress, status)))}"
    body = f"{table} v=1 1\n".encode()
    for _ in range(compress):
        body = gzip.compress(body)
    answer = post(f"{server.url}/write?db=p", body, {"Content-Encoding": coding})
    assert answer.status == status, answer.body
    if status == 415:
        assert "Content-Encoding" in str(answer.json()["error"])
    written = rows(server.data_dir, "p", table) if status == 204 else []
    assert len(written) == (1 if status == 204 else 0)


def test_a_broken_quoted_name_in_create_database_is_a_400(server: Server) -> None:
    for statement in ('CREATE DATABASE "\\"', 'CREATE DATABASE "', 'create database "ab'):
        answer = _query(server, statement)
        assert answer.status == 400, (statement, answer.body)
        assert "unterminated" in str(answer.json()["error"])
    made = _query(server, 'CREATE DATABASE "quoted_db"')
    assert made.status == 200 and (server.data_dir / "quoted_db").is_dir()
    escaped = _query(server, 'CREATE DATABASE "q\\"x"')  # the name q"x, which is not legal
    assert escaped.status == 400, escaped.body
    assert "invalid database name 'q\"x'" in str(escaped.json()["error"])


def _query(server: Server, statement: str) -> Answer:
    return post(f"{server.url}/query", urllib.parse.urlencode({"q": statement}).encode())


# -- random requests over a raw socket ------------------------------------------------------

PATHS = ["/write", "/api/v2/write", "/query", "/ping", "/health", "/metrics", "/", "/x/../write"]
KEYS = ["db", "bucket", "precision", "q", "u", "p", "org", "rp", "verbose", "db[]"]
HEADERS = [
    "Content-Encoding",
    "Content-Type",
    "Authorization",
    "Accept",
    "Accept-Encoding",
    "User-Agent",
    "X-Forwarded-For",
    "Cookie",
]
FRAMING = {"content-length", "transfer-encoding", "host", "connection", "expect", "upgrade"}

header_values = st.binary(max_size=80).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"")
) | st.sampled_from(
    [
        b"gzip",
        b"gzip, gzip",
        b"x-gzip",
        b"identity",
        b"br",
        b"zstd",
        b"deflate",
        b"Token x",
        b"Basic !!!",
        b"Basic " + b"A" * 30,
        b"text/plain; charset=utf-8",
        b"multipart/form-data",
        b"application/x-www-form-urlencoded",
        b"multipart/form-data; boundary=x",
    ]
)
header_names = st.sampled_from(HEADERS) | st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,20}\Z").filter(
    lambda n: n.lower() not in FRAMING
)
bodies = st.binary(max_size=2000) | st.lists(
    st.sampled_from(
        [
            b"cpu,host=a v=1 1",
            b"cpu v=1i",
            b'm f="s"',
            b"m,t=\x00 v=1",
            b"\xff\xfe v=1",
            b"m v=1 99999999999999999999",
            b"m v=nan",
            b"m,=x v=1",
            b"m v=1 -1",
            b"q=SHOW DATABASES",
            b'q=CREATE DATABASE "\\"',
            b"--x\r\nContent-Disposition: form-data\r\n\r\n",
        ]
    ),
    max_size=20,
).map(b"\n".join)
query_strings = st.lists(
    st.tuples(st.sampled_from(KEYS) | st.text(max_size=8), st.binary(max_size=40)), max_size=5
).map(lambda pairs: "&".join(f"{urllib.parse.quote(k)}={urllib.parse.quote(v)}" for k, v in pairs))


def _raw_request(url: str, request: bytes) -> bytes:
    host, port = urllib.parse.urlsplit(url).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)  # (no half-close: aiohttp drops a half-closed connection)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"]),
    path=st.sampled_from(PATHS),
    query=query_strings,
    headers=st.lists(st.tuples(header_names, header_values), max_size=6),
    body=bodies,
    gzipped=st.booleans(),
)
def test_every_random_request_gets_an_answer_below_500(
    server: Server,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, bytes]],
    body: bytes,
    gzipped: bool,
) -> None:
    if gzipped:
        body = gzip.compress(body)
        headers = [*headers, ("Content-Encoding", b"gzip")]
    target = f"{path}?{query}" if query else path
    head = [f"{method} {target} HTTP/1.1".encode(), b"Host: fuzz", b"Connection: close"]
    head += [name.encode() + b": " + value for name, value in headers]
    head.append(b"Content-Length: %d" % len(body))
    answer = _raw_request(server.url, b"\r\n".join(head) + b"\r\n\r\n" + body)
    assert answer[:9] in (b"HTTP/1.1 ", b"HTTP/1.0 "), (target, headers, answer[:200])
    status = int(answer[9:12])
    assert status < 500, (method, target, headers, body[:200], answer[:500])
