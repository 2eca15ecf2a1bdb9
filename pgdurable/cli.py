"""The ``pgdurable`` command line: a thin click layer over library functions.

Exit codes (documented in README.md): 0 success, 1 the job failed, 2 usage
error, 3 no database could be reached or started. Only ``PgDurableError`` is
caught and printed as ``error: …``; ``--traceback`` shows the full stack.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from pgdurable import __version__
from pgdurable.errors import PgDurableError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def say(message: str) -> None:
    """Progress and context go to stderr so stdout stays data."""
    click.echo(f"pgdurable: {message}", err=True)


def emit(ctx: click.Context, data: dict[str, Any], text: str) -> None:
    """Print ``data`` as JSON with --json, else the human ``text``."""
    if ctx.find_root().meta.get("json"):
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        click.echo(text)


def _remember_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.find_root().meta["json"] = True
    return value


json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_remember_json,
    help="Print machine-readable JSON on stdout.",
)
dsn_option = click.option(
    "--dsn",
    metavar="DSN",
    default=None,
    help="Connection string or URL. Default: $PGDURABLE_DSN, $DATABASE_URL, the PG* variables "
    "when PGHOST or PGDATABASE is set, else the embedded database (started if needed).",
)


class PgDurableGroup(click.Group):
    """Turns PgDurableError into `error: …` and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PgDurableError as exc:
            if ctx.meta.get("traceback"):
                raise
            if ctx.meta.get("json"):
                click.echo(
                    json.dumps(
                        {
                            "error": {
                                "type": type(exc).__name__,
                                "message": exc.message,
                                "exit_code": exc.exit_code,
                            }
                        },
                        indent=2,
                    )
                )
            click.echo(f"error: {exc.message}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=PgDurableGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pgdurable")
@click.option("--traceback", is_flag=True, help="Show the full Python traceback on errors.")
@click.pass_context
def cli(ctx: click.Context, traceback: bool) -> None:
    """Migrate pg_cron jobs, Airflow DAGs and queue schedules to durable SQL
    workflows that run inside PostgreSQL.

    \b
    Exit codes: 0 ok, 1 the job failed, 2 usage error,
                3 no database could be reached or started.
    """
    ctx.meta["traceback"] = traceback


def _connect_target(dsn: str | None, progress=say):
    from pgdurable.connection import resolve

    target = resolve(dsn, progress=progress)
    progress(f"using {target.describe()}")
    return target


# -- pgdurable db ------------------------------------------------------------


@cli.group()
def db() -> None:
    """Manage the embedded PostgreSQL cluster (used when no DSN is given).

    The cluster lives in $PGDURABLE_HOME (default: ./.pgdurable/ if it exists,
    else /var/lib/pgdurable for root, ~/.local/share/pgdurable otherwise) and
    listens only on a Unix socket inside its data directory.
    """


def _cluster():
    from pgdurable.embedded import EmbeddedCluster, default_home

    return EmbeddedCluster(default_home())


@db.command("start")
@json_option
@click.pass_context
def db_start(ctx: click.Context) -> None:
    """Initialise (first time) and start the embedded cluster. A no-op when running."""
    cluster = _cluster()
    started = cluster.start(progress=say)
    state = cluster.status()
    message = "started" if started else "already running"
    emit(
        ctx,
        {**state.as_dict(), "started": started, "url": cluster.url()},
        f"embedded PostgreSQL {message} (pid {state.pid}): {cluster.url()}",
    )


@db.command("stop")
@json_option
@click.pass_context
def db_stop(ctx: click.Context) -> None:
    """Stop the embedded cluster (fast shutdown). A no-op when not running."""
    cluster = _cluster()
    stopped = cluster.stop()
    emit(
        ctx,
        {**cluster.status().as_dict(), "stopped": stopped},
        "embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running",
    )


