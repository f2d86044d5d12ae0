"""tsadmin serve: the InfluxDB-compatible write endpoint."""

import json
import sys
import time
from typing import Annotated, Any

import typer

from engine.server import DEFAULT_BIND
from engine.settings import parse_duration_ns, parse_size
from tsadmin import signals
from tsadmin.params import complete_database
from tsadmin.state import state


def serve(
    ctx: typer.Context,
    bind: Annotated[
        str, typer.Option("--bind", help="Address to listen on, host:port.")
    ] = DEFAULT_BIND,
    databases: Annotated[
        list[str] | None,
        typer.Argument(
            help="The databases to serve [default: every one of the data directory].",
            show_default=False,
            metavar="[DB]...",
            autocompletion=complete_database,
        ),
    ] = None,
    db: Annotated[
        list[str] | None,
        typer.Option("--db", help="The same as DB (repeatable; kept for scripts).", hidden=True),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="TSADMIN_TOKEN",
            help="Token clients must send (Authorization: Token T, or as the password); "
            "required to listen beyond loopback [env: TSADMIN_TOKEN].",
            show_envvar=False,
        ),
    ] = None,
    max_body: Annotated[
        str, typer.Option("--max-body", help="Largest request body, after gzip (413 beyond).")
    ] = "25MiB",
    memory_limit: Annotated[
        str | None,
        typer.Option(
            "--memory-limit",
            help="Unflushed rows per database above which writes get 503 and Retry-After "
            "[default: an eighth of the machine's memory (or its cgroup limit), at least "
            "96MiB].",
            show_default=False,
        ),
    ] = None,
    log_interval: Annotated[
        str, typer.Option("--log-interval", help="Time between the stats lines on stderr.")
    ] = "1m",
) -> None:
    """Take writes over HTTP as InfluxDB does (POST /write, /api/v2/write; /ping, /health,
    /metrics) for Telegraf and the InfluxDB client libraries, holding the served
    databases' writer locks. Concurrent requests share commits and fsyncs. SIGTERM stops
    accepting, answers the requests in flight, checkpoints and ships, then exits 0. Logs
    go to stderr, one line per event and a stats line per interval (JSON lines with
    --format json)."""
    # imported here: aiohttp and prometheus-client cost every other command 0.1 s at start
    from engine.server.run import serve as run_server
    from engine.server.service import ServeConfig

    st = state(ctx)
    config = ServeConfig(
        bind=bind,
        databases=tuple(dict.fromkeys([*(databases or ()), *(db or ())])),
        token=token,
        max_body_bytes=parse_size(max_body, "body limit"),
        memory_limit_bytes=parse_size(memory_limit, "memory limit") if memory_limit else 0,
        log_interval_s=parse_duration_ns(log_interval, what="log interval") / 1e9,
    )

    def log(event: dict[str, Any]) -> None:
        if st.quiet:
            return
        line = (
            json.dumps({"time": now_iso(), **event})
            if st.format == "json"
            else f"{now_iso()} {describe(event)}"
        )
        print(line, file=sys.stderr, flush=True)

    with signals.until_signalled() as stop:
        run_server(st.data_dir, config, stop, log)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def describe(event: dict[str, Any]) -> str:
    """One log line for people."""
    kind = event["event"]
    if kind == "listening":
        served = ", ".join(event["databases"]) or "none yet"
        auth = "token required" if event["token"] else "no token (loopback only)"
        return f"listening on {event['address']}: databases {served}; {auth}"
    if kind == "stats":
        return (
            f"{event['rows_per_s']:,.0f} rows/s, {event['requests_per_s']:,.1f} requests/s "
            f"over {event['seconds']:.0f}s; {event['refused_lines']:,} lines refused, "
            f"{event['busy']:,} busy (503), {event['client_errors']:,} client errors, "
            f"{event['server_errors']:,} server errors; {event['commits']:,} commits, "
            f"{event['requests_per_commit']} requests and {event['fsyncs_per_commit']} "
            f"fsyncs per commit, commit p50 {event['commit_p50_ms']} ms, "
            f"p99 {event['commit_p99_ms']} ms"
        )
    if kind == "stopping":
        return f"stopping: answering the requests in flight ({event['in_flight']} queued)"
    if kind == "stopped":
        return (
            f"stopped after {event['seconds']}s: {event['rows']:,} rows in "
            f"{event['committed_requests']:,} requests, {event['refused_lines']:,} lines refused"
        )
    if kind == "created":
        return f"created database {event['database']} (CREATE DATABASE)"
    return json.dumps(event)


def register(root: typer.Typer) -> None:
    root.command("serve", short_help="InfluxDB-compatible write endpoint over HTTP.")(serve)
