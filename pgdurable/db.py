"""The only module that imports psycopg.

Connections honour libpq's ``PG*`` variables. Driver errors that mean "no
database here" become ``DatabaseUnavailable`` (exit code 3) with the fix in the
message; other code never sees psycopg exception types.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgdurable.errors import DatabaseUnavailable

__all__ = [
    "Connection",
    "connect",
    "create_database_if_missing",
    "describe_conninfo",
    "make_conninfo",
    "sql",
]

Connection = psycopg.Connection
DatabaseError = psycopg.Error


def connect(conninfo: str, *, autocommit: bool = False, **overrides: object) -> psycopg.Connection:
    """Open a connection or raise DatabaseUnavailable naming the target."""
    try:
        return psycopg.connect(conninfo, autocommit=autocommit, **overrides)
    except psycopg.OperationalError as exc:
        reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise DatabaseUnavailable(
            f"could not connect to {describe_conninfo(conninfo) or 'the libpq default'}: "
            f"{reason.rstrip('?.')}. Check --dsn, PGDURABLE_DSN, DATABASE_URL or the PG* "
            f"variables, or unset them all to use the embedded database."
        ) from exc


@contextmanager
def connection(conninfo: str, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    conn = connect(conninfo, autocommit=autocommit)
    try:
        yield conn
    finally:
        conn.close()


def describe_conninfo(conninfo: str) -> str:
    """The connection string with any password hidden, for messages and logs."""
    if not conninfo:
        return ""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "<unparsable connection string>"
    if "password" in params:
        params["password"] = "********"
    return make_conninfo(**params)


def create_database_if_missing(admin_conninfo: str, name: str, template: str | None = None) -> bool:
    """CREATE DATABASE unless it exists; True when it was created."""
    with connection(admin_conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists:
            return False
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
        try:
            conn.execute(statement)
        except psycopg.errors.DuplicateDatabase:
            return False  # created concurrently by another process
        return True
