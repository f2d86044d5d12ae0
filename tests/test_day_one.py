"""Day one for an operator (issue 25): the smaller things that wear trust down, each
checked through the real CLI."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli


def test_partial_aws_credentials_are_one_store_line_not_an_internal_error(
    data_dir: Path,
) -> None:
    result = run_cli(
        data_dir,
        "backup",
        "list",
        "s3://bucket/prefix",
        env={"AWS_ACCESS_KEY_ID": "only-half", "AWS_REGION": "us-east-1"},
    )
    assert result.code == 1, result.err
    assert "internal error" not in result.err and "Traceback" not in result.err
    assert "Partial credentials" in result.err and "AWS_SECRET_ACCESS_KEY" in result.err
    assert len(result.err.strip().splitlines()) == 2  # Error: ... / Try: ...


def test_a_refused_option_is_not_told_what_was_committed(data_dir: Path) -> None:
    assert run_cli(data_dir, "db", "create", "m").code == 0
    (data_dir / "a.csv").write_text("time,v\n2026-01-01T00:00:00Z,1\n")
    result = run_cli(data_dir, "ingest", "csv", "m", str(data_dir / "a.csv"), "--tz", "Mars/Base")
    assert result.code == 2 and "unknown time zone" in result.err
    assert "rows committed" not in result.err, result.err


def test_wal_inspect_shows_a_damaged_files_problem_as_text(data_dir: Path) -> None:
    assert run_cli(data_dir, "db", "create", "m").code == 0
    assert run_cli(data_dir, "ingest", "lp", "m", "-", stdin="c v=1 1\n").code == 0
    path = data_dir / "m" / "wal" / "current.wal"
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF  # inside the file header
    path.write_bytes(bytes(data))
    shown = run_cli(data_dir, "wal", "inspect", "m")
    assert "header checksum mismatch" in shown.out
    assert "{'reason'" not in shown.out, shown.out
    as_json = run_cli(data_dir, "--format", "json", "wal", "inspect", "m").json()
    problems = [f["problem"] for f in as_json["files"] if f.get("problem")]
    assert problems and "reason" in problems[0]  # the JSON keeps its fields


def test_help_lists_the_choices_of_options_that_have_them(data_dir: Path) -> None:
    for args, choices in (
        (("--help",), "table|json|jsonl|csv"),
        (("ingest", "lp", "--help"), "abort|skip"),
        (("ingest", "lp", "--help"), "ns|us|ms|s|m|h"),
        (("db", "create", "--help"), "ms|us|ns"),
        (("restore", "--help"), "fail|replace|merge"),
        (("crash", "simulate", "--help"), "kill|power-loss|torn-write|bitflip|checkpoint"),
    ):
        shown = run_cli(data_dir, *args, env={"COLUMNS": "200"})
        assert choices in shown.out, (args, shown.out)


def test_a_grafana_csv_export_loads_without_options(data_dir: Path) -> None:
    """Grafana writes `"Time";"Series";"Value"`: the header's `Time` is the timestamp
    column (candidates match in any case) and `;` is found from the header line."""
    assert run_cli(data_dir, "db", "create", "m").code == 0
    export = data_dir / "grafana.csv"
    export.write_text(
        '"Time";"Series";"Value"\n'
        '"2026-11-24 10:00:00";"cpu, host a";0.5\n'
        '"2026-11-24 10:00:10";"cpu, host a";0.7\n'
    )
    done = run_cli(data_dir, "ingest", "csv", "m", str(export), "--table", "g", "--tags", "Series")
    assert done.code == 0, done.err
    rows = run_cli(data_dir, "--format", "json", "select", "m", "g").json()
    assert [r["Value"] for r in rows] == [0.5, 0.7]
    assert rows[0]["Series"] == "cpu, host a"  # the comma inside quotes is no delimiter
    tabbed = data_dir / "tabbed.tsv"
    tabbed.write_text("timestamp\thost\tv\n1732442400\ta\t1\n")
    assert run_cli(data_dir, "ingest", "csv", "m", str(tabbed), "--table", "t").code == 0
    assert run_cli(data_dir, "--format", "json", "select", "m", "t").json()[0]["v"] == 1


def test_durations_take_units_and_an_ambiguous_bare_number_is_refused(data_dir: Path) -> None:
    """`config set retention 6` meant 6 days: a bare number is refused where a reader could
    not tell its unit; duration options take units (`--flush-interval 500ms`)."""
    assert run_cli(data_dir, "db", "create", "m").code == 0
    for key in ("retention", "checkpoint_interval", "replica_hold_age", "replica_timeout"):
        refused = run_cli(data_dir, "config", "set", "m", key, "6")
        assert refused.code == 2 and "has no unit" in refused.err, (key, refused.err)
        assert "Input should be" not in refused.err
    assert run_cli(data_dir, "config", "set", "m", "checkpoint_interval", "90s").code == 0
    assert run_cli(data_dir, "config", "set", "m", "wal_fsync_period", "200").code == 0  # ms
    assert run_cli(data_dir, "db", "create", "n", "--checkpoint-interval", "30").code == 2
    for flush in ("500ms", "0.5", "1s"):
        done = run_cli(
            data_dir, "ingest", "lp", "m", "-", "--flush-interval", flush, stdin="c v=1 1\n"
        )
        assert done.code == 0, (flush, done.err)
    bad = run_cli(data_dir, "ingest", "lp", "m", "-", "--flush-interval", "soon", stdin="")
    assert bad.code == 2 and "invalid flush interval" in bad.err


def test_no_raw_validation_phrases_reach_the_operator(data_dir: Path) -> None:
    assert run_cli(data_dir, "db", "create", "m").code == 0
    for args in (
        ("ingest", "lp", "m", "-", "--batch-rows", "abc"),
        ("wal", "dump", "m", "--lsn", "x"),
        ("select", "m", "cpu", "--limit", "x"),
        ("wal", "inspect", "m", "--limit", "-3"),
    ):
        result = run_cli(data_dir, *args, stdin="")
        assert result.code == 2, (args, result.err)
        assert "Input should be" not in result.err and "expected" in result.err, result.err


def test_with_format_json_an_error_is_one_json_object_on_stderr(data_dir: Path) -> None:
    import json

    assert run_cli(data_dir, "db", "create", "m").code == 0
    for args, code in (
        (("--format", "json", "select", "m", "nope"), 1),
        (("select", "m", "nope", "--format", "json"), 1),
        (("--format", "json", "ingest", "lp", "m", "-", "--batch-rows", "x"), 2),
        (("--format", "json", "db", "drop", "m"), 2),  # no --yes
    ):
        result = run_cli(data_dir, *args, stdin="")
        assert result.code == code, (args, result.err)
        lines = result.err.strip().splitlines()
        assert len(lines) == 1, result.err
        body = json.loads(lines[0])
        assert body["exit_code"] == code and body["error"] and "hint" in body
    plain = run_cli(data_dir, "select", "m", "nope")
    assert plain.err.startswith("Error: ")


def _complete(data_dir: Path, words: str) -> list[str]:
    """What bash completion offers for the last word of ``words`` (Typer's protocol)."""
    import subprocess
    import sys

    from tests.conftest import CLEAN_ENV

    line = f"tsadmin --data-dir {data_dir} {words}"
    done = subprocess.run(
        [sys.executable, "-m", "tsadmin"],
        env={
            **CLEAN_ENV,
            "_TSADMIN_COMPLETE": "complete_bash",
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(line.split()) - (0 if line.endswith(" ") else 1)),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_shell_completion_offers_databases_tables_and_setting_keys(data_dir: Path) -> None:
    for name in ("metrics", "mydb", "other"):
        assert run_cli(data_dir, "db", "create", name).code == 0
    assert run_cli(data_dir, "ingest", "lp", "metrics", "-", stdin="cpu v=1\nmem v=2\n").code == 0
    assert _complete(data_dir, "select m") == ["metrics", "mydb"]
    assert _complete(data_dir, "db drop ") == ["metrics", "mydb", "other"]
    assert _complete(data_dir, "select metrics ") == ["cpu", "mem"]
    assert _complete(data_dir, "config set metrics wal_") == ["wal_level", "wal_fsync_period"]
    assert _complete(data_dir / "missing", "select ") == []  # no data dir: nothing, no error


def test_reports_say_what_they_show(data_dir: Path) -> None:
    """db show lists the WAL files, a checksum of chosen tables says so, a dry-run repair
    of a sound WAL says one plain line, durations are to the millisecond."""
    import json

    assert run_cli(data_dir, "db", "create", "m").code == 0
    assert run_cli(data_dir, "ingest", "lp", "m", "-", stdin="cpu v=1\nmem v=2\n").code == 0
    for fmt in ("table", "csv"):
        shown = run_cli(data_dir, "--format", fmt, "db", "show", "m")
        assert "file=current.wal bytes=" in shown.out and "item(s)" not in shown.out
    checksum = run_cli(data_dir, "db", "checksum", "m", "--table", "cpu").out
    assert "table(s) cpu of m: sha256" in checksum and "database m:" not in checksum
    dry = run_cli(data_dir, "wal", "repair", "m", "--dry-run")
    assert dry.code == 0 and dry.out.strip().splitlines() == [
        "nothing to repair: the WAL is sound"
    ], dry.out
    report = json.loads(run_cli(data_dir, "--format", "json", "checkpoint", "m").out)[0]
    assert report["seconds"] == round(report["seconds"], 3)


def test_one_grammar_positional_database_with_the_old_spellings_kept(tmp_path: Path) -> None:
    """DB is positional in restore and follow (serve: tests/test_serve.py), --db still
    works there, and the two must agree; compact takes --all."""
    data, store = tmp_path / "d", tmp_path / "store"
    assert run_cli(data, "db", "create", "m").code == 0
    assert run_cli(data, "db", "create", "n").code == 0
    assert run_cli(data, "ingest", "lp", "m", "-", stdin="cpu v=1\n").code == 0
    assert run_cli(data, "backup", "create", "m", "--to", str(store)).code == 0
    [archive] = [p for p in store.iterdir() if not p.name.startswith(".")]
    assert run_cli(data, "restore", str(archive), "copy_a").code == 0
    assert run_cli(data, "restore", str(archive), "--db", "copy_b").code == 0
    clash = run_cli(data, "restore", str(archive), "copy_c", "--db", "copy_d")
    assert clash.code == 2 and "name it once" in clash.err
    listed = {d["name"] for d in run_cli(data, "--format", "json", "db", "list").json()}
    assert {"copy_a", "copy_b"} <= listed and not {"copy_c", "copy_d"} & listed
    assert run_cli(data, "replica", "add", "m", str(tmp_path / "rs")).code == 0
    assert run_cli(data, "replicate", "m", "--once").code == 0
    site_b = tmp_path / "b"
    assert run_cli(site_b, "follow", str(tmp_path / "rs"), "m", "--once").code == 0
    assert run_cli(site_b, "follow", str(tmp_path / "rs"), "--db", "m", "--once").code == 0
    assert run_cli(site_b, "follow", str(tmp_path / "rs"), "--once").code == 2
    compacted = run_cli(data, "--format", "json", "compact", "--all")
    assert compacted.code == 0, compacted.err
    assert {r["database"] for r in compacted.json()} == listed
    assert all(r["status"] == "ok" for r in compacted.json())
    assert run_cli(data, "compact").code == 2
