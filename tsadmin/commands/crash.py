"""tsadmin crash simulate: crash real writers and check recovery against the wal_level's promise."""

from typing import Annotated

import typer

from engine import VerificationFailed
from engine.harness import crashsim
from tsadmin.progress import count_progress
from tsadmin.render import emit
from tsadmin.state import command_group, state

app = command_group(
    "Prove recovery: crash real writer processes and check what survived.",
    short_help="Prove recovery by crashing real writers.",
)


@app.command("simulate", short_help="Crash real writers; exit 3 if a promise broke.")
def simulate(
    ctx: typer.Context,
    db: Annotated[
        str,
        typer.Argument(
            help="Database whose settings are tested (its data is not touched).",
            show_default=False,
            metavar="DB",
        ),
    ],
    fault: Annotated[
        str | None,
        typer.Option(
            "--fault",
            help="kill, power-loss, torn-write, bitflip or checkpoint.",
            show_default=False,
            metavar="kill|power-loss|torn-write|bitflip|checkpoint",
        ),
    ] = None,
    mode_alias: Annotated[
        str | None,
        typer.Option(
            "--mode", help="The same as --fault (kept for scripts written before it).", hidden=True
        ),
    ] = None,
    trials: Annotated[int, typer.Option(help="How many crashes.", min=1)] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the random choices (reproducible runs).")] = 0,
    rows: Annotated[
        int, typer.Option(help="Rows each writer would write if not crashed.", min=1)
    ] = 100_000,
    batch_rows: Annotated[
        int, typer.Option("--batch-rows", help="Rows per acknowledged batch.", min=1)
    ] = 50,
) -> None:
    """One row per trial and a verdict; exit 3 if any promise was broken."""
    st = state(ctx)
    if fault is not None and mode_alias is not None and fault != mode_alias:
        raise typer.BadParameter("--fault and --mode say different things", param_hint="--fault")
    mode = fault or mode_alias
    if mode is None:
        raise typer.BadParameter(
            "name the fault: kill, power-loss, torn-write, bitflip or checkpoint",
            param_hint="--fault",
        )
    options = crashsim.SimOptions(
        mode=mode, trials=trials, seed=seed, rows=rows, batch_rows=batch_rows
    )
    with count_progress(st.show_progress, trials, f"crash {mode}") as progress:
        report = crashsim.simulate(st.data_dir, db, options, progress)
    if st.format == "table":
        emit([t.to_json() for t in report.trials], "table")
        seconds = sum(t.seconds for t in report.trials) / len(report.trials)
        verdict = f"{report.broken} BROKEN" if report.broken else "all promises kept"
        typer.echo(
            f"{mode} x {trials} on wal_level {report.wal_level}: {verdict}; "
            f"{report.tested} trial(s) tested something, "
            f"{trials - report.tested} inconclusive ({seconds:.2f} s per trial, seed {seed})"
        )
    else:
        emit(
            report.to_json() if st.format == "json" else [t.to_json() for t in report.trials],
            st.format,
        )
    if report.broken:
        raise VerificationFailed(
            f"{report.broken} of {trials} trial(s) broke the {report.wal_level} promise"
        )
    if not report.tested:
        raise VerificationFailed(
            f"none of the {trials} trial(s) had anything to check: nothing is proven",
            hint="run more trials, or larger ones (more rows)",
        )
