"""Per-step overhead of a workflow vs the autocommit floor (issue 4 figures).

Usage: python bench/step_overhead.py DSN [--runs 5] [--steps 10] [--processes 1 2]

Needs a login role ``bench`` with df usage (created if the DSN is a superuser).
Reports medians over runs: per-step latency of a STEPS-step workflow of
one-row UPDATEs executed by one worker (from its steps' journal timestamps,
so worker start-up is excluded), the same UPDATEs run autocommit from
psycopg as bench, and 1-step workflows completed per second (100 instances,
one in-process worker), then the same rate with 1 and 2 worker *processes*
(``pgdurable worker --until-idle``) on 500 instances, timed from the first
step's commit to the last completion so process start-up is excluded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

from pgdurable import db
from pgdurable.worker import run_worker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--processes", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--instances", type=int, default=500)
    args = parser.parse_args()
    with db.connection(args.dsn, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = 'bench'").fetchone():
            admin.execute("CREATE ROLE bench LOGIN")
        admin.execute("SELECT df.grant_usage('bench')")
        admin.execute("DROP TABLE IF EXISTS bench_rows")
        admin.execute("CREATE TABLE bench_rows (k int PRIMARY KEY, n int)")
        admin.execute("INSERT INTO bench_rows SELECT k, 0 FROM generate_series(1, 100) k")
        admin.execute("GRANT ALL ON bench_rows TO bench")
    user_dsn = db.conninfo_with(args.dsn, user="bench")
    update = "UPDATE bench_rows SET n = n + 1 WHERE k = {k}"
    chain = " ~> ".join(f"'{update.format(k=k)}'" for k in range(1, args.steps + 1))

    workflow, floor, throughput = [], [], []
    for _ in range(args.runs):
        with db.connection(user_dsn, autocommit=True) as conn:
            started = time.perf_counter()
            for k in range(1, args.steps + 1):
                conn.execute(update.format(k=k))
            floor.append((time.perf_counter() - started) / args.steps)
            instance = conn.execute(f"SELECT df.start({chain})").fetchone()[0]
        asyncio.run(run_worker(args.dsn, concurrency=10, until_idle=True))
        with db.connection(args.dsn, autocommit=True) as admin:
            # Steady-state step latency, from the commit times of the steps'
            # journal rows: excludes worker start-up and connection set-up.
            span = admin.execute(
                "SELECT extract(epoch FROM max(recorded_at) - min(recorded_at))"
                " FROM pgdurable.journal WHERE instance_id = %s",
                [instance],
            ).fetchone()[0]
        workflow.append(float(span) / (args.steps - 1))
        with db.connection(user_dsn, autocommit=True) as conn:
            for _ in range(100):
                conn.execute("SELECT df.start('UPDATE bench_rows SET n = n + 1 WHERE k = 1')")
        started = time.perf_counter()
        asyncio.run(run_worker(args.dsn, concurrency=10, until_idle=True))
        throughput.append(100 / (time.perf_counter() - started))
    w, f = statistics.median(workflow), statistics.median(floor)
    print(f"per step: workflow {w * 1000:.2f} ms, autocommit {f * 1000:.2f} ms, ratio {w / f:.1f}x")
    print(f"1-step workflows: {statistics.median(throughput):.0f}/s (median of {args.runs} runs)")
    for processes in args.processes:
        rates = [_process_rate(args.dsn, user_dsn, processes, args.instances) for _ in range(3)]
        print(
            f"1-step workflows, {processes} worker process(es): "
            f"{statistics.median(rates):.0f}/s (median of 3 runs, {args.instances} instances)"
        )


def _process_rate(dsn: str, user_dsn: str, processes: int, instances: int) -> float:
    with db.connection(user_dsn, autocommit=True) as conn:
        ids = [
            conn.execute(
                "SELECT df.start('UPDATE bench_rows SET n = n + 1 WHERE k = 2')"
            ).fetchone()[0]
            for _ in range(instances)
        ]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "pgdurable", "worker", "--dsn", dsn, "--until-idle"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONSAFEPATH": "1"},
        )
        for _ in range(processes)
    ]
    for worker in workers:
        worker.wait()
    with db.connection(dsn, autocommit=True) as admin:
        span, done = admin.execute(
            "SELECT extract(epoch FROM max(i.completed_at) - min(j.recorded_at)),"
            " count(DISTINCT i.id) FILTER (WHERE i.status = 'completed')"
            " FROM df.instances i JOIN pgdurable.journal j ON j.instance_id = i.id"
            " WHERE i.id = ANY(%s)",
            [ids],
        ).fetchone()
    assert done == instances, f"only {done} of {instances} completed"
    return instances / float(span)


if __name__ == "__main__":
    main()
