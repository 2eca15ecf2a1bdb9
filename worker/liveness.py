"""The worker's liveness row in ``df._worker_epoch`` (SPEC B §2).

pg_durable's worker refreshes ``last_seen_at`` of its epoch row about every
5 s, and tools poll it to know a worker is alive. Each pgdurable worker
process keeps a row of its own (any number of workers share a database),
refreshed on the same period, and removes it when it stops; rows of workers
that died are removed by the others after a minute (``pgdurable.worker_alive_v1``).

This is liveness for tools only: leases, not this row, decide who drives an
instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from pgdurable import db

log = logging.getLogger("pgdurable.worker")

INTERVAL_SECONDS = 5.0


async def keep_alive(pool: db.AsyncPool, interval: float = INTERVAL_SECONDS) -> None:
    """Refresh this process's row every ``interval`` seconds until cancelled,
    then remove it. A failed refresh (the database is away) is retried on
    the next beat."""
    epoch = str(uuid.uuid4())
    try:
        while True:
            try:
                async with pool.connection() as conn:
                    await conn.execute("SELECT pgdurable.worker_alive_v1(%s::uuid)", [epoch])
            except db.DatabaseError as exc:
                log.warning("liveness row not refreshed: %s", db.error_text(exc))
            await asyncio.sleep(interval)
    finally:
        # Best effort: a worker that cannot reach the database leaves its row
        # to the others' one-minute cleanup.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                async with pool.connection() as conn:
                    await conn.execute("SELECT pgdurable.worker_gone_v1(%s::uuid)", [epoch])
