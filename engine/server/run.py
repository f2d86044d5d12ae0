"""Running the write endpoint: listen, report every interval, drain on stop."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from engine.errors import EngineError
from engine.server.http import build_app
from engine.server.metrics import interval_summary
from engine.server.service import (
    Log,
    ServeConfig,
    WriteService,
    check_exposure,
    parse_bind,
)

DRAIN_TIMEOUT_S = 30.0
# Once no handler runs, what is left are idle connections and answers being written.
# aiohttp waits its whole shutdown timeout on a connection accepted just before the
# stop whose first request never came in (3.14 drops that request's bytes once
# closing), so the stop would hang 30 s whenever a client connected at that moment.
CLOSE_IDLE_TIMEOUT_S = 1.0


def serve(data_dir: Path, config: ServeConfig, stop: threading.Event, log: Log) -> dict[str, Any]:
    """Serve until ``stop`` is set, then drain and close; returns what it did."""
    check_exposure(config)
    host, port = parse_bind(config.bind)
    service = WriteService(data_dir, config, log)
    service.open()
    started = time.monotonic()
    try:
        asyncio.run(_listen(service, host, port, stop))
    finally:
        service.stopping = True
        closed = service.close()
    totals = service.stats.snapshot()
    log({"event": "stopped", "seconds": round(time.monotonic() - started, 1), **totals})
    return {"databases": closed, **totals}


def _not_a_malformed_request(record: logging.LogRecord) -> bool:
    """aiohttp answers a request it cannot parse with 400 itself (or, for a body a
    handler did not read, drops it), then logs the parse error with its traceback:
    bad input, not a fault of the server, so not logged (every other error of
    aiohttp's still is)."""
    failure = record.exc_info[1] if record.exc_info else None
    while failure is not None:
        if isinstance(failure, HttpProcessingError):
            return False
        failure = failure.__cause__ or failure.__context__
    return True


async def _listen(service: WriteService, host: str, port: int, stop: threading.Event) -> None:
    server_log = logging.getLogger("aiohttp.server")
    if _not_a_malformed_request not in server_log.filters:
        server_log.addFilter(_not_a_malformed_request)
    runner = web.AppRunner(
        build_app(service),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=CLOSE_IDLE_TIMEOUT_S,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise EngineError(
            f"cannot listen on {service.config.bind}: {exc.strerror or exc}",
            hint="stop what listens there, or choose another address",
        ) from exc
    service.log(
        {
            "event": "listening",
            "address": service.config.bind,
            "databases": sorted(service.served),
            "token": service.config.token is not None,
        }
    )
    reporter = asyncio.create_task(_report_every(service, service.config.log_interval_s))
    watcher = asyncio.create_task(_watch_replication(service))
    try:
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
    finally:
        service.stopping = True
        service.log({"event": "stopping", "in_flight": _waiting(service)})
        reporter.cancel()
        watcher.cancel()
        await site.stop()  # no new connections
        await service.in_flight.drained(DRAIN_TIMEOUT_S)  # requests in flight get answers
        await runner.cleanup()


def _waiting(service: WriteService) -> int:
    return sum(s.batcher.waiting for s in service.served.values())


async def _report_every(service: WriteService, interval: float) -> None:
    before, at = service.stats.snapshot(), time.monotonic()
    fsyncs = _fsyncs(service)
    while True:
        await asyncio.sleep(interval)
        after, now, fsyncs_now = service.stats.snapshot(), time.monotonic(), _fsyncs(service)
        summary = interval_summary(
            before, after, now - at, service.stats.take_latencies(), fsyncs_now - fsyncs
        )
        service.log(summary)
        before, at, fsyncs = after, now, fsyncs_now


async def _watch_replication(service: WriteService) -> None:
    """Replication events go to the log as they happen."""
    while True:
        await asyncio.sleep(0.25)
        _log_replication(service)


def _log_replication(service: WriteService) -> None:
    for name, served in sorted(service.served.items()):
        service.log_replication(name, served.db)


def _fsyncs(service: WriteService) -> int:
    return sum(s.db.fsync_count for s in service.served.values())
