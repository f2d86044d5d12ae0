"""tsadmin demo: an end-to-end demonstration with figures."""

import typer

from engine import VerificationFailed
from engine.harness.demo import run_demo
from tsadmin.render import emit
from tsadmin.state import state


def demo(ctx: typer.Context) -> None:
    """Create a database, ingest, checkpoint, kill a writer, recover, verify; print figures.
    Built in the data directory (the global --data-dir, as every command)."""
    st = state(ctx)
    report = run_demo(st.data_dir)
    if st.format == "table":
        rows = [
            {**step, "figures": " ".join(f"{k}={v}" for k, v in step["figures"].items())}
            for step in report.steps
        ]
        emit(rows, "table", columns=["step", "result", "figures"])
        typer.echo(f"demo database: {report.data_dir}/{report.database}")
    else:
        emit(report.to_json(), st.format)
    if not report.ok:
        raise VerificationFailed("the demo found acknowledged data missing after recovery")


def register(app: typer.Typer) -> None:
    app.command("demo", short_help="The end-to-end demonstration.")(demo)
