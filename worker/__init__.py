"""The worker that executes started ``df`` workflow instances durably.
Installed as ``pgdurable.worker``.

Modules, one concept each:
- ``loop``: the process (claims, leases, heartbeat, LISTEN, shutdown);
- ``claims``: one claim of one instance, from load to release;
- ``interpreter``: replay of the graph (THEN, IF, JOIN, RACE, LOOP);
- ``steps``: leaf executors (SQL, SLEEP, WAIT_SCHEDULE, SIGNAL, BREAK);
- ``sql_step``: the exactly-once SQL step transaction;
- ``journal``: every lease-checked write to the database;
- ``substitution``, ``results``, ``truth``, ``cron``: pure rules of SPEC B.
"""

from __future__ import annotations

from pgdurable.worker.loop import Worker, WorkerOptions, run_worker

__all__ = ["Worker", "WorkerOptions", "run_worker"]
