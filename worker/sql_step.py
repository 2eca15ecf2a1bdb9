"""Exactly-once execution of one SQL step (SPEC A.2.1).

The user's text runs on a pooled connection logged in as the submitting role
(never SET ROLE), inside an explicit transaction, and the step's completion
(journal row and node stamps, via ``pgdurable.complete_step_v3`` with the lease
token) is written in that same transaction before COMMIT. A crash anywhere
loses both or keeps both, so a replay either finds the journal row and skips
the step, or finds nothing and the user's effects were rolled back with it.

Round trips: ``<reset>;BEGIN;<text>`` as one simple-protocol message (the
session reset ``db.STEP_SESSION_RESET`` first, so no state of an earlier
step reaches this one; multi-statement text runs as one atomic transaction;
the result is the last statement's), then the completion and COMMIT
pipelined in one message.

Two round trips is the floor for exactly-once here: the completion carries
the statement's result, which only exists after the first one, and the lease
token must travel as a bind parameter (never in query text, where the user's
SQL could read it from pg_stat_activity), so it cannot ride along with the
user's simple-protocol text.

A busy worker runs ready steps of one role and database together instead,
one savepoint each in one transaction with one completion call
(``step_group``); a step alone takes this path.

Exceptions to exactly-once, marked ``"delivery":"at_least_once"``:
- statements PostgreSQL refuses in a transaction block (VACUUM, CREATE INDEX
  CONCURRENTLY, procedures that COMMIT…, SQLSTATE 25001/2D000) are re-run in
  autocommit and completed afterwards;
- text that ends the transaction itself (COMMIT inside the step), a safeguard
  only: df.start and the worker refuse top-level transaction control
  (``step_text``);
- steps that target another database than the one holding the journal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pgdurable import db
from pgdurable.errors import DatabaseUnavailable
from pgdurable.worker import step_limits
from pgdurable.worker.journal import COMPLETION_SETTINGS, Journal, lease_error
from pgdurable.worker.outcomes import Failed, LeaseLost, Retry
from pgdurable.worker.results import UnsupportedType, sql_result

STEP_PREFIX = db.STEP_SESSION_RESET + ";\nBEGIN;\n"
NEEDS_AUTOCOMMIT = {"25001", "2D000"}  # active_sql_transaction, invalid_transaction_termination
UNIQUE_VIOLATION = "23505"
# Ends a step that ran outside the completion's transaction: the next step's
# text is lexed before its reset runs (see COMPLETION_SETTINGS).
SCS_ON = "SET standard_conforming_strings = on"
ACQUIRE_SECONDS = 10  # the step pool's own connection attempts, before it gives up


@dataclass(frozen=True)
class StepKey:
    scope: str
    gen: int
    node: str


def _failure(exc: BaseException) -> Failed:
    # The reference wraps sqlx's Display of a server error.
    return Failed(f"SQL execution failed: error returned from database: {db.error_text(exc)}")


failure_of = _failure  # for the group commit (step_group)


async def _last_result(cursor) -> str:
    columns: list[tuple[str, int]] = []
    rows: list = []
    while True:
        if cursor.description is not None:
            columns = [(c.name, c.type_code) for c in cursor.description]
            rows = await cursor.fetchall()
        else:
            columns, rows = [], []
        if not cursor.nextset():
            break
    return sql_result(columns, rows)


async def _rollback(conn) -> None:
    """End a failed step's transaction. The session reset sent ahead of the
    step was rolled back with it, so it is sent again on its own."""
    if not conn.closed and conn.info.transaction_status != 0:  # not IDLE
        try:
            await conn.execute("ROLLBACK")
            await conn.execute(db.STEP_SESSION_RESET)
        except db.DatabaseError:
            await conn.close()  # the pool discards it


@dataclass
class Completion:
    result: str
    status: str | None = None  # the instance's status, when the completion returned it


StampQueue = tuple[Callable[[], list[dict[str, Any]]], Callable[[list[dict[str, Any]]], None]]


async def run_sql_step(
    pool: db.AsyncPool,
    journal: Journal,
    key: StepKey,
    text: str,
    *,
    same_database: bool,
    stamps: StampQueue,
    final: tuple[str, ...] | None = None,
    time_limit: float | None = None,
) -> Completion:
    """Run ``text`` and record its completion.

    ``stamps`` is (take, give_back): the queued node stamps are taken when the
    completion is sent and given back if it fails, so they are written with
    the step or by a later flush. ``final`` names the ancestors of a step
    after which nothing runs: its completion then finishes the instance (its
    status comes back 'completed'). ``time_limit`` is the step time limit in
    seconds (``step_limits``). Raises Failed (the statement failed, or ran
    out of time), LeaseLost or Retry.
    """
    try:
        return await _run(pool, journal, key, text, same_database, stamps, final, time_limit)
    except db.PoolTimeout as exc:
        raise await _unconnectable(pool) from exc


async def _unconnectable(pool: db.AsyncPool) -> Exception:
    """Why no connection came: the server's refusal (no such database, no
    CONNECT privilege, login refused…) fails the node; a busy pool is retried.
    The pool already tried for ACQUIRE_SECONDS; one direct try tells which."""
    try:
        probe = await db.async_connect(pool.conninfo, autocommit=True)
    except DatabaseUnavailable as exc:
        if any(refusal in str(exc) for refusal in PERMANENT_REFUSALS):
            return Failed(f"SQL execution failed: {exc}")
        # A role's or the server's connection limit, a server starting up or
        # down: back-pressure, so the step waits for a connection and tries again.
        return Retry(f"no connection for the step yet: {exc}")
    await probe.close()
    return Retry("no free connection in the step pool")


# Refusals that do not pass on their own (libpq reports no SQLSTATE for a
# refused connection, so the server's words tell them apart).
PERMANENT_REFUSALS = (
    "does not exist",
    "permission denied",
    "is not permitted to log in",
    "password authentication failed",
    "no pg_hba.conf entry",
)


async def _run(pool, journal, key, text, same_database, stamps, final, time_limit) -> Completion:
    if not same_database:
        return await _autocommit(pool, journal, key, text, time_limit)
    async with pool.connection(timeout=ACQUIRE_SECONDS) as conn:
        needs_autocommit = False
        async with step_limits.limited(conn, journal.pool, time_limit) as watch:
            try:
                cursor = await conn.execute(STEP_PREFIX + text)
                result = await _last_result(cursor)
            except UnsupportedType as exc:
                await _rollback(conn)
                raise Failed(str(exc)) from exc
            except db.DatabaseError as exc:
                await _rollback(conn)
                if watch and watch.fired:
                    raise Failed(watch.error) from exc
                needs_autocommit = db.sqlstate(exc) in NEEDS_AUTOCOMMIT
                if not needs_autocommit:
                    if db.connection_lost(exc, conn):
                        raise Retry(str(exc)) from exc
                    raise _failure(exc) from exc
        if needs_autocommit:
            # On this connection: a second one from the pool would wait
            # forever when the pool holds one (concurrency 1).
            return await _autocommit_on(conn, journal, key, text, time_limit)
        if watch and watch.fired:  # the step caught the cancel and ended on its own
            await _rollback(conn)
            raise Failed(watch.error)
        if not db.in_transaction(conn):
            # The text ended our transaction (COMMIT): its effects are already
            # durable, so the completion can only follow at least once.
            await _rollback(conn)
            await conn.execute(SCS_ON)  # see COMPLETION_SETTINGS
            await journal.record(
                key.scope, key.gen, key.node, "completed", result=result, delivery="at_least_once"
            )
            return Completion(result)
        take, give_back = stamps
        batch = take()
        finish = None
        if final is not None:
            exec_id = f"{key.scope}::{key.gen}"
            value = json.loads(result)
            finish = [
                {"node": node, "status": "completed", "exec": exec_id, "result": value}
                for node in final
            ]
        statement, params = journal.complete_step(
            key.scope, key.gen, key.node, result, batch, finish
        )
        try:
            async with conn.pipeline():
                await conn.execute(COMPLETION_SETTINGS)
                completion = await conn.execute(statement, params)
                await conn.execute("COMMIT")
            status = (await completion.fetchone())[0]
        except db.DatabaseError as exc:
            give_back(batch)
            await _rollback(conn)
            if watch and watch.fired:  # the cancel reached the completion instead
                raise Failed(watch.error) from exc
            mapped = lease_error(exc)
            if isinstance(mapped, LeaseLost) or (mapped and db.connection_lost(exc, conn)):
                raise mapped from exc
            if db.sqlstate(exc) == UNIQUE_VIOLATION and "journal" in db.error_text(exc):
                raise LeaseLost("step already completed by another worker") from exc
            raise _failure(exc) from exc  # e.g. the user's deferred constraint at COMMIT
    return Completion(result, status)


async def _autocommit(
    pool: db.AsyncPool, journal: Journal, key: StepKey, text: str, time_limit: float | None
) -> Completion:
    async with pool.connection(timeout=ACQUIRE_SECONDS) as conn:
        return await _autocommit_on(conn, journal, key, text, time_limit)


async def _autocommit_on(
    conn, journal: Journal, key: StepKey, text: str, time_limit: float | None
) -> Completion:
    """Run ``text`` outside a transaction on ``conn`` (idle), then record it."""
    async with step_limits.limited(conn, journal.pool, time_limit) as watch:
        try:
            # On its own: text such as VACUUM must be a message of its own.
            await conn.execute(db.STEP_SESSION_RESET)
            result = await _last_result(await conn.execute(text))
            await conn.execute(SCS_ON)  # the text ran outside our transaction
        except UnsupportedType as exc:
            raise Failed(str(exc)) from exc
        except db.DatabaseError as exc:
            await _rollback(conn)
            if watch and watch.fired:
                raise Failed(watch.error) from exc
            if db.connection_lost(exc, conn):
                raise Retry(str(exc)) from exc
            raise _failure(exc) from exc
    if watch and watch.fired:
        raise Failed(watch.error)
    await journal.record(
        key.scope, key.gen, key.node, "completed", result=result, delivery="at_least_once"
    )
    return Completion(result)
