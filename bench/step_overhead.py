"""Per-step overhead of a workflow vs the autocommit floor (issue 4 figures).

Usage: python bench/step_overhead.py DSN [--runs 5] [--steps 10]

Needs a login role ``bench`` with df usage (created if the DSN is a superuser).
Reports medians over runs: per-step latency of a STEPS-step workflow of
one-row UPDATEs executed by one worker (from its steps' journal timestamps,
so worker start-up is excluded), the same UPDATEs run autocommit from
psycopg as bench, and 1-step workflows completed per second (100 instances).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from pgdurable.worker import run_worker

from pgdurable import db


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
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


if __name__ == "__main__":
    main()
