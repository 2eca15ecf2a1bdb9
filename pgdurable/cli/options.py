"""Options, output and exit codes shared by every ``pgdurable`` command.

Exit codes (documented in README.md): 0 success, 1 the job failed, 2 usage
error, 3 no database could be reached or started, 130 interrupted (Ctrl-C).
Only ``PgDurableError`` is caught and printed as ``error: …``; ``--traceback``
shows the full stack.
Progress goes to stderr (``say``) so stdout stays data (``emit``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from pgdurable.errors import MissingDependency, PgDurableError, SchemaNotInstalled

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


def say(message: str) -> None:
    """Progress and context go to stderr so stdout stays data."""
    click.echo(f"pgdurable: {message}", err=True)


def tty_progress(what: str) -> Callable[[int, int], None] | None:
    """A ``what done/total`` line on stderr, redrawn in place at most ten times a
    second, or None when stderr is not a terminal (logs and pipes stay clean)."""
    stream = sys.stderr
    if not stream.isatty():
        return None
    shown = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - shown[0] < 0.1:
            return
        shown[0] = now
        stream.write(f"\rpgdurable: {what} {done}/{total}" + ("\n" if done >= total else ""))
        stream.flush()

    return show


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
        except KeyboardInterrupt:
            # click would print "Aborted!" and exit 1; a Ctrl-C exits 130 (the import's
            # process pool is already gone, see pgdurable.parallel). At once: a second
            # SIGINT still pending in a thread that blocked it would otherwise end the
            # interpreter's shutdown as killed by SIGINT instead.
            click.echo("\npgdurable: interrupted", err=True)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        except ModuleNotFoundError as exc:
            # a package of pyproject's dependencies missing from this venv (an install
            # that drifted): one line with the fix instead of a traceback
            if ctx.meta.get("traceback") or not exc.name or exc.name.startswith("pgdurable"):
                raise
            self._fail(ctx, MissingDependency(_missing(exc.name)))
        except PgDurableError as exc:
            if ctx.meta.get("traceback"):
                raise
            self._fail(ctx, exc)

    @staticmethod
    def _fail(ctx: click.Context, exc: PgDurableError) -> None:
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


def _missing(module: str) -> str:
    package = module.split(".", 1)[0]
    return (
        f"the Python package {package!r} is not installed in this environment "
        f"({sys.executable}): reinstall pgdurable with `pip install -e .` in its checkout "
        f"(or `pip install {package.replace('_', '-')}`)"
    )


def connect_target(dsn: str | None, progress=say):
    from pgdurable.connection import resolve

    target = resolve(dsn, progress=progress)
    progress(f"using {target.describe()}")
    return target


def one_value(target: Any, query: str, params: list[Any]) -> Any:
    """The first column of the first row of ``query`` on a resolved ``target``."""
    from pgdurable import db as database

    with database.connection(target.conninfo, autocommit=True) as conn:
        try:
            row = conn.execute(query, params).fetchone()
        except database.DatabaseError as exc:
            if getattr(exc, "sqlstate", None) in _MISSING_OBJECT and _schema_missing(conn):
                raise SchemaNotInstalled() from exc
            raise PgDurableError(database.error_text(exc)) from exc
    return row[0] if row else None


# undefined_table, undefined_function, invalid_schema_name: what a query on df.*
# raises in a database where `pgdurable schema install` never ran.
_MISSING_OBJECT = {"42P01", "42883", "3F000"}


def require_schema(conn: Any) -> None:
    """Raise SchemaNotInstalled (`run pgdurable schema install`) on a database
    without the pgdurable schema, before a query names its objects."""
    with conn.transaction():  # ended here: the caller's own transaction starts clean
        query = "SELECT pg_catalog.to_regclass('pgdurable.workflows') IS NULL"
        missing = conn.execute(query).fetchone()[0]
    if missing:
        raise SchemaNotInstalled()


def _schema_missing(conn: Any) -> bool:
    """True when the database has no df schema (rather than the query naming
    something of the user's that does not exist)."""
    return conn.execute("SELECT pg_catalog.to_regclass('df.instances') IS NULL").fetchone()[0]
