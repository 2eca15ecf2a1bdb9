"""Scenario 2 written for PgQueuer, run in the peers' virtualenv.

One entrypoint per UPDATE; the job runs it on the application's own
asyncpg pool. Throughput only: PgQueuer buffers job completions and
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
import asyncpg
import psycopg
from pgqueuer import AsyncpgDriver, PsycopgDriver, Queries, QueueManager
from pgqueuer.models import Job
from psycopg.conninfo import conninfo_to_dict

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


def asyncpg_params() -> dict[str, object]:
    info = conninfo_to_dict(args.dsn)
    return {
        "host": info["host"],  # the socket folder: the server listens on no TCP port
        "port": int(info.get("port", 5432)),
        "user": info.get("user"),
        "database": info["dbname"],
    }


async def worker() -> None:
    # The worker uses asyncpg, the driver PgQueuer's docs lead with; with its psycopg
    # driver a lone worker stalled for tens of ms between batches here.
    pool = await asyncpg.create_pool(
        **asyncpg_params(),
        min_size=_common.WORKER_CONCURRENCY,
        max_size=_common.WORKER_CONCURRENCY,
    )
    manager = QueueManager(Queries(AsyncpgDriver(await asyncpg.connect(**asyncpg_params()))))

    @manager.entrypoint("bump")
    async def bump(job: Job) -> None:
        async with pool.acquire() as conn:
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
