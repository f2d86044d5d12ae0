"""The HTTP face of the write endpoint: InfluxDB's write API on aiohttp.

Endpoints (InfluxDB 1.x unless noted; errors in the shape the API's clients read):

- ``POST /write?db=&precision=&rp=&u=&p=``: line protocol, maybe gzip; 204 when every
  line was written; 400 ``{"error": "partial write: unable to parse '<line>': <why>
  (line N) ... dropped=K"}`` when some were refused (the others are written);
  404 ``database not found: "<db>"``; ``rp`` is accepted and ignored.
- ``POST /api/v2/write?bucket=&org=&precision=`` (2.x): the same, errors as
  ``{"code": ..., "message": ...}``; ``bucket`` may be ``db/rp``; ``org`` is ignored.
- ``GET|HEAD /ping``: 204 with ``X-Influxdb-Version`` (``?verbose=true``: 200 and JSON).
- ``GET /health``: 200 ``{"status": "pass", ...}``, 503 ``"fail"`` while stopping or
  when a database's background work failed.
- ``GET /metrics``: Prometheus text format (``engine/server/metrics.py``).
- ``POST|GET /query``: ``CREATE DATABASE <name>`` and ``SHOW DATABASES`` only (what
  Telegraf and the 1.x client library send before writing); any other statement: 400.

Precision: ``ns``/``n``, ``us``/``u``, ``ms``, ``s``, ``m``, ``h`` (an unknown one is
refused, never read as nanoseconds). Refusals before anything is read: 401 without
the token (when the server has one), 413 for a body over the limit (after gzip too),
415 for a ``Content-Encoding`` other than one gzip (or one coding aiohttp knows),
503 with ``Retry-After`` while the database's unflushed rows are over the server's
memory ceiling or the server is stopping.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import re
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import hdrs, web

from engine.errors import (
    BadInput,
    EngineError,
    InvalidArgument,
    ReplicaTimeout,
    SchemaConflict,
    WritesRefused,
)
from engine.ingest.pipeline import Refused, clip
from engine.server import metrics
from engine.server.service import Served, WriteService
from engine.version import __version__

VERSION = f"tsadmin-{__version__}"
PRECISIONS = {
    "": "ns",
    "n": "ns",
    "ns": "ns",
    "u": "us",
    "us": "us",
    "µ": "us",
    "ms": "ms",
    "s": "s",
    "m": "m",
    "h": "h",
}
# what aiohttp decompresses itself: a Content-Encoding that is exactly one of these
_AIOHTTP_CODINGS = frozenset({"gzip", "deflate", "br", "zstd"})
LISTED_REFUSALS = 10  # lines named in a partial-write error; the rest are counted
RETRY_AFTER_S = 1
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)+"', re.DOTALL)
_CREATE = re.compile(rf"\s*create\s+database\s+({_QUOTED.pattern}|\S+)", re.IGNORECASE)
_SHOW = re.compile(r"\s*show\s+databases\s*;?\s*\Z", re.IGNORECASE)
SERVICE: web.AppKey[WriteService] = web.AppKey("service", WriteService)


class Refusal(Exception):
    """A request refused with ``status``; the dialect decides the error's shape."""

    def __init__(self, status: int, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def build_app(service: WriteService) -> web.Application:
    app = web.Application(
        client_max_size=service.config.max_body_bytes, middlewares=[_headers_and_counts]
    )
    app[SERVICE] = service
    app.router.add_post("/write", write_v1)
    app.router.add_post("/api/v2/write", write_v2)
    app.router.add_get("/ping", ping)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", prometheus)
    app.router.add_route("GET", "/query", query)
    app.router.add_route("POST", "/query", query)
    return app


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _headers_and_counts(request: web.Request, handler: Handler) -> web.StreamResponse:
    in_flight = request.app[SERVICE].in_flight
    in_flight.enter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # aiohttp's own: unknown path, wrong method
        response = exc
    finally:
        in_flight.leave()
    response.headers["X-Influxdb-Version"] = VERSION
    response.headers["X-Influxdb-Build"] = "tsadmin"
    resource = request.match_info.route.resource
    endpoint = resource.canonical if resource is not None else "other"
    request.app[SERVICE].stats.request(endpoint, response.status)
    return response


# -- writes -------------------------------------------------------------------------------


async def write_v1(request: web.Request) -> web.Response:
    return await _write_answer(request, request.query.get("db", ""), "database", _v1_error)


async def write_v2(request: web.Request) -> web.Response:
    bucket = request.query.get("bucket", "").split("/", 1)[0]  # "db/rp": the rp is ignored
    return await _write_answer(request, bucket, "bucket", _v2_error)


async def _write_answer(
    request: web.Request, name: str, called: str, error: Callable[[Refusal], web.Response]
) -> web.Response:
    """204 once the request's lines are committed; otherwise ``error``'s shape."""
    try:
        _authorize(request)
        if not name:
            raise Refusal(400, f"{called} is required")
        await _write(request, name, request.query.get("precision", ""))
    except Refusal as refusal:
        return error(refusal)
    return web.Response(status=204)


async def _write(request: web.Request, name: str, precision_text: str) -> None:
    """Commit the request's lines to database ``name``; raises :class:`Refusal`."""
    service = request.app[SERVICE]
    served = _served(service, name)
    precision = PRECISIONS.get(precision_text)
    if precision is None:
        shown = clip(precision_text, 20)
        raise Refusal(400, f"invalid precision {shown!r}: use ns, us, ms, s, m or h")
    _check_room(service, served)
    body = await _body(request, service.config.max_body_bytes)
    if not body.strip():
        return
    try:
        result = await asyncio.wrap_future(served.batcher.submit(body, precision))
    except EngineError as exc:
        raise _refusal_for(exc) from exc
    if result.refused:
        raise Refusal(400, partial_write_message(result.refused))


def _served(service: WriteService, name: str) -> Served:
    served = service.served.get(name)
    if served is not None:
        return served
    why = service.not_served.get(name)
    if why is not None:
        raise Refusal(403, why)
    raise Refusal(404, f"database not found: {json.dumps(name)}")


def _check_room(service: WriteService, served: Served) -> None:
    if service.stopping:
        raise Refusal(503, "the server is stopping", retry_after=RETRY_AFTER_S)
    limit = service.config.ceiling
    if served.batcher.queued_bytes > limit:
        raise Refusal(
            503,
            f"database {served.db.name} has more request bodies waiting to be committed than "
            f"the server's memory ceiling ({limit:,} bytes)",
            retry_after=RETRY_AFTER_S,
        )
    if served.db.pending_bytes > limit:
        served.db.request_checkpoint()
        raise Refusal(
            503,
            f"database {served.db.name} holds more unflushed rows than the server's "
            f"memory ceiling ({limit:,} bytes): retry once its checkpoint has run",
            retry_after=RETRY_AFTER_S,
        )


async def _body(request: web.Request, limit: int) -> bytes:
    """The request body, decompressed. aiohttp undoes a ``Content-Encoding`` that is
    exactly one coding it knows; ``x-gzip`` and a list that comes down to one gzip
    (``identity, gzip``) are undone here; any other list is refused (415), never read
    as line protocol."""
    too_large = Refusal(413, f"request body too large: the limit is {limit:,} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    header = request.headers.get(hdrs.CONTENT_ENCODING, "")
    codings = _codings(header)
    undone_by_aiohttp = header.isascii() and header.lower() in _AIOHTTP_CODINGS
    if codings and not undone_by_aiohttp and codings != ["gzip"]:
        raise Refusal(
            415,
            f"Content-Encoding {clip(header, 60)!r} is not supported: send the body "
            "plain or compressed once with gzip",
        )
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None
    except web.HTTPException as exc:
        raise Refusal(exc.status, exc.text or exc.reason) from None
    except Exception as exc:  # a body that does not decompress: aiohttp's ContentEncodingError
        raise Refusal(400, f"unreadable request body: {exc}") from None
    if codings and not undone_by_aiohttp:
        return _gunzip(body, limit, too_large)
    return body


def _codings(header: str) -> list[str]:
    """The content codings of a ``Content-Encoding`` value, ``identity`` left out and
    ``x-gzip`` read as ``gzip`` (RFC 9110, 8.4.1.3)."""
    codings = (c.strip().lower() for c in header.split(","))
    return ["gzip" if c == "x-gzip" else c for c in codings if c and c != "identity"]


def _gunzip(body: bytes, limit: int, too_large: Refusal) -> bytes:
    """``body`` gunzipped, never past ``limit`` bytes (a small body may inflate a
    thousandfold)."""
    stream = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        plain = stream.decompress(body, limit + 1)
    except zlib.error as exc:
        raise Refusal(400, f"unreadable request body: not gzip ({exc})") from None
    if len(plain) > limit:
        raise too_large
    if not stream.eof:
        raise Refusal(400, "unreadable request body: the gzip stream ends early")
    return plain


def partial_write_message(refused: list[Refused]) -> str:
    """InfluxDB's partial-write error, naming the first refused lines and their numbers."""
    shown = [
        f"unable to parse '{clip(r.text, 200)}': {r.reason} (line {r.line}"
        + (f", column {r.column})" if r.column else ")")
        for r in refused[:LISTED_REFUSALS]
    ]
    more = len(refused) - LISTED_REFUSALS
    if more > 0:
        shown.append(f"and {more:,} more lines refused")
    return "partial write: " + "\n".join(shown) + f" dropped={len(refused)}"


def _refusal_for(exc: EngineError) -> Refusal:
    """The one mapping of engine errors met while committing to HTTP statuses."""
    if isinstance(exc, BadInput | SchemaConflict | InvalidArgument):
        return Refusal(400, exc.message)
    if isinstance(exc, WritesRefused):
        return Refusal(403, exc.message)
    if isinstance(exc, ReplicaTimeout):
        return Refusal(503, exc.message, retry_after=RETRY_AFTER_S)
    return Refusal(500, exc.message)


# -- authorization ------------------------------------------------------------------------


def _authorize(request: web.Request) -> None:
    token = request.app[SERVICE].config.token
    if token is None or any(_same(offered, token) for offered in _credentials(request)):
        return
    raise Refusal(401, "authorization failed")


def _credentials(request: web.Request) -> list[str]:
    """What the request offers as the token: ``Authorization: Token|Bearer T`` (a
    1.x-style ``user:T`` too), the password of Basic auth, or the ``p`` parameter."""
    offered = []
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    if scheme.lower() in ("token", "bearer"):
        offered += [value, value.partition(":")[2]]
    elif scheme.lower() == "basic":
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            offered.append(base64.b64decode(value, validate=True).decode().partition(":")[2])
    if "p" in request.query:
        offered.append(request.query["p"])
    return [o for o in offered if o]


def _same(offered: str, token: str) -> bool:
    return hmac.compare_digest(offered.encode(), token.encode())


# -- the rest of the API ------------------------------------------------------------------


async def ping(request: web.Request) -> web.Response:
    if request.query.get("verbose", "").lower() in ("true", "1"):
        return web.json_response({"version": VERSION})
    return web.Response(status=204)


async def health(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    checks = service.checks()
    ok = not service.stopping and all(c["status"] == "pass" for c in checks)
    body = {
        "name": "tsadmin",
        "message": "ready for writes" if ok else "not ready for writes",
        "status": "pass" if ok else "fail",
        "checks": checks,
        "version": VERSION,
    }
    return web.json_response(body, status=200 if ok else 503)


async def prometheus(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    return web.Response(
        body=metrics.render(service.registry), headers={"Content-Type": metrics.CONTENT_TYPE}
    )


async def query(request: web.Request) -> web.Response:
    try:
        _authorize(request)
        form = await _form(request)
        text = str(request.query.get("q") or form.get("q") or "")
        service = request.app[SERVICE]
        result = await asyncio.get_running_loop().run_in_executor(None, _statement, service, text)
    except Refusal as refusal:
        return _v1_error(refusal)
    return web.json_response({"results": [{"statement_id": 0, **result}]})


async def _form(request: web.Request) -> Mapping[str, object]:
    """A POST's form fields (``q=...``); a body that is no form is a 400."""
    if request.method != "POST":
        return {}
    try:
        return await request.post()
    except web.HTTPException as exc:
        raise Refusal(exc.status, exc.text or exc.reason) from None
    except Exception as exc:  # aiohttp's parsers raise what they meet: ValueError and more
        raise Refusal(400, f"unreadable form body: {exc}") from None


def _statement(service: WriteService, text: str) -> dict[str, Any]:
    if _SHOW.match(text):
        values = [[name] for name in sorted(service.served)]
        return {"series": [{"name": "databases", "columns": ["name"], "values": values}]}
    create = _CREATE.match(text)
    if create is None:
        raise Refusal(
            400,
            "this server takes writes only: it answers CREATE DATABASE and SHOW DATABASES; "
            "read the data where it is stored",
        )
    name = _identifier(create.group(1).strip(";"))
    if name in service.served:
        return {}
    if name in service.not_served:
        raise Refusal(403, service.not_served[name])
    if not service.serves_any():
        raise Refusal(403, f"database {name} is not among the databases this server serves")
    try:
        service.create_and_serve(name)
    except EngineError as exc:
        raise Refusal(400, exc.message) from exc
    return {}


def _identifier(text: str) -> str:
    """An InfluxQL identifier as written: bare, or double-quoted with ``\\"`` and
    ``\\\\`` escaped."""
    if not text.startswith('"'):
        return text
    if _QUOTED.fullmatch(text) is None:
        raise Refusal(400, f'unterminated quoted name {clip(text, 60)}: close it with "')
    return re.sub(r"\\(.)", r"\1", text[1:-1], flags=re.DOTALL)


# -- error shapes -------------------------------------------------------------------------

_V2_CODES = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    413: "request too large",
    415: "unsupported media type",
    500: "internal error",
    503: "unavailable",
}


def _v1_error(refusal: Refusal) -> web.Response:
    response = web.json_response({"error": refusal.message}, status=refusal.status)
    response.headers["X-Influxdb-Error"] = _header_text(refusal.message)
    return _with_retry(response, refusal)


def _v2_error(refusal: Refusal) -> web.Response:
    code = _V2_CODES.get(refusal.status, "invalid")
    response = web.json_response({"code": code, "message": refusal.message}, status=refusal.status)
    return _with_retry(response, refusal)


def _with_retry(response: web.Response, refusal: Refusal) -> web.Response:
    if refusal.retry_after is not None:
        response.headers["Retry-After"] = str(refusal.retry_after)
    return response


def _header_text(message: str) -> str:
    """A header value any HTTP stack sends and any proxy passes: one line of printable
    ASCII, at most 1,000 characters. Every other character is escaped the way Python
    writes it in a string (a NUL as ``\\x00``, an accent as ``\\xe9``): a refused line
    may hold any byte, and a header aiohttp will not send would drop the connection
    without an answer."""
    flat = " ".join(message.split())
    escaped = flat.encode("unicode_escape").decode("ascii")
    return clip(escaped, 1000).replace("…", "...")