@db.command("status")
@json_option
@click.pass_context
def db_status(ctx: click.Context) -> None:
    """Show whether the embedded cluster exists and runs. Exit 3 when it is not running."""
    cluster = _cluster()
    state = cluster.status()
    if not state.initialized:
        text = f"embedded PostgreSQL: not initialised (home {state.home}); run `pgdurable db start`"
    elif state.running:
        text = (
            f"embedded PostgreSQL {state.major}: running (pid {state.pid}) "
            f"in {state.data_dir} as {state.server_account}\n{cluster.url()}"
        )
    else:
        text = f"embedded PostgreSQL {state.major}: stopped (data in {state.data_dir})"
    emit(ctx, {**state.as_dict(), "url": cluster.url() if state.running else None}, text)
    if not state.running:
        ctx.exit(EXIT_UNAVAILABLE)


@db.command("url")
@json_option
@click.pass_context
def db_url(ctx: click.Context) -> None:
    """Print the connection URL of the embedded cluster (for psql, --dsn, apps)."""
    cluster = _cluster()
    emit(ctx, {"url": cluster.url(), "conninfo": cluster.conninfo()}, cluster.url())


# -- pgdurable schema --------------------------------------------------------


@cli.group()
def schema() -> None:
    """Install, upgrade and inspect the pgdurable schema in a database."""


def _apply_migrations(ctx: click.Context, dsn: str | None, *, require_installed: bool) -> None:
    from pgdurable import db as database
    from pgdurable import migrator
    from pgdurable.errors import SchemaNotInstalled

    target = _connect_target(dsn)
    with database.connection(target.conninfo) as conn:
        before = migrator.status(conn)
        if require_installed and before.installed_version is None:
            raise SchemaNotInstalled()
        applied = migrator.apply(conn, progress=lambda m: say(f"applying {m.label}.sql"))
        after = migrator.status(conn)
    if applied:
        text = (
            f"schema installed at version {after.installed_version} "
            f"({len(applied)} migration(s) applied)"
        )
    else:
        text = f"schema already installed at version {after.installed_version}; nothing to do"
    emit(
        ctx,
        {"connection": target.as_dict(), "applied": [m.label for m in applied], **after.as_dict()},
        text,
    )


@schema.command("install")
@dsn_option
@json_option
@click.pass_context
def schema_install(ctx: click.Context, dsn: str | None) -> None:
    """Install the schema (a no-op that says so when it is already installed)."""
    _apply_migrations(ctx, dsn, require_installed=False)


@schema.command("upgrade")
@dsn_option
@json_option
@click.pass_context
def schema_upgrade(ctx: click.Context, dsn: str | None) -> None:
    """Apply the migrations this version adds to an installed schema."""
    _apply_migrations(ctx, dsn, require_installed=True)


@schema.command("status")
@dsn_option
@json_option
@click.pass_context
def schema_status(ctx: click.Context, dsn: str | None) -> None:
    """Show the installed and latest schema versions. Exit 1 when not up to date."""
    from pgdurable import db as database
    from pgdurable import migrator

    target = _connect_target(dsn)
    with database.connection(target.conninfo) as conn:
        state = migrator.status(conn)
    if state.installed_version is None:
        text = (
            f"schema not installed (latest version {state.latest_version}); "
            "run `pgdurable schema install`"
        )
    elif state.pending:
        text = (
            f"schema version {state.installed_version}, latest {state.latest_version}; pending: "
            + ", ".join(m.label for m in state.pending)
            + "; run `pgdurable schema upgrade`"
        )
    else:
        text = f"schema version {state.installed_version} (up to date)"
    for version in state.modified:
        text += f"\nwarning: migration {version:04d} changed after it was applied"
    emit(ctx, {"connection": target.as_dict(), **state.as_dict()}, text)
    if not state.up_to_date or state.modified or state.unknown:
        ctx.exit(EXIT_FAILURE)


# -- the worker and instances -------------------------------------------------


