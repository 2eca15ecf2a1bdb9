"""Group commit of SQL steps (issue 22): several ready steps, one transaction.

Steps of different claims that run as the same role in the same database can
share a transaction on one connection: each step's text runs inside its own
savepoint (a failing step rolls back only that savepoint, and is that step's
failure), the completions of the steps that succeeded are written by one call
(``pgdurable.complete_steps_v1``, migration 0018) and one COMMIT makes them
all durable. A crash before that COMMIT loses every statement of the group
together with its completion, so each step stays exactly-once, as on the
single path (``sql_step``).

When steps are grouped, per pool (role and database):

- a step that finds fewer than ``LANES`` transactions of its pool in flight
  and nobody queued runs at once on the single path: an idle worker's step
  gets no added latency (a group only forms from steps that would have
  waited anyway);
- otherwise it queues; when a lane frees, up to ``MAX_GROUP`` queued steps run
  as one group. A lane busy for ``SLOW_SECONDS`` stops counting (a slow step
  must not hold up the others' parallelism), and a group whose statement has
  run that long (or whose statements together have) gives the steps not yet
  started back to the queue, where they form groups on other connections;
  the group commits what ran. So slow steps still end up running side by side.

Which steps may share a transaction is decided from the step's text, with the
lexer of ``pgdurable.sqltext``, conservatively (``groupable``): every statement
must be a plain query or DML (SELECT, INSERT, UPDATE, DELETE, WITH, VALUES,
TABLE, MERGE), no dollar-quoted body (DO, function bodies: code we do not
read), and no word that names transaction-level state: ``set_config`` (SET
LOCAL's function form), the transaction-start clock (``now()``,
``current_timestamp``...), transaction-scoped advisory locks, transaction ids
and snapshots (any word with ``xact``, ``txid`` or ``snapshot``), temporary
tables (ON COMMIT). SET, LOCK, savepoints, transaction control and utility
statements never get past the first-word rule. Steps under a TIMEOUT (its
cancel names a backend, which a group shares) and steps on a session whose
default isolation is not READ COMMITTED (a group would share one snapshot)
run on the single path.

What sharing cannot hide, by construction: other sessions see a grouped
step's effects at the group's COMMIT (a few ms later); its row locks are held
until then; a column DEFAULT of ``now()`` gets the group's start time, which
precedes the step's own start by the earlier members' statements. Each step
still starts from a reset session (``db.STEP_SESSION_RESET``) and its own
``statement_timeout`` (one simple-query message per step) and step time limit.

Whenever the group as a whole cannot commit (a lost lease, a deferred
constraint failing at COMMIT, a deadlock, a broken connection), nothing of it
committed, and every step that had not ended is run again on its own, on the
single path, which then gives each its own outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pgdurable import db
from pgdurable.sqltext import SqlLexError, tokenize
from pgdurable.worker import step_limits
from pgdurable.worker.journal import COMPLETION_SETTINGS, Journal
from pgdurable.worker.outcomes import Failed
from pgdurable.worker.results import UnsupportedType, sql_result
from pgdurable.worker.sql_step import (
    ACQUIRE_SECONDS,
    NEEDS_AUTOCOMMIT,
    SCS_ON,
    Completion,
    StampQueue,
    StepKey,
    failure_of,
)

log = logging.getLogger("pgdurable.worker")

LANES = 2  # transactions of one pool in flight before steps queue for a group
MAX_GROUP = 16  # steps per group: savepoints are subtransactions (64 cached per backend)
SLOW_SECONDS = 0.02
# Opt-in (PGDURABLE_GROUP_COMMIT=on) until the limits its review found are
# lifted: a failure a member gets from another member's row is final even when
# the group then rolls back, and a slow member holds the commits and row locks
# of the members before it (README, "Group commit").
ENABLED = os.environ.get("PGDURABLE_GROUP_COMMIT", "off").lower() in ("on", "1", "true")

SAVEPOINT = "pgdurable_step"
GROUP_BEGIN = f"{db.STEP_SESSION_RESET};\nBEGIN;\nSAVEPOINT {SAVEPOINT};\n"
GROUP_NEXT = f"{db.STEP_SESSION_RESET};\n"
# After each step's text, in the same message. The savepoint is renewed at
# the end of a step that succeeded, so the savepoint a failure rolls back to
# was set after the previous step ended: when the server refuses a message
# before running any of it (a syntax error: a simple query is parsed whole
# first), rolling back undoes nothing of an earlier step. The SET comes
# first: the next message is lexed by the server before its own reset runs,
# so with quotes read as step_text and groupable read them (a step that
# failed had its settings rolled back).
TEXT_END = f"\n;{SCS_ON}; RELEASE SAVEPOINT {SAVEPOINT}; SAVEPOINT {SAVEPOINT}"
TEXT_END_RESULTS = 3
COMPLETE_STEPS = "SELECT k, status FROM pgdurable.complete_steps_v1(%s, %s::pg_catalog.jsonb)"

FIRST_WORDS = frozenset(
    {"select", "insert", "update", "delete", "with", "values", "table", "merge"}
)
TRANSACTION_WORDS = frozenset(
    {
        "set_config",
        "now",
        "current_timestamp",
        "transaction_timestamp",
        "current_date",
        "current_time",
        "localtime",
        "localtimestamp",
        "xmin",
        "xmax",
        "temp",
        "temporary",
    }
)
TRANSACTION_PARTS = ("xact", "txid", "snapshot")


def groupable(text: str) -> bool:
    """Whether ``text`` may share a transaction with other steps (see above)."""
    try:
        tokens = tokenize(text)
    except SqlLexError:
        return False
    starting, statements = True, 0
    for token in tokens:
        if token.kind in ("space", "comment"):
            continue
        if token.kind == "semicolon":
            starting = True
            continue
        if token.kind == "string" and token.text.startswith("$"):
            return False
        word = (token.value or "").lower() if token.kind in ("ident", "qident") else None
        if starting:
            if word not in FIRST_WORDS:
                return False
            starting, statements = False, statements + 1
        elif word is not None and (
            word in TRANSACTION_WORDS or any(part in word for part in TRANSACTION_PARTS)
        ):
            return False
    return statements > 0


# Step connections whose sessions default to READ COMMITTED (see note_session).
_READ_COMMITTED: weakref.WeakSet = weakref.WeakSet()


async def note_session(conn: db.AsyncConnection) -> None:
    """Read a new step connection's default isolation (its role's and database's
    settings apply at login, and the session reset returns to them)."""
    cursor = await conn.execute(
        "SELECT pg_catalog.current_setting('default_transaction_isolation')"
    )
    if (await cursor.fetchone())[0] == "read committed":
        _READ_COMMITTED.add(conn)


class RunAlone(Exception):
    """The step runs on the single path after all (its group could not take it)."""


class _Abandoned(Exception):
    """The group rolls back as a whole; its other steps run on their own."""


@dataclass(eq=False)
class Member:
    journal: Journal
    key: StepKey
    text: str
    stamps: StampQueue
    final: tuple[str, ...] | None
    time_limit: float | None
    future: asyncio.Future = field(default=None)  # type: ignore[assignment]

    def settle(self, outcome: Completion | BaseException) -> None:
        if self.future.done():
            return
        if isinstance(outcome, BaseException):
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)


class StepGroups:
    """The lanes of every step pool of one worker."""

    def __init__(self) -> None:
        self._lanes: dict[int, _Lane] = {}

    async def run(
        self, pool: Any, member: Member, alone: Callable[[], Awaitable[Completion]]
    ) -> Completion:
        """``alone()`` (the single path) at once when the pool's lanes are not
        busy or the text may not share a transaction; else join a group."""
        lane = self._lanes.get(id(pool))
        if lane is None or lane.pool is not pool:
            lane = self._lanes[id(pool)] = _Lane(pool)
        return await lane.run(member, alone)


class _Lane:
    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.busy = 0  # counted transactions in flight
        self.queue: deque[Member] = deque()
        self.tasks: set[asyncio.Task] = set()

    async def run(self, member: Member, alone: Callable[[], Awaitable[Completion]]) -> Completion:
        # The text is read only when the step would wait: the idle path
        # pays nothing for grouping.
        if not ENABLED or (self.busy < LANES and not self.queue) or not groupable(member.text):
            async with self._counted():
                return await alone()
        member.future = asyncio.get_running_loop().create_future()
        self.queue.append(member)
        self._kick()
        try:
            return await member.future
        except RunAlone:
            async with self._counted():
                return await alone()
        finally:
            with contextlib.suppress(ValueError):
                self.queue.remove(member)  # cancelled while it waited

    @contextlib.asynccontextmanager
    async def _counted(self):
        counted = True
        self.busy += 1

        def uncount() -> None:
            nonlocal counted
            if counted:
                counted = False
                self.busy -= 1
                self._kick()

        timer = asyncio.get_running_loop().call_later(SLOW_SECONDS, uncount)
        try:
            yield
        finally:
            timer.cancel()
            uncount()

    def _kick(self) -> None:
        while self.queue and self.busy < LANES:
            batch: list[Member] = []
            while self.queue and len(batch) < MAX_GROUP:
                member = self.queue.popleft()
                if not member.future.done():
                    batch.append(member)
            if len(batch) == 1:
                batch[0].settle(RunAlone())  # a group of one is the single path
            elif batch:
                task = asyncio.ensure_future(self._group(batch))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def _group(self, batch: list[Member]) -> None:
        async with self._counted():
            try:
                await self._commit(batch)
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    for member in batch:
                        member.settle(RunAlone())
                    raise
                if not isinstance(exc, db.PoolTimeout | db.DatabaseError | _Abandoned):
                    log.exception("group commit failed; its steps run on their own")
                for member in batch:
                    member.settle(RunAlone())

    async def _commit(self, batch: list[Member]) -> None:
        loop = asyncio.get_running_loop()
        async with self.pool.connection(timeout=ACQUIRE_SECONDS) as conn:
            if conn not in _READ_COMMITTED:
                for member in batch:
                    member.settle(RunAlone())
                return
            try:
                await self._run_batch(conn, batch, loop)
            except BaseException:
                if not (conn.broken or conn.closed) and db.transaction_state(conn) != "idle":
                    with contextlib.suppress(db.DatabaseError):
                        await _end(conn, "ROLLBACK")
                raise

    async def _run_batch(self, conn, batch: list[Member], loop) -> None:
        ran: list[tuple[Member, str]] = []
        started = loop.time()
        pending = deque(batch)
        begun = False
        while pending:
            member = pending.popleft()
            if member.future.done():
                continue
            if ran and loop.time() - started > SLOW_SECONDS:
                # Slow statements: commit what ran, the rest queue again.
                pending.appendleft(member)
                self._give_back(pending)
                break
            # A statement still running after SLOW_SECONDS gives the steps
            # behind it back to the queue, where they form groups of their own
            # (on other connections): a slow step holds up nobody for long.
            timer = loop.call_later(SLOW_SECONDS, self._give_back, pending)
            try:
                outcome = await self._statement(conn, member, GROUP_NEXT if begun else GROUP_BEGIN)
            finally:
                timer.cancel()
            if isinstance(outcome, str):
                ran.append((member, outcome))
                begun = True
                continue
            state = db.transaction_state(conn)
            if state == "inerror":
                # Only this step's savepoint rolls back.
                member.settle(outcome)
                await conn.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
                begun = True
            elif state == "idle" and not begun:
                member.settle(outcome)  # the first message was refused before BEGIN ran
            else:
                # The message ran to its end (the savepoint already renewed)
                # and yet the step failed: its effects cannot be taken out
                # alone, so the whole group rolls back.
                member.settle(outcome if isinstance(outcome, Failed) else RunAlone())
                raise _Abandoned()
        if not ran:
            if begun:
                await _end(conn, "ROLLBACK")
            return
        await self._complete(conn, ran)

    def _give_back(self, pending: deque[Member]) -> None:
        self.queue.extendleft(reversed(pending))
        pending.clear()
        self._kick()

    async def _statement(self, conn, member: Member, prefix: str) -> str | BaseException:
        """Run one member's text in its savepoint: its result, or the outcome
        that ends it (its failure, or RunAlone). Raises when the transaction
        as a whole is lost (the connection broke)."""
        async with step_limits.limited(conn, member.journal.pool, member.time_limit) as watch:
            try:
                cursor = await conn.execute(prefix + member.text + TEXT_END)
                result = await _result_of_text(cursor)
            except UnsupportedType as exc:
                return Failed(str(exc))
            except db.DatabaseError as exc:
                if conn.broken or conn.closed:
                    if watch and watch.fired:  # terminated for its time limit
                        member.settle(Failed(watch.error))
                    raise
                if watch and watch.fired:
                    return Failed(watch.error)
                state = db.sqlstate(exc) or ""
                if state in NEEDS_AUTOCOMMIT or state.startswith("40"):
                    return RunAlone()  # the single path retries it or runs it autocommit
                return failure_of(exc)
        if watch and watch.fired:  # it caught the cancel and ended on its own
            return Failed(watch.error)
        if not db.in_transaction(conn):
            # groupable() lets no transaction control through; should text
            # still have ended the transaction, the statements before it are
            # committed without completions: nothing here can be trusted.
            raise RuntimeError("a grouped step ended the group's transaction")
        return result

    async def _complete(self, conn, ran: list[tuple[Member, str]]) -> None:
        steps, taken = [], []
        for member, result in ran:
            take, _ = member.stamps
            batch = take()
            taken.append(batch)
            key = member.key
            finish = None
            if member.final is not None:
                value = json.loads(result)
                exec_id = f"{key.scope}::{key.gen}"
                finish = [
                    {"node": node, "status": "completed", "exec": exec_id, "result": value}
                    for node in member.final
                ]
            steps.append(
                {
                    "instance": member.journal.instance_id,
                    "epoch": member.journal.epoch,
                    "scope": key.scope,
                    "gen": key.gen,
                    "node": key.node,
                    "result": result,
                    "stamps": batch,
                    "finish": finish,
                }
            )
        token = ran[0][0].journal.token
        try:
            async with conn.pipeline():
                await conn.execute(COMPLETION_SETTINGS)
                completion = await conn.execute(COMPLETE_STEPS, [token, json.dumps(steps)])
                await conn.execute("COMMIT")
            statuses = dict(await completion.fetchall())
        except BaseException:
            for (member, _), batch in zip(ran, taken, strict=True):
                member.stamps[1](batch)
            if not (conn.broken or conn.closed):
                with contextlib.suppress(db.DatabaseError):
                    await _end(conn, "ROLLBACK")
            raise
        log.debug("group commit of %d steps", len(ran))
        for index, (member, result) in enumerate(ran, 1):
            member.settle(Completion(result, statuses.get(index)))


async def _end(conn, statement: str) -> None:
    """End the group's transaction and reset the session (the reset sent ahead
    of the first step rolled back with it)."""
    await conn.execute(statement)
    await conn.execute(db.STEP_SESSION_RESET)


async def _result_of_text(cursor) -> str:
    """The result of the step's last statement (the one before TEXT_END's)."""
    results: list[tuple[list, list]] = []
    while True:
        if cursor.description is not None:
            columns = [(c.name, c.type_code) for c in cursor.description]
            results.append((columns, await cursor.fetchall()))
        else:
            results.append(([], []))
        if not cursor.nextset():
            break
    return sql_result(*results[-1 - TEXT_END_RESULTS])
