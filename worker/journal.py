"""The database side of one claim: every durable write the worker makes.

A ``Journal`` is bound to one claimed run (instance id, lease epoch, token).
Each method is one call of a ``pgdurable.*_v1``/``_v2`` function on the worker's own
(superuser, autocommit) pool, and each such function checks the lease first,
so a worker that lost its lease cannot write anything (SPEC A.2.4). SQL steps
complete on the user's connection instead (see ``steps.py``); that call is
built here too so all lease-carrying SQL lives in one place.

Failures map to control flow: a fenced write raises ``LeaseLost``; a broken
connection raises ``Retry`` (the claim is abandoned and resumed later).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pgdurable import db
from pgdurable.worker.outcomes import Failed, LeaseLost, Retry
from pgdurable.worker.runs import RunEvents

LEASE_LOST = "PD001"

# Sent on the user's connection after the user's statement, so every name is
# qualified: the step may have left a search_path that puts its own json or
# jsonb domain first.
COMPLETE_STEP = (
    "SELECT pgdurable.complete_step_v3(%s, %s, %s, %s, %s, %s, %s::pg_catalog.json,"
    " %s::pg_catalog.jsonb, %s::pg_catalog.jsonb)"
)
# Sent just before it, in the same pipeline: the step may have asked the
# server to log the parameters of a failing statement (the lease token is
# one) or to cancel ours quickly; SET LOCAL ends with the transaction. The
# last one is a session setting, kept by the COMMIT: the next step's text is
# lexed by the server before its session reset runs, so quotes must be read
# as step_text read them (the step may have turned the setting off; a step
# that fails has its settings rolled back). It replaced a SET after COMMIT,
# a statement less per step.
COMPLETION_SETTINGS = (
    "SELECT pg_catalog.set_config('log_parameter_max_length_on_error', '0', true),"
    " pg_catalog.set_config('search_path', 'pg_catalog', true),"
    " pg_catalog.set_config('statement_timeout', '0', true),"
    " pg_catalog.set_config('lock_timeout', '0', true),"
    " pg_catalog.set_config('standard_conforming_strings', 'on', false)"
)


def lease_error(exc: BaseException) -> Exception | None:
    """The control-flow exception a database error stands for, if any."""
    if db.sqlstate(exc) == LEASE_LOST:
        return LeaseLost(str(exc))
    if db.is_connection_error(exc) or (db.sqlstate(exc) or "").startswith("40"):
        # Class 40 (deadlock, serialization failure): the server rolled the
        # whole write back, so the claim can be resumed from the journal.
        return Retry(str(exc))
    return None


class Journal:
    def __init__(
        self,
        pool: db.AsyncPool,
        instance_id: str,
        epoch: int,
        token: bytes,
        runs: RunEvents | None = None,
    ) -> None:
        self.pool = pool
        self.instance_id = instance_id
        self.epoch = epoch
        self.token = token
        # Told of every run of a registered workflow these writes start or end.
        self.runs = runs or RunEvents()

    @property
    def lease(self) -> tuple[str, int, bytes]:
        return (self.instance_id, self.epoch, self.token)

    async def _rows(self, query: str, params: list[Any]) -> list[tuple[Any, ...]]:
        try:
            async with self.pool.connection() as conn:
                cursor = await conn.execute(query, params)
                return await cursor.fetchall() if cursor.description else []
        except db.DatabaseError as exc:
            mapped = lease_error(exc)
            if mapped is not None:
                raise mapped from exc
            raise

    async def stamp(self, stamps: list[dict[str, Any]]) -> str:
        """Write node stamps in order; returns the instance's status."""
        rows = await self._rows(
            "SELECT pgdurable.stamp_nodes_v1(%s, %s, %s, %s::jsonb)",
            [*self.lease, json.dumps(stamps)],
        )
        return rows[0][0]

    async def record(
        self,
        scope: str,
        gen: int,
        node: str,
        outcome: str,
        *,
        result: str | None = None,
        error: str | None = None,
        named: str | None = None,
        delivery: str | None = None,
        stamp: bool = True,
    ) -> None:
        await self._rows(
            "SELECT pgdurable.record_v1(%s, %s, %s, %s, %s, %s, %s, %s::json, %s, %s::json,"
            " %s, %s)",
            [*self.lease, scope, gen, node, outcome, result, error, named, delivery, stamp],
        )

    async def timer(
        self,
        scope: str,
        gen: int,
        node: str,
        *,
        due_at: datetime | None = None,
        seconds: float | None = None,
        result: str | None = None,
    ) -> tuple[datetime, bool]:
        """Create the node's timer once; (due time, fired). A fired timer with a
        ``result`` journals it (the node is then complete)."""
        rows = await self._rows(
            "SELECT * FROM pgdurable.timer_v2(%s, %s, %s, %s, %s, %s, %s, %s, %s::json, %s)",
            [*self.lease, scope, gen, node, due_at, seconds, result, result is not None],
        )
        if rows[0][2] is not None:  # the timer began a tick of a registered workflow
            self.runs.started(rows[0][2])
        return rows[0][0], rows[0][1]

    async def consume_signal(self, scope: str, gen: int, node: str, name: str) -> str | None:
        rows = await self._rows(
            "SELECT pgdurable.consume_signal_v1(%s, %s, %s, %s, %s, %s, %s)::text",
            [*self.lease, scope, gen, node, name],
        )
        return rows[0][0]

    async def enter_scope(self, scope: str, named: str) -> tuple[int, str, datetime]:
        rows = await self._rows(
            "SELECT gen, named_results::text, started_at"
            " FROM pgdurable.enter_scope_v1(%s, %s, %s, %s, %s::json)",
            [*self.lease, scope, named],
        )
        return rows[0][0], rows[0][1], rows[0][2]

    async def next_generation(self, scope: str, gen: int, named: str) -> datetime:
        rows = await self._rows(
            "SELECT * FROM pgdurable.next_generation_v2(%s, %s, %s, %s, %s, %s::json)",
            [*self.lease, scope, gen, named],
        )
        if rows[0][1] is not None:  # the iteration was a tick of a registered workflow
            self.runs.ended(rows[0][1])
        return rows[0][0]

    async def finish(self, status: str, stamps: list[dict[str, Any]], output: str | None) -> None:
        rows = await self._rows(
            "SELECT pgdurable.finish_v3(%s, %s, %s, %s, %s::jsonb, %s)",
            [*self.lease, status, json.dumps(stamps), output],
        )
        for run in rows[0][0]:
            self.runs.ended(run)

    async def begin_run(self) -> dict[str, Any] | None:
        """The run this instance is of a registered workflow (created at its
        first claim), or None; call it only for labels ``runs.may_be_run`` accepts."""
        rows = await self._rows("SELECT pgdurable.begin_run_v1(%s, %s, %s)", [*self.lease])
        run = rows[0][0]
        if run is not None and run.get("opened"):
            self.runs.started(run)
        return run

    async def run_ended(self) -> None:
        """Report this instance's run as the completion of its last step ended it."""
        rows = await self._rows("SELECT pgdurable.run_of_v1(%s)", [self.instance_id])
        if rows[0][0] is not None and rows[0][0]["outcome"] != "running":
            self.runs.ended(rows[0][0])

    async def release(self, wake_at: datetime | str, signals: list[str]) -> None:
        await self._rows(
            "SELECT pgdurable.release_v1(%s, %s, %s, %s::timestamptz, %s::text[])",
            [*self.lease, wake_at, signals],
        )

    async def cron_next(self, expr: str) -> datetime:
        """The next tick after now by the database clock (the DSL's Quartz rules)."""
        try:
            rows = await self._rows("SELECT pgdurable.cron_next(%s, clock_timestamp())", [expr])
        except db.DatabaseError as exc:
            raise Failed(db.error_text(exc)) from exc
        return rows[0][0]

    def complete_step(
        self,
        scope: str,
        gen: int,
        node: str,
        result: str,
        stamps: list[dict[str, Any]],
        finish: list[dict[str, Any]] | None = None,
    ) -> tuple[str, list[Any]]:
        """The statement that completes a SQL step inside the user's transaction,
        writing the queued node ``stamps`` with it; it returns the instance status.
        With ``finish`` (the ancestors' completed stamps) the step is the
        workflow's last and the instance is finished in the same transaction."""
        finishing = None if finish is None else json.dumps(finish)
        return COMPLETE_STEP, [*self.lease, scope, gen, node, result, json.dumps(stamps), finishing]