@cli.command("worker")
@dsn_option
@click.option("--concurrency", default=10, show_default=True, help="Maximum SQL steps in flight.")
@click.option(
    "--until-idle",
    is_flag=True,
    help="Exit when nothing is runnable and no timer is pending (signals alone do not count).",
)
@click.option(
    "--lease-seconds",
    default=30.0,
    show_default=True,
    help="Lease length; a dead worker's "
    "instances are taken over this long after its last heartbeat.",
)
@click.option(
    "--grace",
    default=10.0,
    show_default=True,
    help="On SIGTERM, seconds running steps get to finish before they are cancelled.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per line (one per step transition).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="info logs every step transition; warning keeps problems only "
    "(about 15% more throughput on short steps, see BENCHMARKS.md).",
)
def worker_command(
    dsn: str | None,
    concurrency: int,
    until_idle: bool,
    lease_seconds: float,
    grace: float,
    log_format: str,
    log_level: str,
) -> None:
    """Execute started workflow instances (stops gracefully on SIGTERM)."""
    import asyncio

    from pgdurable.worker import logs, run_worker

    logs.configure(log_format, getattr(logging, log_level.upper()))
    if log_format == "json":  # stderr carries JSON lines only
        target = _connect_target(dsn, progress=lambda text: logs.event("startup", message=text))
    else:
        target = _connect_target(dsn)
    outcomes = asyncio.run(
        run_worker(
            target.conninfo,
            concurrency=concurrency,
            until_idle=until_idle,
            lease_seconds=lease_seconds,
            grace=grace,
            install_signal_handlers=True,
        )
    )
    if log_format != "json":  # the JSON log already ends with worker_stopped
        say(
            "worker stopped: "
            + (", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "idle")
        )


def _one_value(dsn: str | None, query: str, params: list[Any]) -> Any:
    from pgdurable import db as database

    target = _connect_target(dsn)
    with database.connection(target.conninfo, autocommit=True) as conn:
        try:
            row = conn.execute(query, params).fetchone()
        except database.DatabaseError as exc:
            raise PgDurableError(database.error_text(exc)) from exc
    return row[0] if row else None


@cli.command("run")
@dsn_option
@click.argument("file", required=False, type=click.File("r"))
@click.option("-e", "--expr", help="A DSL expression, e.g. \"'SELECT 1' ~> 'SELECT 2'\".")
@click.option("--label", default=None)
@click.option("--wait", is_flag=True, help="Wait for the instance to finish (a worker must run).")
@json_option
@click.pass_context
def run_command(ctx, dsn, file, expr, label, wait) -> None:
    """Start a workflow from FILE (a DSL expression or node JSON) or -e EXPR."""
    import time

    if (file is None) == (expr is None):
        raise click.UsageError("give either FILE or -e EXPR")
    text = expr if expr is not None else file.read().strip().rstrip(";")
    instance_id = _one_value(dsn, f"SELECT df.start(({text})::text, %s)", [label])
    status = "pending"
    while wait and status not in ("completed", "failed", "cancelled"):
        time.sleep(0.2)
        status = _one_value(dsn, "SELECT df.status(%s)", [instance_id])
    _show(ctx, dsn, instance_id)
    if wait and status != "completed":
        ctx.exit(EXIT_FAILURE)


def _show(ctx: click.Context, dsn: str | None, instance_id: str) -> None:
    row = _one_value(
        dsn,
        "SELECT json_build_object('id', i.id, 'label', i.label, 'status', i.status,"
        " 'result', n.result) FROM df.instances i JOIN df.nodes n"
        " ON n.instance_id = i.id AND n.id = i.root_node WHERE i.id = %s",
        [instance_id],
    )
    if row is None:
        raise PgDurableError(f"Instance not found or access denied: {instance_id}")
    result = "" if row["result"] is None else "  " + json.dumps(row["result"])
    emit(ctx, row, f"{row['id']}  {row['status']}{result}")


@cli.command("status")
@dsn_option
@click.argument("instance_id", required=False)
@json_option
@click.pass_context
def status_command(ctx, dsn, instance_id) -> None:
    """Show one instance (status and result), or the 20 most recent."""
    if instance_id:
        _show(ctx, dsn, instance_id)
        return
    rows = _one_value(
        dsn,
        "SELECT coalesce(json_agg(r), '[]') FROM (SELECT id, label, status, created_at"
        " FROM df.instances ORDER BY created_at DESC, id LIMIT 20) r",
        [],
    )
    emit(
        ctx,
        {"instances": rows},
        "\n".join(f"{r['id']}  {r['status']:<9}  {r['label'] or ''}" for r in rows),
    )


@cli.command("explain")
@dsn_option
@click.argument("target")
def explain_command(dsn, target) -> None:
    """Draw an instance's graph with node statuses (df.explain).

    TARGET is an instance id, or a workflow: DSL text (e.g. "'SELECT 1' ~> 'SELECT 2'")
    or node JSON, drawn without running it.
    """
    click.echo(_one_value(dsn, "SELECT df.explain(%s)", [target]))


@cli.command("cancel")
@dsn_option
@click.argument("instance_id")
def cancel_command(dsn, instance_id) -> None:
    """Cancel an instance (df.cancel)."""
    click.echo(_one_value(dsn, "SELECT df.cancel(%s)", [instance_id]))


@cli.command("signal")
@dsn_option
@click.argument("instance_id")
@click.argument("name")
@click.argument("data", required=False, default="{}")
def signal_command(dsn, instance_id, name, data) -> None:
    """Send a signal to an instance (df.signal); DATA is JSON or text."""
    click.echo(_one_value(dsn, "SELECT df.signal(%s, %s, %s)", [instance_id, name, data]))


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
            text += f"\nwrote {len(report.written)} file(s) in {report.written[0].parent}"
        texts.append(text)
    if dry_run:
        data = {
            **data,
            "diff": "".join(r.diff for r in reports),
            "registry_changes": [c for r in reports for c in r.registry_changes],
        }
    emit(ctx, data, "\n".join(texts) or "nothing to translate")
    failed = any(r.summary["failed"] for r in reports)
    if failed or (dry_run and any(r.has_difference for r in reports)):
        ctx.exit(EXIT_FAILURE)


# -- pgdurable import-pgcron / apply ---------------------------------------------


@cli.command("import-pgcron")
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

        target = _connect_target(dsn)
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
    )
    _finish_import(ctx, "pg_cron", [report], report_path, dry_run)


