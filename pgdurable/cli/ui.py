"""``pgdurable ui``: serve the web dashboard (pgdurable.ui) until interrupted."""

from __future__ import annotations

import signal
from pathlib import Path

import click

from pgdurable.cli.options import connect_target, dsn_option, emit, json_option, say


@click.command("ui")
@dsn_option
@click.option(
    "--address",
    default="127.0.0.1:8765",
    show_default=True,
    metavar="HOST:PORT",
    help="Where to listen (port 0: any free one). A non-loopback address asks every "
    "visitor for a database role and password, and needs TLS (or --insecure).",
)
@click.option("--login", is_flag=True, help="Ask for database credentials on loopback too.")
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM certificate (chain): serve HTTPS.",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM private key of --tls-cert.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Serve plain HTTP on a non-loopback address (e.g. behind a TLS proxy).",
)
@click.option(
    "--report",
    "reports",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="An import report (import-* --report FILE), a verify --all --json answer, or "
    "a folder of them, for the migration report page; repeatable.",
)
@json_option
@click.pass_context
def ui_command(ctx, dsn, address, login, tls_cert, tls_key, insecure, reports) -> None:
    """Serve the dashboard: workflows, runs, instances (with their graph) and the
    migration report, as your database role. Stop it with Ctrl-C.

    With --json, prints {"url", "login", "connection"} once it listens."""
    from pgdurable.ui import server

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("give both --tls-cert and --tls-key")
    tls = (tls_cert, tls_key) if tls_cert else None
    where = server.parse_address(address)
    target = connect_target(dsn)
    settings = server.settings_for(
        target.conninfo, where, login=login, tls=tls, insecure=insecure, reports=reports
    )

    def ready(url: str) -> None:
        emit(ctx, {"url": url, "login": settings.login, "connection": target.as_dict()}, url)
        say(f"dashboard on {url} ({'sign-in required' if settings.login else 'no sign-in'})")

    def stop(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve(settings, where, tls, ready=ready)
    except KeyboardInterrupt:
        say("dashboard stopped")
