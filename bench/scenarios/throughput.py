"""Scenario 2: 1-step workflows started and completed per second.

Two figures. ``df.start`` rate: one client starting one-step workflows (a
one-row UPDATE), one call each. Drain rate: 1 or 2 ``pgdurable worker``
processes (default options) are started and waited for until each listens; then
N such workflows are started in one transaction (one commit, so the
workers see them at once, as the peers scenario releases its workers
together) and rate = N ÷ (last completion − first claim), from the database.
The drain Stats are shared with the peers scenario (``throughput_1``,
``throughput_2``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.context import Context
from bench.harness import BenchDatabase, Stats
from bench.procs import spawn_worker, stop, wait_until
from bench.report import Section, rate
from bench.scenarios.step_overhead import prepare_rows
from pgdurable import db

KEY = "throughput"
TARGET = 2000.0
STEP = "UPDATE bench_rows SET n = n + 1 WHERE k = {k}"


def start_rate(database: BenchDatabase, count: int) -> float:
    """``df.start`` calls per second from one client, one call per workflow."""
    with db.connection(database.user_dsn, autocommit=True) as conn:
        started = time.perf_counter()
        for i in range(count):
            conn.execute("SELECT df.start(%s)", [STEP.format(k=i % 1000 + 1)])
        return count / (time.perf_counter() - started)


def drain(database: BenchDatabase, processes: int, count: int, log: Path) -> float:
    """Start ``count`` workflows at once under ``processes`` listening workers;
    returns completions per second."""
    workers = [spawn_worker(database.admin_dsn, log) for _ in range(processes)]
    try:
        wait_until(
            lambda: (
                database.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND query = 'LISTEN pgdurable_wake'"
                )[0][0]
                == processes
            ),
            timeout=60,
            what="the workers to listen",
            process=workers[0],
            log=log,
        )
        with db.connection(database.user_dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT count(df.start('UPDATE bench_rows SET n = n + 1 WHERE k = '"
                " || (g %% 1000 + 1))) FROM generate_series(1, %s) g",
                [count],
            )
        wait_until(
            lambda: database.value(
                "SELECT count(*) = 0 FROM df.instances WHERE status IN ('pending', 'running')"
            ),
            timeout=600,
            what=f"{count} workflows to finish",
            process=workers[0],
            log=log,
        )
    finally:
        for worker in workers:
            stop(worker)
    span, done, total = database.execute(
        "SELECT extract(epoch FROM max(i.completed_at) - min(e.started_at)),"
        " count(*) FILTER (WHERE i.status = 'completed'), count(*)"
        " FROM df.instances i JOIN pgdurable.executions e ON e.instance_id = i.id"
    )[0]
    if done != total or total != count:
        raise RuntimeError(f"only {done} of {count} instances completed")
    return total / float(span)


def drain_fresh(ctx: Context, processes: int, count: int) -> float:
    """``drain`` on a fresh database; the workers' log is kept only when it fails."""
    log = Path(tempfile.mkstemp(prefix="pgdurable-bench-drain-", suffix=".log")[1])
    with ctx.server.database() as database:
        prepare_rows(database)
        value = drain(database, processes, count, log)
    log.unlink()
    return value


def run(ctx: Context) -> Section:
    count = ctx.size(2000, 100)  # the peers scenario drains the same number
    starts = Stats()
    rates: dict[int, Stats] = {1: Stats(), 2: Stats()}
    log = Path(tempfile.mkstemp(prefix="pgdurable-bench-throughput-", suffix=".log")[1])
    for run_number in range(ctx.warmup + ctx.runs):
        measured = run_number >= ctx.warmup
        with ctx.server.database() as database:
            prepare_rows(database)
            ctx.progress(f"throughput: df.start, run {run_number + 1}")
            value = start_rate(database, count)
            if measured:
                starts.samples.append(value)
        for processes in (1, 2):
            ctx.progress(f"throughput: {processes} worker(s), run {run_number + 1}")
            with ctx.server.database() as database:
                prepare_rows(database)
                value = drain(database, processes, count, log)
            if measured:
                rates[processes].samples.append(value)
    log.unlink()  # kept only when a run failed, for its worker's messages
    ctx.shared["throughput_1"], ctx.shared["throughput_2"] = rates[1], rates[2]
    ctx.shared["start_rate"] = starts
    section = Section(
        KEY,
        "2. Throughput",
        f"{count} one-step workflows (a one-row `UPDATE`, distinct rows). `df.start` rate: one "
        "client, one call per workflow. Completed: 1 or 2 `pgdurable worker` "
        "processes with default options (concurrency 10) wait until they listen, then the "
        "workflows are started in one transaction; rate = workflows ÷ (last completion − first "
        f"claim), from the database. {ctx.runs} runs after {ctx.warmup} warm-up, a fresh "
        "database each.",
        ["measurement", "median (min–max)", "vs target"],
    )

    def row(label: str, stats: Stats, target: float | None) -> None:
        share = f"{stats.median / target:.2f}× of {rate(target)}" if target else "—"
        section.rows.append(
            [label, f"{rate(stats.median)} ({rate(stats.low)}–{rate(stats.high)})", share]
        )

    row("`df.start` calls, one client", starts, None)
    row("completed, 1 worker process", rates[1], TARGET)
    row("completed, 2 worker processes", rates[2], TARGET)
    section.data = {
        "start_per_s": starts.as_dict(),
        "workers_1": rates[1].as_dict(),
        "workers_2": rates[2].as_dict(),
        "instances": count,
    }
    section.notes.append(
        "Per one-step workflow the worker makes a share of one transaction (the step, its "
        "completion and the instance's finish commit together; with "
        "PGDURABLE_GROUP_COMMIT=on, opt-in, steps ready at once share a transaction, each in "
        "its own savepoint) plus a share of a claim (several instances each while busy); on "
        "2 cores the worker processes and PostgreSQL compete for the CPU, which is why a "
        "second process adds little. The worker logs every step transition at the default "
        "`--log-level info`."
    )
    best = max(rates[1].median, rates[2].median)
    section.target(
        f"≥ {rate(TARGET)} on 2 cores", f"{rate(best)} (best of 1 and 2 workers)", best >= TARGET
    )
    return section
