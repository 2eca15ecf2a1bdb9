"""Periodic chores of a worker that no claim does: pruning the run history to
its retention settings and, when metrics are served, sampling the backlog.

Pruning runs once a minute on every worker; ``pgdurable.prune_run_history_v1``
lets one worker at a time do it (the others return at once), and reads the
retention settings of the database on the worker's own connection, so
``ALTER DATABASE … SET pgdurable.run_history_max_runs = …`` applies to the
next prune of a new connection. A failed chore is logged and tried again on
the next beat; it never stops the worker.
"""

from __future__ import annotations

import asyncio
import logging
import time

from pgdurable import db
from pgdurable.worker.metrics import Metrics

log = logging.getLogger("pgdurable.worker")

PRUNE_INTERVAL_SECONDS = 60.0
BACKLOG_INTERVAL_SECONDS = 5.0


async def keep_house(
    pool: db.AsyncPool,
    metrics: Metrics | None,
    *,
    prune_interval: float = PRUNE_INTERVAL_SECONDS,
    backlog_interval: float = BACKLOG_INTERVAL_SECONDS,
) -> None:
    """Prune (and sample the backlog for ``metrics``) until cancelled."""
    next_prune = 0.0  # at start, then every prune_interval
    tick = backlog_interval if metrics is not None else prune_interval
    while True:
        now = time.monotonic()
        try:
            async with pool.connection() as conn:
                if now >= next_prune:
                    next_prune = now + prune_interval
                    cursor = await conn.execute("SELECT pgdurable.prune_run_history_v1()")
                    (pruned,) = await cursor.fetchone()
                    if pruned:
                        log.info("run history: %s old run(s) pruned", pruned)
                if metrics is not None:
                    cursor = await conn.execute(
                        "SELECT runnable, claimed FROM pgdurable.backlog_v1()"
                    )
                    runnable, leased = await cursor.fetchone()
                    metrics.runnable.set(runnable)
                    metrics.leased.set(leased)
        except db.DatabaseError as exc:
            log.warning("housekeeping skipped: %s", db.error_text(exc))
        await asyncio.sleep(tick)
