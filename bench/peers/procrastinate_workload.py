"""Scenarios 1 and 2 written for Procrastinate, run in the peers' virtualenv.

Procrastinate has no workflows, so the unit is a job: one task runs one
UPDATE on the application's own connection pool, and its worker records
the job's outcome afterwards (at-least-once, as its docs describe).

Per job: ten jobs deferred up front, then one in-process worker
(concurrency 1, ``wait=False``) runs them in order; per job = span between
the first and last ``succeeded`` event (``procrastinate_events.at``) / 9.
Throughput: N jobs deferred in one batch, then worker processes with
concurrency 10 each (``wait=False``) are released; rate = N / (last
``succeeded`` - first ``started`` event).
"""

from __future__ import annotations

import asyncio
import sys
from importlib.metadata import version

import _common
import procrastinate
import psycopg_pool

args = _common.parse_args()
app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=args.dsn))
pool: psycopg_pool.AsyncConnectionPool | None = None


@app.task(name="bump")
async def bump(k: int) -> None:
    assert pool is not None
    async with pool.connection() as conn:  # autocommit: the pool sets it on connect
        await conn.execute(_common.update_sql(k))


async def _autocommit(conn) -> None:
    await conn.set_autocommit(True)


async def open_pool(size: int) -> psycopg_pool.AsyncConnectionPool:
    opened = psycopg_pool.AsyncConnectionPool(
        args.dsn, min_size=size, max_size=size, configure=_autocommit, open=False
    )
    await opened.open(wait=True)
    return opened


async def install() -> None:
    async with app.open_async():
        installed = await app.connector.execute_query_one_async(
            "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS installed"
        )
        if not installed["installed"]:
            await app.schema_manager.apply_schema_async()


SPAN = """
    SELECT extract(epoch FROM max(at) FILTER (WHERE type = 'succeeded')
                              - min(at) FILTER (WHERE type = {first}))
    FROM procrastinate_events WHERE job_id BETWEEN %s AND %s
"""
DONE = "SELECT count(*) FROM procrastinate_jobs WHERE id BETWEEN %s AND %s AND status = 'succeeded'"


async def per_job() -> dict[str, object]:
    global pool
    _common.prepare_rows(args.dsn, args.steps)
    await install()
    pool = await open_pool(1)
    samples: list[float] = []
    async with app.open_async():
        for run in range(args.warmup + args.samples):
            ids = await bump.batch_defer_async(*({"k": k} for k in range(1, args.steps + 1)))
            await app.run_worker_async(concurrency=1, wait=False, install_signal_handlers=False)
            seconds = _common.scalar(
                args.dsn, SPAN.format(first="'succeeded'"), [min(ids), max(ids)]
            )
            if run >= args.warmup:
                samples.append(float(seconds) / (args.steps - 1))
    await pool.close()
    return {"one job per UPDATE": samples}


def throughput() -> dict[str, object]:
    _common.prepare_rows(args.dsn, args.instances)
    asyncio.run(install())

    def enqueue(sample: int) -> tuple[int, int]:
        async def defer() -> list[int]:
            async with app.open_async():
                return await bump.batch_defer_async(*({"k": i + 1} for i in range(args.instances)))

        ids = asyncio.run(defer())
        return min(ids), max(ids)

    def completed(token: object) -> int:
        return int(_common.scalar(args.dsn, DONE, list(token)))  # type: ignore[arg-type]

    def span(token: object) -> float:
        return float(_common.scalar(args.dsn, SPAN.format(first="'started'"), list(token)))  # type: ignore[arg-type]

    rates = _common.run_throughput(__file__, args, enqueue, completed, span)
    return {f"{args.workers} worker process(es)": rates}


async def worker() -> None:
    global pool
    pool = await open_pool(_common.WORKER_CONCURRENCY)
    async with app.open_async():
        _common.worker_gate()
        await app.run_worker_async(concurrency=_common.WORKER_CONCURRENCY, wait=False)
    await pool.close()


if __name__ == "__main__":
    if args.role == "worker":
        asyncio.run(worker())
        sys.exit(0)
    result = asyncio.run(per_job()) if args.role == "step" else throughput()
    _common.emit({"peer": "Procrastinate", "version": version("procrastinate"), "samples": result})
