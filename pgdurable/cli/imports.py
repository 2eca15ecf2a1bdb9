"""The ``import-pgcron``, ``import-queue`` and ``import-airflow`` translations,
``apply`` of the generated files, and ``quickstart`` (all of it on the examples)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from pgdurable.cli.options import (
    EXIT_FAILURE,
    connect_target,
    dsn_option,
    emit,
    json_option,
    say,
    tty_progress,
)

# -- options and output shared by the import-* commands ---------------------------

portable_option = click.option(
    "--portable",
    is_flag=True,
    help="Emit only df.* (no pgdurable extensions); report what is lost.",
)
dry_run_option = click.option(
    "--dry-run",
    is_flag=True,
    help="Write nothing; print a unified diff against the files on disk. Exit 1 when there "
    "is a difference.",
)
report_option = click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every item and diagnostic as JSON to this file.",
)


def _finish_import(ctx: click.Context, source: str, reports, report_path, dry_run: bool) -> None:
    """Print an import's outcome (and write it with --report); exit 1 when an item
    failed or, with --dry-run, when something would change."""
    from pgdurable import pipeline
    from pgdurable.output import write_atomic

    data = pipeline.merged(reports) if reports else {"source": source, "items": [], "summary": {}}
    if report_path is not None:
        write_atomic(report_path, json.dumps(data, indent=2) + "\n")
    texts = []
    for report in reports:
        text = report.text()
        if dry_run:
            changes = report.diff + "".join(f"{c}\n" for c in report.registry_changes)
            text = (changes or "no difference\n") + text
        elif report.written:
            folder = os.path.commonpath([str(p.parent) for p in report.written])
            text += f"\nwrote {len(report.written)} file(s) in {folder}"
        texts.append(text)
    if dry_run:
        data = {
            **data,
            "diff": "".join(r.diff for r in reports),
            "registry_changes": [c for r in reports for c in r.registry_changes],
        }
    emit(ctx, data, "\n".join(texts) or "nothing to translate")
    failed = any(r.summary["failed"] or r.failed_files for r in reports)
    if failed or (dry_run and any(r.has_difference for r in reports)):
        ctx.exit(EXIT_FAILURE)


def _pairs(values: tuple[str, ...], param: click.Parameter) -> tuple[tuple[str, str], ...]:
    """Repeated ``OLD=NEW`` options as pairs (a usage error, exit 2, otherwise)."""
    pairs = []
    for value in values:
        old, sep, new = value.partition("=")
        if not sep or not old or not new:
            raise click.BadParameter(f"{value!r} is not OLD=NEW", param=param)
        pairs.append((old, new))
    return tuple(pairs)


# -- pgdurable import-pgcron / apply ---------------------------------------------


@click.command("import-pgcron")
@click.option("--from-db", "from_db", metavar="DSN", help="Read cron.job from this database.")
@click.option(
    "--from-file",
    "from_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read a COPY/CSV export of cron.job, or a .sql script of cron.schedule(...) calls.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("migrations/pgdurable/pg_cron"),
    show_default=True,
    help="Folder of the generated files (one per job, plus cutover.sql).",
)
@portable_option
@dry_run_option
@click.option(
    "--against-db",
    is_flag=True,
    help="With --dry-run: also compare with the "
    "workflows registered in the database given by --dsn.",
)
@dsn_option
@report_option
@click.option(
    "--default-username",
    metavar="ROLE",
    help="Role for jobs whose source does not name one (SQL scripts).",
)
@click.option(
    "--default-database", metavar="DB", help="Database for jobs whose source does not name one."
)
@click.option(
    "--run-as",
    "run_as",
    metavar="ROLE",
    help="Run the jobs of superusers (e.g. postgres) as ROLE; the report lists the "
    "privileges ROLE needs.",
)
@click.option(
    "--role-map",
    "role_map",
    metavar="OLD=NEW",
    multiple=True,
    callback=lambda ctx, param, values: _pairs(values, param),
    help="Run the jobs of role OLD as NEW (wins over --run-as). Repeatable.",
)
@json_option
@click.pass_context
def import_pgcron(
    ctx: click.Context,
    from_db: str | None,
    from_file: Path | None,
    out_dir: Path,
    portable: bool,
    dry_run: bool,
    against_db: bool,
    dsn: str | None,
    report_path: Path | None,
    default_username: str | None,
    default_database: str | None,
    run_as: str | None,
    role_map: tuple[tuple[str, str], ...],
) -> None:
    """Translate pg_cron jobs into durable workflow files.

    \b
    Each job becomes OUT/<name>.sql, an idempotent file for `pgdurable apply`,
    and OUT/cutover.sql retires the old jobs (never applied automatically).
    Exit codes: 0 ok, 1 an item failed (or --dry-run found a difference),
    2 usage error, 3 no database could be reached.
    """
    from pgdurable import pipeline

    if (from_db is None) == (from_file is None):
        raise click.UsageError("give exactly one of --from-db DSN or --from-file FILE")
    if against_db and not dry_run:
        raise click.UsageError("--against-db only works with --dry-run")
    registry = None
    if against_db:
        from pgdurable import db as database

        target = connect_target(dsn)
        registry = lambda: database.connection(target.conninfo)  # noqa: E731
    report = pipeline.import_pgcron(
        from_db=from_db,
        from_file=from_file,
        out_dir=out_dir,
        portable=portable,
        dry_run=dry_run,
        registry_connection=registry,
        default_username=default_username,
        default_database=default_database,
        run_as=run_as,
        role_map=role_map,
    )
    _finish_import(ctx, "pg_cron", [report], report_path, dry_run)


def _command_template(ctx: click.Context, param: click.Parameter, value: str | None):
    from pgdurable.translators.queue.codetasks import check_template

    if value is None:
        return None
    try:
        return check_template(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


@click.command("import-queue")
@click.argument(
    "paths",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, path_type=Path),
    metavar="PATH...",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "celery", "sidekiq", "k8s", "crontab"]),
    default="auto",
    show_default=True,
    help="Source format; auto detects it per file from the content.",
)
@click.option(
    "--tasks",
    "tasks_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML mapping task names, classes and scripts to SQL, HTTP or manual.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the generated files [default: migrations/pgdurable/<format>; with "
    "several formats, one sub-folder per format].",
)
@portable_option
@dry_run_option
@report_option
@click.option("--default-username", metavar="ROLE", help="Role for jobs whose source names none.")
@click.option("--default-database", metavar="DB", help="Database for jobs whose source names none.")
@click.option(
    "--crontab",
    "crontab_kind",
    type=click.Choice(["auto", "user", "system"]),
    default="auto",
    show_default=True,
    help="Whether crontab files have a user field before the command (system: /etc/crontab, "
    "/etc/cron.d); auto tells by path and content.",
)
@click.option(
    "--code-root",
    "code_roots",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of the app's Python code (repeatable): its @app.task(name=...) and "
    "@shared_task modules say which function a Celery task name calls.",
)
@click.option(
    "--command-template",
    callback=_command_template,
    metavar="TEMPLATE",
    help="Run Sidekiq classes as this command on the worker host, e.g. "
    "'bin/rails runner \"{class}.new.perform({args})\"' ({class}, {args}, {args_json}).",
)
@click.option(
    "--run-container-command",
    is_flag=True,
    help="Run a Kubernetes container's command and args on the worker host (not in its image).",
)
@json_option
@click.pass_context
def import_queue(
    ctx: click.Context,
    paths: tuple[Path, ...],
    fmt: str,
    tasks_file: Path | None,
    out_dir: Path | None,
    portable: bool,
    dry_run: bool,
    report_path: Path | None,
    default_username: str | None,
    default_database: str | None,
    crontab_kind: str,
    code_roots: tuple[Path, ...],
    command_template: str | None,
    run_container_command: bool,
) -> None:
    """Translate Celery beat, Sidekiq, Kubernetes CronJob and crontab schedules.

    \b
    Each job becomes OUT/<name>.sql: an idempotent enqueue function
    pgdurable_jobs.enqueue_<name>(args jsonb) that starts one run, and the
    schedule workflow that calls it. Celery tasks run as Python steps on the
    worker's --code-path; Sidekiq classes with --command-template and
    Kubernetes containers with --run-container-command run as commands; other
    code needs --tasks (OUT/tasks.template.yaml lists the unmapped ones). Each file stands alone:
    one that cannot be parsed (or a Helm template: render it with `helm
    template` first) is a failed item and the others are written. The report
    lists every input file as translated, failed or skipped, with the reason.
    Exit codes: 0 ok, 1 an item or file failed (or --dry-run found a
    difference), 2 usage error.
    """
    from pgdurable import pipeline

    reports = pipeline.import_queue(
        list(paths),
        fmt=fmt,
        tasks_file=tasks_file,
        out_dir=out_dir,
        portable=portable,
        dry_run=dry_run,
        default_username=default_username,
        default_database=default_database,
        crontab_kind=crontab_kind,
        code_roots=code_roots,
        command_template=command_template,
        run_container_command=run_container_command,
    )
    _finish_import(ctx, "queue", reports, report_path, dry_run)


@click.command("apply")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--sql",
    "as_sql",
    is_flag=True,
    help="Print exactly what would be executed instead of executing it.",
)
@dsn_option
@json_option
@click.pass_context
def apply(ctx: click.Context, directory: Path, as_sql: bool, dsn: str | None) -> None:
    """Apply generated workflow files, one transaction per file (cutover.sql excluded).

    Re-applying an unchanged file does nothing; a changed one replaces the
    running instance. The first failing file stops the run (exit 1).
    """
    from pgdurable import apply as applying
    from pgdurable import db as database

    if as_sql:
        applying.apply_directory(directory, applying.PrintSink(sys.stdout))
        return
    target = connect_target(dsn)
    with database.connection(target.conninfo) as conn:
        outcomes = applying.apply_directory(
            directory, applying.DatabaseSink(conn), progress=lambda m: say(m)
        )
    emit(
        ctx,
        {
            "connection": target.as_dict(),
            "applied": [{"file": str(p), "outcome": o} for p, o in outcomes],
        },
        f"applied {len(outcomes)} file(s) from {directory}",
    )


@click.command("import-airflow")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("migrations/pgdurable/airflow"),
    show_default=True,
    help="Folder of the generated files (one per DAG, plus cutover.sql).",
)
@click.option(
    "--connections",
    "connections_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML mapping Airflow conn_ids to databases ({database: NAME} or current) and "
    "HTTP base URLs ({url: URL}).",
)
@portable_option
@dry_run_option
@report_option
@click.option(
    "--default-username", metavar="ROLE", help="Database role the scheduled workflows run as."
)
@click.option(
    "--search-path-map",
    "search_path_map",
    metavar="OLD=NEW",
    multiple=True,
    callback=lambda ctx, param, values: _pairs(values, param),
    help="Read SQL templates of a template_searchpath under OLD (an absolute path on the "
    "Airflow hosts, e.g. /opt/airflow/sql) from NEW on this machine. Repeatable.",
)
@json_option
@click.pass_context
def import_airflow(
    ctx: click.Context,
    paths: tuple[Path, ...],
    out_dir: Path,
    connections_file: Path | None,
    portable: bool,
    dry_run: bool,
    report_path: Path | None,
    default_username: str | None,
    search_path_map: tuple[tuple[str, str], ...],
) -> None:
    """Translate Airflow DAG files (read statically, never imported) into workflow files.

    \b
    PATH is a DAG file or a folder (searched recursively for *.py). Each DAG
    becomes OUT/<dag_id>.sql; files without a DAG are skipped, files that do
    not parse are reported as failed. Exit codes: 0 ok, 1 an item failed (or
    --dry-run found a difference), 2 usage error.
    """
    from pgdurable import pipeline

    report = pipeline.import_airflow(
        paths=list(paths),
        out_dir=out_dir,
        connections_file=connections_file,
        portable=portable,
        dry_run=dry_run,
        default_username=default_username,
        search_path_map=search_path_map,
        progress=tty_progress("translating DAG files"),
    )
    _finish_import(ctx, "airflow", [report], report_path, dry_run)


# -- pgdurable quickstart ------------------------------------------------------------


@click.command("quickstart")
@click.option(
    "--examples",
    "examples_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("fixtures/examples"),
    show_default=True,
    help="Folder of the bundled examples (relative to a clone of the repository).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the generated files [default: $PGDURABLE_HOME/quickstart].",
)
@click.option(
    "--timeout",
    default=120.0,
    show_default=True,
    help="Seconds to wait for the example runs to finish.",
)
@dsn_option
@json_option
@click.pass_context
def quickstart_command(
    ctx: click.Context,
    examples_dir: Path,
    out_dir: Path | None,
    timeout: float,
    dsn: str | None,
) -> None:
    """Import the bundled example jobs, apply them, run them once and check the result.

    \b
    Uses the embedded database unless a DSN is given. For each example
    (pg_cron, Airflow, Kubernetes CronJob) it creates the example's role and
    fixture database, translates the source, applies the generated files,
    starts one run of every job on an in-process worker and checks the data
    the runs left. Safe to rerun. Exit codes: 0 every run and check passed,
    1 something failed, 3 no database could be reached or started.
    """
    from pgdurable import quickstart
    from pgdurable.embedded import default_home

    target = connect_target(dsn)
    out = out_dir if out_dir is not None else default_home() / "quickstart"
    outcome = quickstart.run(target.conninfo, examples_dir, out, timeout=timeout, progress=say)
    emit(ctx, outcome.as_dict(), outcome.text())
    if not outcome.ok:
        ctx.exit(EXIT_FAILURE)
