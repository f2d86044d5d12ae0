"""tsadmin wal: inspect, verify, dump, repair."""

from typing import Annotated, Any

import typer

from engine import VerificationFailed, existing_database_dir, writable_database_dir
from engine.db import walcheck, walrepair
from engine.storage.rows import to_records
from tsadmin.params import Db
from tsadmin.render import emit, emit_sections
from tsadmin.state import command_group, note, state

app = command_group("See inside the WAL, check it, and repair it.")


@app.command("inspect", short_help="The WAL files and their records.")
def inspect(
    ctx: typer.Context,
    db: Db,
    from_lsn: Annotated[
        int | None, typer.Option("--from-lsn", help="Records from this LSN.")
    ] = None,
    to_lsn: Annotated[int | None, typer.Option("--to-lsn", help="Records up to this LSN.")] = None,
    txn: Annotated[int | None, typer.Option("--txn", help="Records of one transaction.")] = None,
    table: Annotated[str | None, typer.Option("--table", help="DATA records of one table.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most N records.", min=0)] = None,
) -> None:
    """The WAL files (role, size, LSNs, header) and their records; safe beside a writer."""
    st = state(ctx)
    chosen = walcheck.RecordFilter(from_lsn, to_lsn, txn, table, limit)
    result = walcheck.inspect(existing_database_dir(st.data_dir, db), chosen)
    if st.format == "json":
        emit(result, "json")
    else:
        files = [{**f, "problem": _problem_text(f.get("problem"))} for f in result["files"]]
        emit_sections([files, result["records"]], st.format)


def _problem_text(problem: Any) -> Any:
    """A file's problem as one line of text (the JSON keeps its fields)."""
    if not isinstance(problem, dict):
        return problem
    text = str(problem.get("reason", problem))
    if problem.get("offset") is not None:
        text += f" (at byte {problem['offset']})"
    return text


@app.command("verify", short_help="Check the WAL; exit 3 if anything is wrong.")
def verify(ctx: typer.Context, db: Db) -> None:
    """Check headers, CRCs, LSNs, payloads and transactions; exit 3 if anything is wrong."""
    st = state(ctx)
    report = walcheck.verify(existing_database_dir(st.data_dir, db), db)
    if st.format == "json":
        emit(report.to_json(), "json")
    else:
        summary = {k: v for k, v in report.to_json().items() if k not in ("problems", "notes")}
        for item in report.notes:
            note(ctx, f"note: {item['file']} offset {item['offset']}: {item['note']}")
        emit_sections([summary, *([report.problems] if report.problems else [])], st.format)
    if not report.ok:
        raise VerificationFailed(
            f"the WAL of {db} has {len(report.problems)} problem(s)",
            hint=f"'tsadmin wal repair {db} --dry-run' says what a repair would do",
        )


@app.command("dump", short_help="The rows of one WAL record.")
def dump(
    ctx: typer.Context,
    db: Db,
    lsn: Annotated[int, typer.Option("--lsn", help="The record's LSN.", show_default=False)],
) -> None:
    """The rows of one DATA record (or the content of a DDL or COMMIT record)."""
    st = state(ctx)
    info, content = walcheck.dump(existing_database_dir(st.data_dir, db), lsn)
    if isinstance(content, dict):
        emit({**info.to_json(), "content": content}, st.format)
        return
    note(
        ctx,
        f"LSN {info.lsn}: {info.type} of transaction {info.txn}, "
        f"table {info.table}, {info.rows} rows",
    )
    emit(to_records(content), st.format, columns=content.column_names)


@app.command("repair", short_help="Cut a torn tail, or salvage around corruption.")
def repair(
    ctx: typer.Context,
    db: Db,
    salvage: Annotated[
        bool,
        typer.Option("--salvage", help="Drop corrupt records and keep the valid ones after them."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be done; change nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm a salvage (it loses data).")] = False,
) -> None:
    """Cut a torn tail; with --salvage, rebuild the WAL around corruption (originals kept)."""
    st = state(ctx)
    db_dir = (existing_database_dir if dry_run else writable_database_dir)(st.data_dir, db)
    if salvage and not dry_run and not yes:
        plan = walrepair.repair(db_dir, db, salvage=True, dry_run=True)
        _show(ctx, plan)
        if not plan.salvaging:
            return
        raise typer.BadParameter(
            "a salvage drops data: check the plan above, then add --yes", param_hint="--yes"
        )
    _show(ctx, walrepair.repair(db_dir, db, salvage=salvage, dry_run=dry_run))


@app.command("salvage", short_help="Rebuild the WAL around corruption (as db salvage).")
def salvage_command(
    ctx: typer.Context,
    db: Db,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be kept and lost; change nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm (it loses data).")] = False,
) -> None:
    """Drop corrupt WAL records and keep the valid ones after them, originals kept: the
    WAL's salvage, spelled as 'db salvage' is for segments ('wal repair --salvage' is the
    same). Needs --yes unless --dry-run."""
    repair(ctx, db, salvage=True, dry_run=dry_run, yes=yes)


def _show(ctx: typer.Context, report: walrepair.RepairReport) -> None:
    st = state(ctx)
    if st.format != "table":
        emit(report.to_json(), st.format)
        return
    nothing = all(a.startswith("nothing to repair") for a in report.actions)
    if report.dry_run and not nothing:
        typer.echo("dry run, nothing was changed; a repair would:")
    for action in report.actions:
        typer.echo(("  " if report.dry_run and not nothing else "") + action)
    if report.dropped_regions or report.lost_lsn_ranges or report.transactions_dropped:
        lost = {
            k: v
            for k, v in report.to_json().items()
            if k
            in (
                "dropped_regions",
                "lost_lsn_ranges",
                "transactions_dropped",
                "rows_dropped",
                "records_dropped",
                "backup_dir",
            )
        }
        emit(lost, "table")
