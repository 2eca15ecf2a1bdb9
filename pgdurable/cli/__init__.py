"""The ``pgdurable`` command line: a thin click layer over library functions.

One module per command family (``db`` for db/schema, ``imports``,
``instances``, ``history`` for runs and status tables, ``operate`` for
cutover/rollback/retire, ``ui`` for the dashboard, ``verify``) and
``options`` for what they share (``--dsn``, ``--json``, output, exit codes).
This module holds the root group and registers every command on it; ``main``
is the console-script entry point.
"""

from __future__ import annotations

import sys

import click

from pgdurable import __version__
from pgdurable.cli import db as _db
from pgdurable.cli import history as _history
from pgdurable.cli import imports as _imports
from pgdurable.cli import instances as _instances
from pgdurable.cli import operate as _operate
from pgdurable.cli import ui as _ui
from pgdurable.cli import verify as _verify
from pgdurable.cli.options import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    PgDurableGroup,
    emit,
    say,
)

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "cli",
    "emit",
    "main",
    "say",
]


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


for _command in (
    _db.db,
    _db.schema,
    _instances.worker_command,
    _instances.run_command,
    _instances.status_command,
    _history.runs_command,
    _instances.explain_command,
    _instances.cancel_command,
    _instances.signal_command,
    _instances.show_command,
    _imports.import_pgcron,
    _imports.import_queue,
    _imports.apply,
    _operate.cutover_command,
    _operate.rollback_command,
    _operate.retire_command,
    _imports.import_airflow,
    _imports.quickstart_command,
    _verify.verify_command,
    _ui.ui_command,
):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="pgdurable")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
