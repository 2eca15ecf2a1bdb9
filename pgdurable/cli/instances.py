"""Commands on workflow instances: ``worker`` runs them; ``run``, ``status``,
``explain``, ``cancel``, ``signal`` and ``show`` start, inspect and steer them."""

from __future__ import annotations

import json
import logging
import os

import click

from pgdurable.cli import history
from pgdurable.cli.options import (
    EXIT_FAILURE,
    connect_target,
    dsn_option,
    emit,
    json_option,
    one_value,
    require_schema,
    say,
)
from pgdurable.errors import PgDurableError


@click.command("worker")
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
    "--metrics-address",
    metavar="HOST:PORT",
    help="Serve Prometheus metrics at http://HOST:PORT/metrics, e.g. 127.0.0.1:9464 "
    "(loopback addresses only, unless --metrics-allow-remote).",
)
@click.option(
    "--metrics-allow-remote",
    is_flag=True,
    help="Allow a --metrics-address that is not loopback (metrics name your workflows).",
)
@click.option(
    "--code-path",
    "code_paths",
    multiple=True,
    type=click.Path(file_okay=False),
    envvar="PGDURABLE_CODE_PATH",
    metavar="DIR",
    help="A code root: code steps (pgdurable.python, pgdurable.command) run only modules and "
    "programs under these directories (repeatable; $PGDURABLE_CODE_PATH holds a "
    f"{os.pathsep!r}-separated list).",
)
@click.option(
    "--allow-program",
    "allow_programs",
    multiple=True,
    type=click.Path(dir_okay=False),
    envvar="PGDURABLE_ALLOW_PROGRAMS",
    metavar="PATH",
    help="An absolute program outside the code roots that command steps may run, "
    "e.g. /usr/bin/psql (repeatable).",
)
@click.option(
    "--code-memory-limit",
    type=click.IntRange(min=1),
    default=None,
    metavar="MIB",
    help="Address-space limit of each code step's child process (RLIMIT_AS).",
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
@click.pass_context
def worker_command(
    ctx: click.Context,
    dsn: str | None,
    concurrency: int,
    until_idle: bool,
    lease_seconds: float,
    grace: float,
    metrics_address: str | None,
    metrics_allow_remote: bool,
    code_paths: tuple[str, ...],
    allow_programs: tuple[str, ...],
    code_memory_limit: int | None,
    log_format: str,
    log_level: str,
) -> None:
    """Execute started workflow instances (stops gracefully on SIGTERM).

    Exits 3 when no database can be reached at start; once running, it rides out
    a database restart (retrying with backoff) instead.
    """
    import asyncio

    from pgdurable import db as database
    from pgdurable.errors import DatabaseUnavailable
    from pgdurable.worker import logs, run_worker
    from pgdurable.worker.code_roots import CodeConfig

    if metrics_address is not None:  # a bad address is a usage error, before connecting
        from pgdurable.worker.metrics import is_loopback, parse_address, require_client

        require_client()  # a missing prometheus_client: one line with the fix, before connecting

        try:
            host, _ = parse_address(metrics_address)
        except PgDurableError as exc:
            raise click.BadParameter(exc.message, param_hint="--metrics-address") from None
        if not metrics_allow_remote and not is_loopback(host):
            raise click.BadParameter(
                f"{host} is not a loopback address; add --metrics-allow-remote to serve "
                "metrics on it (and restrict who can reach it)",
                param_hint="--metrics-address",
            )
    try:
        code = CodeConfig.build(code_paths, allow_programs, code_memory_limit)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    logs.configure(log_format, getattr(logging, log_level.upper()))
    if log_format == "json":  # stderr carries JSON lines only
        target = connect_target(dsn, progress=lambda text: logs.event("startup", message=text))
    else:
        target = connect_target(dsn)
    # One connection first: a database that cannot be reached at start is a
    # configuration error (exit 3, one line), not an outage to retry through.
    try:
        database.connect(target.conninfo, autocommit=True).close()
    except DatabaseUnavailable as exc:
        if log_format != "json":
            raise
        logs.event("database_unavailable", logging.ERROR, message=exc.message)
        ctx.exit(exc.exit_code)
    outcomes = asyncio.run(
        run_worker(
            target.conninfo,
            concurrency=concurrency,
            until_idle=until_idle,
            lease_seconds=lease_seconds,
            grace=grace,
            code=code,
            install_signal_handlers=True,
            metrics_address=metrics_address,
            metrics_allow_remote=metrics_allow_remote,
        )
    )
    if log_format != "json":  # the JSON log already ends with worker_stopped
        say(
            "worker stopped: "
            + (", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "idle")
        )


@click.command("run")
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
    target = connect_target(dsn)
    instance_id = one_value(target, f"SELECT df.start(({text})::text, %s)", [label])
    status = "pending"
    while wait and status not in ("completed", "failed", "cancelled"):
        time.sleep(0.2)
        status = one_value(target, "SELECT df.status(%s)", [instance_id])
    _show(ctx, target, instance_id)
    if wait and status != "completed":
        ctx.exit(EXIT_FAILURE)


def _show(ctx: click.Context, target, instance_id: str) -> None:
    row = one_value(
        target,
        "SELECT json_build_object('id', i.id, 'label', i.label, 'status', i.status,"
        " 'result', n.result) FROM df.instances i JOIN df.nodes n"
        " ON n.instance_id = i.id AND n.id = i.root_node WHERE i.id = %s",
        [instance_id],
    )
    if row is None:
        raise PgDurableError(f"Instance not found or access denied: {instance_id}")
    result = "" if row["result"] is None else "  " + json.dumps(row["result"])
    emit(ctx, {**row, "connection": target.as_dict()}, f"{row['id']}  {row['status']}{result}")


@click.command("status")
@dsn_option
@click.argument("instance_id", required=False)
@click.option(
    "--state",
    help="Only instances (and workflows) in this state: "
    + ", ".join(history.INSTANCE_STATES + history.WORKFLOW_STATES[2:]),
)
@click.option("--label", help="Only instances (workflows) with this label (name); * matches any.")
@click.option(
    "--limit", type=click.IntRange(1, 10000), default=20, show_default=True, help="Newest N."
)
@json_option
@click.pass_context
def status_command(ctx, dsn, instance_id, state, label, limit) -> None:
    """Show one instance (status and result), or registered workflows (state,
    last run and error, next due time) and the newest instances.

    A loop sleeping until its next tick is `waiting`, not `running`.
    """
    if state is not None and state not in history.INSTANCE_STATES + history.WORKFLOW_STATES:
        raise click.BadParameter(f"unknown state {state!r}", param_hint="--state")
    target = connect_target(dsn)
    if instance_id:
        _show(ctx, target, instance_id)
        return
    history.status_listing(ctx, target, state, label, limit)


@click.command("explain")
@dsn_option
@click.argument("target")
@json_option
@click.pass_context
def explain_command(ctx, dsn, target) -> None:
    """Draw an instance's graph with node statuses (df.explain).

    TARGET is an instance id, or a workflow: DSL text (e.g. "'SELECT 1' ~> 'SELECT 2'")
    or node JSON, drawn without running it.
    """
    _answer(ctx, dsn, "explain", "SELECT df.explain(%s)", [target], target=target)


@click.command("cancel")
@dsn_option
@click.argument("instance_id")
@json_option
@click.pass_context
def cancel_command(ctx, dsn, instance_id) -> None:
    """Cancel an instance (df.cancel)."""
    _answer(ctx, dsn, "cancel", "SELECT df.cancel(%s)", [instance_id], instance_id=instance_id)


@click.command("signal")
@dsn_option
@click.argument("instance_id")
@click.argument("name")
@click.argument("data", required=False, default="{}")
@json_option
@click.pass_context
def signal_command(ctx, dsn, instance_id, name, data) -> None:
    """Send a signal to an instance (df.signal); DATA is JSON or text."""
    _answer(
        ctx,
        dsn,
        "signal",
        "SELECT df.signal(%s, %s, %s)",
        [instance_id, name, data],
        instance_id=instance_id,
        signal=name,
    )


def _answer(ctx: click.Context, dsn, command: str, query: str, params, **given) -> None:
    """Print what a df.* control function answered: its text, or with --json the
    answer beside the arguments and the connection."""
    target = connect_target(dsn)
    answer = one_value(target, query, params)
    emit(
        ctx,
        {"connection": target.as_dict(), "command": command, **given, "answer": answer},
        "" if answer is None else str(answer),
    )


@click.command("show")
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
@json_option
@click.pass_context
def show_command(ctx: click.Context, target: str, fmt: str, dsn: str | None) -> None:
    """Draw a workflow's graph: an instance (with each node's live status), a
    registered workflow ([SOURCE/]NAME from pgdurable.workflows) or a generated
    .sql file (read offline: no database needed)."""
    from pgdurable import db as database
    from pgdurable import show

    connection = None
    if show.is_file(target) and target.endswith(".sql"):
        graph, tree = show.build(None, target)
    else:
        connection = connect_target(dsn)
        with database.connection(connection.conninfo, autocommit=True) as conn:
            require_schema(conn)
            try:
                graph, tree = show.build(conn, target)
            except database.DatabaseError as exc:
                raise PgDurableError(database.error_text(exc)) from exc
    drawn = show.draw(graph, tree, fmt)
    emit(
        ctx,
        {
            "connection": connection.as_dict() if connection else None,
            "target": target,
            "format": fmt,
            **graph.as_dict(),
            "drawing": drawn,
        },
        drawn,
    )
