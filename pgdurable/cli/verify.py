"""``pgdurable verify``: replay the old job and the new workflow and compare."""

from __future__ import annotations

from pathlib import Path

import click

from pgdurable.cli.options import EXIT_FAILURE, connect_target, dsn_option, emit, json_option, say


def _logical_date(value: str | None):
    if value is None:
        return None
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO date (e.g. 2024-01-02 or 2024-01-02T03:00:00+00:00)",
            param_hint="--logical-date",
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@click.command("verify")
@click.option("--pgcron", "pgcron_spec", metavar="FILE[:JOB]", help="A pg_cron export or script.")
@click.option("--airflow", "airflow_spec", metavar="DAG_FILE[:DAG_ID]", help="An Airflow DAG file.")
@click.option("--queue", "queue_spec", metavar="FILE[:ENTRY]", help="A queue-worker config file.")
@click.option(
    "--all",
    "all_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Verify every generated workflow file of this migration folder (sources from headers).",
)
@click.option(
    "--fixture",
    required=True,
    type=click.Path(path_type=Path),
    help="A .sql file or folder of them (schema + seed data), also looked up under fixtures/.",
)
@click.option(
    "--reference",
    type=click.Choice(["builtin", "airflow"]),
    default="builtin",
    show_default=True,
    help="Airflow: pgdurable's own executor, or a real Apache Airflow (3: "
    "$PGDURABLE_AIRFLOW_VENV, 2: $PGDURABLE_AIRFLOW2_VENV).",
)
@click.option(
    "--airflow-version",
    type=click.Choice(["2", "3"]),
    help="With --reference airflow: run Apache Airflow 2.10 or 3.3 (default: the one the "
    "DAG's imports are written for).",
)
@click.option("--logical-date", "logical_date", metavar="DATE", help="Airflow logical date (ds).")
@click.option("--runs", default=1, show_default=True, help="Replay this many runs on each side.")
@click.option("--chaos", default=0, metavar="N", help="Kill the worker at N random points.")
@click.option("--chaos-db", is_flag=True, help="With --chaos: also crash and restart PostgreSQL.")
@click.option("--seed", type=int, default=None, help="Random seed of the chaos points.")
@click.option(
    "--compare",
    "compare_tables",
    metavar="TABLES",
    help="Comma-separated tables, materialized views or sequences (default: every table "
    "and materialized view).",
)
@click.option("--ignore-columns", metavar="T.C,...", help="Columns left out of the comparison.")
@click.option("--ignore-serials", is_flag=True, help="Also leave out serial/identity columns.")
@click.option(
    "--workflow",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Verify this generated file instead of translating the source now.",
)
@click.option(
    "--tasks",
    "tasks_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Queue sources: the --tasks mapping the import used.",
)
@click.option(
    "--run-as",
    metavar="ROLE",
    help="Role both sides run as (default: the job's role and the file header's run_as).",
)
@click.option(
    "--accept-failures",
    is_flag=True,
    help="Count a run that failed on both sides as equal (default: BOTH FAILED, exit 1).",
)
@click.option(
    "--from-db",
    "from_db",
    metavar="DSN",
    help="pg_cron: read the jobs from this database's cron.job (a folder made by "
    "import-pgcron --from-db; default: the server's cron.database_name).",
)
@click.option(
    "--code-path",
    "code_paths",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Code root of the new side's worker for Python and command steps (repeatable; "
    "default: the generated file's folder when it holds Python modules).",
)
@click.option(
    "--allow-program",
    "allow_programs",
    multiple=True,
    metavar="PATH",
    help="Absolute program the new side's command steps may run (repeatable; bare names "
    "the steps use are found on PATH).",
)
@click.option("--rows", default=10, show_default=True, help="Differing rows shown per table.")
@dsn_option
@json_option
@click.pass_context
def verify_command(
    ctx: click.Context,
    pgcron_spec,
    airflow_spec,
    queue_spec,
    all_dir,
    fixture,
    reference,
    airflow_version,
    logical_date,
    runs,
    chaos,
    chaos_db,
    seed,
    compare_tables,
    ignore_columns,
    ignore_serials,
    workflow,
    tasks_file,
    run_as,
    accept_failures,
    from_db,
    code_paths,
    allow_programs,
    rows,
    dsn,
) -> None:
    """Replay the old job and the new workflow on two clones of a fixture database
    and compare the data they leave (and, for Airflow, the task states).

    \b
    Outcomes count: a run that failed on one side only is DIFFERENT, on both
    sides BOTH FAILED (unless --accept-failures). Exit codes: 0 equal, 1
    different or both failed (or a file of --all failed), 2 usage error, 3 no
    database could be reached or started.
    """
    from pgdurable import verify as verifying
    from pgdurable.verify import compare, report

    given = [
        (k, v)
        for k, v in (
            ("pgcron", pgcron_spec),
            ("airflow", airflow_spec),
            ("queue", queue_spec),
            ("all", all_dir),
        )
        if v is not None
    ]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --pgcron, --airflow, --queue or --all")
    if chaos < 0:
        raise click.UsageError("--chaos must be 0 or more")
    options = verifying.Options(
        fixture=fixture,
        reference=reference,
        logical_date=_logical_date(logical_date),
        runs=runs,
        chaos=chaos,
        chaos_db=chaos_db,
        seed=seed,
        compare=compare.Options(
            tables=[t.strip() for t in compare_tables.split(",") if t.strip()]
            if compare_tables
            else None,
            ignore=[c.strip() for c in (ignore_columns or "").split(",") if c.strip()],
            ignore_serials=ignore_serials,
        ),
        workflow=workflow,
        tasks_file=tasks_file,
        run_as=run_as,
        accept_failures=accept_failures,
        from_db=from_db,
        airflow_version=airflow_version,
        code_paths=list(code_paths),
        allow_programs=list(allow_programs),
    )
    admin = None if chaos_db else connect_target(dsn).conninfo
    kind, spec = given[0]
    if kind == "all":

        def progress(i: int, n: int, name: str) -> None:
            filled = int(20 * (i - 1) / n)
            say(f"[{'#' * filled}{'.' * (20 - filled)}] {i}/{n} {name}")

        items = verifying.verify_all(spec, options, admin, progress)
        say(f"[{'#' * 20}] {len(items)}/{len(items)} done")
        data = {
            "items": [
                {
                    "file": i.path,
                    "outcome": i.outcome,
                    "error": i.error,
                    "verification": i.verification.as_dict(rows) if i.verification else None,
                }
                for i in items
            ]
        }
        emit(ctx, data, report.batch_text(items))
        if any(i.outcome != "equal" for i in items):
            ctx.exit(EXIT_FAILURE)
        return
    result = verifying.verify(kind, spec, options, admin, progress=say)
    emit(ctx, result.as_dict(rows), result.text(rows))
    if not result.equal:
        ctx.exit(EXIT_FAILURE)