@cli.command("import-queue")
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
) -> None:
    """Translate Celery beat, Sidekiq, Kubernetes CronJob and crontab schedules.

    \b
    Each job becomes OUT/<name>.sql: an idempotent enqueue function
    pgdurable_jobs.enqueue_<name>(args jsonb) that starts one run, and the
    schedule workflow that calls it. Tasks whose body is code need --tasks;
    OUT/tasks.template.yaml lists the unmapped ones. A file that cannot be
    parsed stops the run before anything is written.
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
    )
    _finish_import(ctx, "queue", reports, report_path, dry_run)


@cli.command("apply")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
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
    target = _connect_target(dsn)
    with database.connection(target.conninfo) as conn:
        outcomes = applying.apply_directory(
            directory, applying.DatabaseSink(conn), progress=lambda m: say(m)
        )
    emit(
        ctx,
        {"applied": [{"file": str(p), "outcome": o} for p, o in outcomes]},
        f"applied {len(outcomes)} file(s) from {directory}",
    )


@cli.command("import-airflow")
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
    )
    _finish_import(ctx, "airflow", [report], report_path, dry_run)


@cli.command("show")
@click.argument("target", metavar="NAME|INSTANCE_ID|FILE")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot", "text"]),
    default="text",
    show_default=True,
    help="mermaid (Markdown, GitHub), dot (Graphviz) or text (df.explain's tree).",
)
@dsn_option
def show_command(target: str, fmt: str, dsn: str | None) -> None:
    """Draw a workflow's graph: an instance (with each node's live status), a
    registered workflow ([SOURCE/]NAME from pgdurable.workflows) or a generated
    .sql file (evaluated, not applied)."""
    from pgdurable import db as database
    from pgdurable import show

    conninfo = _connect_target(dsn).conninfo
    with database.connection(conninfo, autocommit=True) as conn:
        click.echo(show.render(conn, target, fmt))


# -- pgdurable quickstart ------------------------------------------------------------


@cli.command("quickstart")
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

    target = _connect_target(dsn)
    out = out_dir if out_dir is not None else default_home() / "quickstart"
    outcome = quickstart.run(target.conninfo, examples_dir, out, timeout=timeout, progress=say)
    emit(ctx, outcome.as_dict(), outcome.text())
    if not outcome.ok:
        ctx.exit(EXIT_FAILURE)


# -- pgdurable verify ------------------------------------------------------------


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


@cli.command("verify")
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
    )
    admin = None if chaos_db else _connect_target(dsn).conninfo
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


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="pgdurable")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
