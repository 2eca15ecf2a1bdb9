"""Scenario 2 written for PgQueuer, run in the peers' virtualenv.

One entrypoint per UPDATE; the job runs it on the application's own
connection pool. Throughput only: PgQueuer buffers job completions and
writes them in batches (up to 0.1 s later), so the completion times of ten
consecutive jobs measure its buffer, not a per-job cost; ``step`` is
therefore refused.

Throughput: N jobs enqueued in one statement, then worker processes (one
``QueueManager`` each, batch size 10, continuous mode) are released; rate =
N / (last ``successful`` - first ``picked`` row of ``pgqueuer_log``). The
schema is installed with PgQueuer's default durability (all tables logged).
"""

from __future__ import annotations

import asyncio
import sys
from importlib.metadata import version

import _common
import psycopg
import psycopg_pool
from pgqueuer import PsycopgDriver, Queries, QueueManager
from pgqueuer.models import Job

args = _common.parse_args()

SPAN = """
    SELECT extract(epoch FROM max(created) FILTER (WHERE status = 'successful')
                              - min(created) FILTER (WHERE status = 'picked'))
    FROM pgqueuer_log WHERE job_id BETWEEN %s AND %s
"""
DONE = "SELECT count(*) FROM pgqueuer_log WHERE job_id BETWEEN %s AND %s AND status = 'successful'"


async def connect() -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(args.dsn, autocommit=True)


async def install() -> None:
    async with await connect() as conn:
        queries = Queries(PsycopgDriver(conn))
        if not await queries.schema_is_installed():
            await queries.install()


def throughput() -> dict[str, object]:
    _common.prepare_rows(args.dsn, args.instances)
    asyncio.run(install())

    def enqueue(sample: int) -> tuple[int, int]:
        async def put() -> list[int]:
            async with await connect() as conn:
                ids = await Queries(PsycopgDriver(conn)).enqueue(
                    ["bump"] * args.instances,
                    [str(i + 1).encode() for i in range(args.instances)],
                    [0] * args.instances,
                )
                return [int(i) for i in ids]

        ids = asyncio.run(put())
        return min(ids), max(ids)

    def completed(token: object) -> int:
        return int(_common.scalar(args.dsn, DONE, list(token)))  # type: ignore[arg-type]

    def span(token: object) -> float:
        return float(_common.scalar(args.dsn, SPAN, list(token)))  # type: ignore[arg-type]

    rates = _common.run_throughput(__file__, args, enqueue, completed, span)
    return {f"{args.workers} worker process(es)": rates}


async def _autocommit(conn: psycopg.AsyncConnection) -> None:
    await conn.set_autocommit(True)


async def worker() -> None:
    pool = psycopg_pool.AsyncConnectionPool(
        args.dsn,
        min_size=_common.WORKER_CONCURRENCY,
        max_size=_common.WORKER_CONCURRENCY,
        configure=_autocommit,
        open=False,
    )
    await pool.open(wait=True)
    manager = QueueManager(Queries(PsycopgDriver(await connect())))

    @manager.entrypoint("bump")
    async def bump(job: Job) -> None:
        async with pool.connection() as conn:
            await conn.execute(_common.update_sql(int(job.payload or b"0")))

    _common.worker_gate()
    await manager.run(batch_size=_common.WORKER_CONCURRENCY)


if __name__ == "__main__":
    if args.role == "worker":
        asyncio.run(worker())
        sys.exit(0)
    if args.role == "step":
        sys.exit("pgqueuer: no per-job figure (completions are written in buffered batches)")
    _common.emit({"peer": "PgQueuer", "version": version("pgqueuer"), "samples": throughput()})
