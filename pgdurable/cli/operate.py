"""Day-two commands on deployed workflows: ``cutover`` and ``rollback`` of a
migration folder, ``retire`` of workflows (see ``pgdurable.cutover``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pgdurable.cli.options import (
    connect_target,
    dsn_option,
    emit,
    json_option,
    require_schema,
    say,
)

folder_argument = click.argument(
    "directory", type=click.Path(exists=True, file_okay=False, path_type=Path)
)
sql_option = click.option(
    "--sql",
    "as_sql",
    is_flag=True,
    help="Print exactly what would be executed (one transaction) instead of executing it.",
)


def _run(ctx: click.Context, command: str, steps, dsn: str | None, as_sql: bool, **sink) -> None:
    from pgdurable import cutover
    from pgdurable import db as database

    outside = cutover.outside_steps(steps)
    if as_sql:
        cutover.PrintSink(sys.stdout).run(steps)
        return
    target = connect_target(dsn)
    with database.connection(target.conninfo) as conn:
        require_schema(conn)
        outcomes = cutover.DatabaseSink(conn, **sink).run(steps)
    for path, outcome in outcomes:
        if outcome is not None:
            say(f"{path.name}: {outcome}")
    text = f"{command}: {len(outcomes)} file(s) run in one transaction, committed"
    if outside:
        text += "\nnow, outside the database:\n" + "\n".join(f"  {line}" for line in outside)
    emit(
        ctx,
        {
            "connection": target.as_dict(),
            "command": command,
            "files": [{"file": str(p), "outcome": o} for p, o in outcomes],
            "outside": outside,
        },
        text,
    )


@click.command("cutover")
@folder_argument
@sql_option
@click.option(
    "--without-worker",
    is_flag=True,
    help="Cut over although no worker runs (the first tick may then run in neither system).",
)
@dsn_option
@json_option
@click.pass_context
def cutover_command(
    ctx: click.Context, directory: Path, as_sql: bool, without_worker: bool, dsn: str | None
) -> None:
    """Start DIRECTORY's workflows and retire their source jobs in ONE transaction.

    \b
    Runs every workflow file (as `apply` does) and cutover.sql together: a pg_cron
    job of this cluster stops in the commit that starts its workflow, so no tick
    runs in both systems or in neither. Run it on the database pg_cron lives in
    (cron.database_name), with a worker running. For sources outside the database
    it prints what to delete there (kubectl, beat entry, crontab line) once
    committed. Undo with `pgdurable rollback DIRECTORY`.
    """
    from pgdurable import cutover

    _run(
        ctx,
        "cutover",
        cutover.cutover_steps(directory),
        dsn,
        as_sql,
        require_worker=not without_worker,
    )


@click.command("rollback")
@folder_argument
@sql_option
@dsn_option
@json_option
@click.pass_context
def rollback_command(ctx: click.Context, directory: Path, as_sql: bool, dsn: str | None) -> None:
    """Undo a cutover: run DIRECTORY's rollback.sql in one transaction.

    It re-creates the pg_cron jobs as they were imported (by name, with schedule,
    command, database, role and active flag), then retires the workflows and the
    functions generated for them.
    """
    from pgdurable import cutover

    _run(ctx, "rollback", cutover.rollback_steps(directory), dsn, as_sql)


@click.command("retire")
@click.argument("target", metavar="WORKFLOW|DIR")
@dsn_option
@json_option
@click.pass_context
def retire_command(ctx: click.Context, target: str, dsn: str | None) -> None:
    """Remove workflows: cancel the instance, delete the registry row and drop the
    functions generated for it (enqueue_*, trigger_*), in one transaction.

    WORKFLOW is SOURCE/NAME (or a NAME only one source registered); DIR is a
    migration folder: every workflow of its files.
    """
    from pgdurable import cutover
    from pgdurable import db as database

    folder = Path(target)
    from_folder = folder.is_dir()
    workflows = cutover.workflows_in(folder) if from_folder else []
    connection = connect_target(dsn)
    with database.connection(connection.conninfo) as conn:
        require_schema(conn)
        if not from_folder:
            workflows = [cutover.resolve_workflow(conn, target)]
        retired = cutover.retire(conn, workflows)
    lines = []
    for r in retired:
        what = "retired" if r["registered"] else "was not registered"
        lines.append(
            f"{r['source']}/{r['name']}: {what}"
            + (f", instance {r['cancelled']} cancelled" if r["cancelled"] else "")
            + (f", dropped {', '.join(r['dropped'])}" if r["dropped"] else "")
        )
    emit(
        ctx,
        {"connection": connection.as_dict(), "retired": retired},
        "\n".join(lines) or "nothing to retire",
    )
