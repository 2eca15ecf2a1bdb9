"""The worker that executes started ``df`` workflow instances durably.
Installed as ``pgdurable.worker``.

Modules, one concept each:
- ``loop``: the process (claims, leases, heartbeat, LISTEN, shutdown);
- ``claims``: one claim of one instance, from load to release;
- ``interpreter``: replay of the graph (THEN, IF, JOIN, RACE, LOOP);
- ``extensions``: pgdurable's extension nodes (RETRY, TIMEOUT, TRY);
- ``deadlines``: a TIMEOUT's hold over its child (statement cancel, replay);
- ``steps``: leaf executors (SQL, SLEEP, WAIT_SCHEDULE, SIGNAL, BREAK);
- ``sql_step``: the exactly-once SQL step transaction;
- ``http_step``, ``http_policy``, ``http_client``: HTTP nodes, what they may
  reach, and the request itself;
- ``logs``: structured step and claim events (text or JSON lines);
- ``runs``, ``metrics``: runs of registered workflows reported as log lines and
  Prometheus metrics (the database records them, migration 0012);
- ``housekeeping``: periodic chores (run-history pruning, backlog sampling);
- ``journal``: every lease-checked write to the database;
- ``substitution``, ``results``, ``truth``: pure rules of SPEC B.

Importing this package is cheap (no database driver); ``run_worker`` and
``Worker`` load the machinery on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Worker", "WorkerOptions", "run_worker"]


async def run_worker(conninfo: str, **options: Any) -> dict[str, int]:
    """Run a worker against ``conninfo``; see ``pgdurable.worker.loop.run_worker``."""
    from pgdurable.worker import loop

    return await loop.run_worker(conninfo, **options)


def __getattr__(name: str) -> Any:
    if name in ("Worker", "WorkerOptions"):
        from pgdurable.worker import loop

        return getattr(loop, name)
    raise AttributeError(name)
