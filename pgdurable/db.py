"""The only module that imports psycopg.

Connections honour libpq's ``PG*`` variables. Driver errors that mean "no
database here" become ``DatabaseUnavailable`` (exit code 3) with the fix in the
message; other code never sees psycopg exception types.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus
from psycopg.types.string import TextLoader

from pgdurable.errors import DatabaseUnavailable

__all__ = [
    "AsyncConnection",
    "AsyncPool",
    "Connection",
    "DatabaseError",
    "PoolTimeout",
    "async_connect",
    "async_pool",
    "client_connection",
    "conninfo_params",
    "conninfo_with",
    "in_transaction",
    "transaction_state",
    "connection_lost",
    "is_connection_error",
    "sqlstate",
    "type_name",
    "used_password",
    "connect",
    "create_database_if_missing",
    "describe_conninfo",
    "make_conninfo",
    "sql",
]

Connection = psycopg.Connection
AsyncConnection = psycopg.AsyncConnection
AsyncPool = psycopg_pool.AsyncConnectionPool
DatabaseError = psycopg.Error
PoolTimeout = psycopg_pool.PoolTimeout


def connect(conninfo: str, *, autocommit: bool = False, **overrides: object) -> psycopg.Connection:
    """Open a connection or raise DatabaseUnavailable naming the target."""
    try:
        return psycopg.connect(conninfo, autocommit=autocommit, **overrides)
    except psycopg.OperationalError as exc:
        # libpq's message spans lines (the error, then a hint): keep them apart
        lines = [line.strip().rstrip("?.") for line in str(exc).splitlines() if line.strip()]
        reason = "; ".join(lines)
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


@contextmanager
def client_connection(conninfo: str, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """A connection whose cursors bind parameters client-side and send the result as
    one simple query, as psycopg2 (Airflow's driver) does: a multi-statement string
    with ``%(name)s`` parameters runs the way an Airflow SQL task runs it."""
    conn = connect(conninfo, autocommit=autocommit, cursor_factory=psycopg.ClientCursor)
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


# -- asyncio (the worker) -----------------------------------------------------


async def async_connect(
    conninfo: str, *, autocommit: bool = False, **overrides: object
) -> psycopg.AsyncConnection:
    """An asyncio connection; raises DatabaseUnavailable like ``connect``."""
    try:
        return await psycopg.AsyncConnection.connect(conninfo, autocommit=autocommit, **overrides)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"could not connect to {describe_conninfo(conninfo) or 'the libpq default'}: {exc}"
        ) from exc


# What DISCARD ALL does, without its DISCARD PLANS (the plans cached in the
# session, our completion function's among them, hold no user state, and
# re-planning them after every step cost more than the step's own statement).
# Sent ahead of every step's text in the same message, inside the step's
# transaction (see worker/sql_step.py), rather than when the connection is
# returned: a round trip less per step. A failed step's rollback undoes it,
# so the worker sends it again after a rollback. One trace remains visible:
# UNLISTEN takes effect at commit, so a channel an earlier step listened on
# still shows in pg_listening_channels() during the next step (nothing can be
# delivered inside a transaction, and it is gone when that step ends).
STEP_SESSION_RESET = (
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DEALLOCATE ALL; UNLISTEN *;"
    " SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES"
)


def async_pool(
    conninfo: str,
    *,
    max_size: int,
    name: str,
    autocommit: bool = False,
    user_steps: bool = False,
    on_connect: Callable[[psycopg.AsyncConnection], Awaitable[None]] | None = None,
) -> psycopg_pool.AsyncConnectionPool:
    """A closed asyncio pool (``await pool.open()`` it).

    ``user_steps`` prepares connections that run users' workflow steps:

    numeric values stay the server's text, so their scale survives (SPEC B
    §4.2: numeric becomes a JSON string as written). Session state a user's
    step leaves behind (SET, temp tables, prepared statements, cursors,
    LISTEN, advisory locks, sequence state) is cleared by STEP_SESSION_RESET,
    which every step sends first; the startup options (application_name, GUCs
    set with ``options``) are the session defaults and survive it.
    ``on_connect`` is awaited for each new connection before it is used.
    """

    async def configure(conn: psycopg.AsyncConnection) -> None:
        conn.adapters.register_loader("numeric", TextLoader)
        conn.prepare_threshold = None  # the reset drops prepared statements
        if on_connect is not None:
            await on_connect(conn)

    return psycopg_pool.AsyncConnectionPool(
        conninfo,
        min_size=0,
        max_size=max_size,
        name=name,
        open=False,
        configure=configure if user_steps else None,
        kwargs={"autocommit": autocommit},
        reconnect_timeout=5,
    )


def conninfo_params(conninfo: str) -> dict[str, str]:
    """The parameters of a connection string (for programs that take them as flags)."""
    return {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None}


def conninfo_with(conninfo: str, **params: Any) -> str:
    """``conninfo`` with some parameters replaced (e.g. user, dbname, options)."""
    return make_conninfo(conninfo, **{k: v for k, v in params.items() if v is not None})


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error, or None for anything else."""
    return getattr(exc, "sqlstate", None) if isinstance(exc, psycopg.Error) else None


def is_connection_error(exc: BaseException) -> bool:
    """True when the connection (not the statement) failed: worth retrying elsewhere."""
    return isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout) and not (
        isinstance(exc, psycopg.errors.QueryCanceled)
    )


def connection_lost(exc: BaseException, conn: psycopg.AsyncConnection | None) -> bool:
    """True when a step's statement failed because its connection broke (worth
    running again), False when the server reported an error for the statement
    on a live connection: that error is the step's outcome, whatever its
    SQLSTATE (a step can raise 08006 itself, or hit 54000 or a lock timeout).

    Class 40 (deadlock, serialization failure) is run again too: the server
    rolled back the step together with its completion record, so a new try is
    still exactly-once, and such conflicts arise between the worker's own
    bookkeeping writes (two branches of one instance completing at once)."""
    if isinstance(exc, psycopg_pool.PoolTimeout | psycopg.errors.TransactionRollback):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    return conn is None or conn.broken or conn.closed


def error_text(exc: BaseException) -> str:
    """The server's message for a database error (first line, as PostgreSQL words it)."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary:
        return primary
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def in_transaction(conn: psycopg.AsyncConnection | psycopg.Connection) -> bool:
    """True while the connection is inside an open, healthy transaction block."""
    return conn.info.transaction_status == TransactionStatus.INTRANS


def transaction_state(conn: psycopg.AsyncConnection | psycopg.Connection) -> str:
    """libpq's transaction status, lower case: idle, active, intrans, inerror or unknown."""
    return conn.info.transaction_status.name.lower()


def used_password(conn: psycopg.Connection) -> bool:
    """True when the server asked for the password to authenticate this
    connection (False under trust or peer authentication)."""
    return bool(conn.pgconn.used_password)


def type_name(oid: int) -> str:
    """A type's name as the reference reports it (upper case, ``[]`` for arrays)."""
    info = psycopg.adapters.types.get(oid)
    if info is not None:
        return info.name.upper()
    for candidate in psycopg.adapters.types:
        if candidate.array_oid == oid:
            return candidate.name.upper() + "[]"
    return f"OID {oid}"
