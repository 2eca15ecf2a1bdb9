"""``pgdurable db`` (the embedded cluster) and ``pgdurable schema`` (migrations)."""

from __future__ import annotations

import click

from pgdurable.cli.options import (
    EXIT_FAILURE,
    EXIT_UNAVAILABLE,
    connect_target,
    dsn_option,
    emit,
    json_option,
    say,
)


@click.group()
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


@click.group()
def schema() -> None:
    """Install, upgrade and inspect the pgdurable schema in a database."""


def _apply_migrations(
    ctx: click.Context, dsn: str | None, *, require_installed: bool, as_sql: bool
) -> None:
    import sys

    from pgdurable import db as database
    from pgdurable import migrator
    from pgdurable.errors import SchemaNotInstalled

    target = connect_target(dsn)
    with database.connection(target.conninfo) as conn:
        before = migrator.status(conn)
        if require_installed and before.installed_version is None:
            raise SchemaNotInstalled()
        applied = migrator.apply(
            conn,
            progress=lambda m: say(f"{'pending' if as_sql else 'applying'} {m.label}.sql"),
            sql_out=sys.stdout if as_sql else None,
        )
        after = migrator.status(conn)
    if as_sql:  # stdout holds the script; nothing was changed
        if not applied:
            say(f"schema at version {before.installed_version}: no pending migration")
        return
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


sql_option = click.option(
    "--sql",
    "as_sql",
    is_flag=True,
    help="Print the pending migrations as the SQL that would run (one transaction each) "
    "instead of running them.",
)


@schema.command("install")
@dsn_option
@sql_option
@json_option
@click.pass_context
def schema_install(ctx: click.Context, dsn: str | None, as_sql: bool) -> None:
    """Install the schema (a no-op that says so when it is already installed)."""
    _apply_migrations(ctx, dsn, require_installed=False, as_sql=as_sql)


@schema.command("upgrade")
@dsn_option
@sql_option
@json_option
@click.pass_context
def schema_upgrade(ctx: click.Context, dsn: str | None, as_sql: bool) -> None:
    """Apply the migrations this version adds to an installed schema."""
    _apply_migrations(ctx, dsn, require_installed=True, as_sql=as_sql)


@schema.command("status")
@dsn_option
@json_option
@click.pass_context
def schema_status(ctx: click.Context, dsn: str | None) -> None:
    """Show the installed and latest schema versions. Exit 1 when not up to date."""
    from pgdurable import db as database
    from pgdurable import migrator

    target = connect_target(dsn)
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
