"""Scenarios 1 and 2 written for DBOS Transact, run in the peers' virtualenv.

Per step: a ``@DBOS.workflow`` of ten steps, each one UPDATE, in two
variants: exactly-once transaction steps (``@ds.transaction()`` on a
``SQLAlchemyDatasource``, which records the step's output in the step's own
transaction, DBOS 3's replacement of ``@DBOS.transaction``) and plain
``@DBOS.step()`` steps sending the UPDATE autocommit on a psycopg connection
(at-least-once: the checkpoint is a separate write). The workflow records
``time.perf_counter()`` after each step returns (its checkpoint included);
per step = (last - first) / 9, as scenario 1 measures pgdurable.

Throughput: one-transaction-step workflows enqueued on a DBOS queue up front,
then worker processes (each its own DBOS executor) are released; the rate
comes from ``dbos.workflow_status``: first ``started_at_epoch_ms`` (dequeue)
to last ``updated_at`` of a SUCCESS row. The system database is a separate
database on the same server, created by DBOS itself.
"""

from __future__ import annotations

import sys
import time
from importlib.metadata import version

import _common
import psycopg
import sqlalchemy as sa
from dbos import DBOS, DBOSConfig, SQLAlchemyDatasource
from psycopg.conninfo import conninfo_to_dict, make_conninfo

APP = "pgdurable-bench"
QUEUE = "bench"
# DBOS queues are polled; the default interval (1 s) would cap a worker at
# worker_concurrency instances a second, so poll every 10 ms as a throughput setup would.
POLLING_INTERVAL = 0.01

args = _common.parse_args()
_info = conninfo_to_dict(args.dsn)
SYSTEM_DB = args.system_db or f"{_info['dbname']}_dbos_sys"
SYSTEM_DSN = make_conninfo(args.dsn, dbname=SYSTEM_DB)


def sa_url(dbname: str) -> str:
    # The server listens only on a Unix socket: the folder goes in ``?host=``.
    url = sa.URL.create(
        "postgresql+psycopg",
        username=_info.get("user"),
        database=dbname,
        query={"host": _info["host"], "port": str(_info.get("port", 5432))},
    )
    return url.render_as_string(hide_password=False)


stamps: list[float] = []
_conn: psycopg.Connection | None = None
ds = SQLAlchemyDatasource.create(sa_url(_info["dbname"]))


@ds.transaction()
def bump_tx(k: int) -> None:
    ds.sql_session().execute(sa.text(_common.update_sql(k)))


@DBOS.step()
def bump_step(k: int) -> None:
    assert _conn is not None
    _conn.execute(_common.update_sql(k))


@DBOS.workflow()
def ten_tx(steps: int) -> None:
    for k in range(1, steps + 1):
        bump_tx(k)
        stamps.append(time.perf_counter())  # measurement only, outside the steps


@DBOS.workflow()
def ten_steps(steps: int) -> None:
    for k in range(1, steps + 1):
        bump_step(k)
        stamps.append(time.perf_counter())


@DBOS.workflow()
def one_tx(k: int) -> None:
    bump_tx(k)


def configure(executor: str) -> None:
    config: DBOSConfig = {
        "name": APP,
        "system_database_url": sa_url(SYSTEM_DB),
        "application_version": "bench",  # enqueuer and workers must agree on it
        "executor_id": executor,
        "log_level": "WARNING",
    }
    DBOS(config=config)


def per_step() -> dict[str, object]:
    global _conn
    _common.prepare_rows(args.dsn, args.steps)
    configure("step")
    DBOS.launch()
    _conn = psycopg.connect(args.dsn, autocommit=True)
    samples: dict[str, list[float]] = {"transaction steps (exactly-once)": [], "plain steps": []}
    for label, workflow in [
        ("transaction steps (exactly-once)", ten_tx),
        ("plain steps", ten_steps),
    ]:
        for run in range(args.warmup + args.samples):
            stamps.clear()
            workflow(args.steps)
            if run >= args.warmup:
                samples[label].append(_common.per_step(stamps))
    DBOS.destroy()
    return samples


def throughput() -> dict[str, object]:
    _common.prepare_rows(args.dsn, args.instances)
    configure("enqueuer")
    DBOS.listen_queues([])  # this process only enqueues; the workers dequeue
    DBOS.launch()
    queue = DBOS.register_queue(
        QUEUE, worker_concurrency=_common.WORKER_CONCURRENCY, polling_interval_sec=POLLING_INTERVAL
    )

    def enqueue(sample: int) -> str:
        prefix = f"s{sample}-{time.time_ns()}-"
        for i in range(args.instances):
            from dbos import SetWorkflowID

            with SetWorkflowID(f"{prefix}{i}"):
                queue.enqueue(one_tx, i + 1)
        return prefix

    def completed(prefix: object) -> int:
        return int(
            _common.scalar(
                SYSTEM_DSN,
                "SELECT count(*) FROM dbos.workflow_status"
                " WHERE workflow_uuid LIKE %s AND status = 'SUCCESS'",
                [f"{prefix}%"],
            )
        )

    def span(prefix: object) -> float:
        ms = _common.scalar(
            SYSTEM_DSN,
            "SELECT max(updated_at) - min(started_at_epoch_ms) FROM dbos.workflow_status"
            " WHERE workflow_uuid LIKE %s",
            [f"{prefix}%"],
        )
        return float(ms) / 1000

    rates = _common.run_throughput(__file__, args, enqueue, completed, span)
    DBOS.destroy()
    return {f"{args.workers} worker process(es)": rates}


def worker() -> None:
    configure(f"worker-{args.worker_index}")
    _common.worker_gate()
    DBOS.launch()  # starts the queue threads
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    if args.role == "worker":
        worker()
        sys.exit(0)
    result = per_step() if args.role == "step" else throughput()
    _common.emit({"peer": "DBOS Transact", "version": version("dbos"), "samples": result})
