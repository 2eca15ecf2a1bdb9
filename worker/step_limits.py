"""The step time limit (``pgdurable.step_timeout``, issue 16 §4).

A step's own session cannot enforce it: the step can ``SET statement_timeout
= 0`` or catch ``query_canceled`` in a DO block. So the worker enforces it
from outside, on its own (privileged) connection: when the limit passes it
cancels the statement (``pg_cancel_backend``); a statement still running
``TERMINATE_AFTER`` seconds later has its session ended
(``pg_terminate_backend``). Either way the step's transaction rolls back
and the node fails with ``error``, never retried.

A cancel that is on its way when the statement ends could reach the next
statement on that connection; the connection is held until the signal has
been sent, and the step's completion, if the cancel hits it, is rolled back
and fails the node like the statement would have.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pgdurable import db

log = logging.getLogger("pgdurable.worker")

TERMINATE_AFTER = 5.0


@dataclass
class Watch:
    seconds: float
    fired: bool = False

    @property
    def error(self) -> str:
        return (
            f"SQL step exceeded the step time limit, pgdurable.step_timeout"
            f" ({self.seconds:g} s), and was cancelled"
        )


async def _signal(worker_pool: db.AsyncPool, function: str, pid: int) -> None:
    try:
        async with worker_pool.connection() as conn:
            await conn.execute(f"SELECT pg_catalog.{function}(%s)", [pid])
    except db.DatabaseError:
        log.warning("could not %s step backend %s", function, pid, exc_info=True)


@contextlib.asynccontextmanager
async def limited(
    conn: db.AsyncConnection, worker_pool: db.AsyncPool, seconds: float | None
) -> AsyncIterator[Watch | None]:
    """Enforce the limit on what ``conn`` runs inside the block (None: no limit)."""
    if not seconds:
        yield None
        return
    watch = Watch(seconds)
    pid = conn.info.backend_pid
    quiet = asyncio.Event()  # cleared while a signal is being sent
    quiet.set()

    async def send(function: str) -> None:
        quiet.clear()
        try:
            await _signal(worker_pool, function, pid)
        finally:
            quiet.set()

    async def enforce() -> None:
        await asyncio.sleep(seconds)
        watch.fired = True
        await send("pg_cancel_backend")
        await asyncio.sleep(TERMINATE_AFTER)
        await send("pg_terminate_backend")

    enforcer = asyncio.create_task(enforce())
    try:
        yield watch
    finally:
        await quiet.wait()  # a signal on its way goes out before the connection is reused
        enforcer.cancel()
        await asyncio.gather(enforcer, return_exceptions=True)
