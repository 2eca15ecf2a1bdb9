"""Scenario 2: 1-step workflows started and completed per second.

N one-step workflows (one-row UPDATE) are started up front with ``df.start``
(its rate is reported too), then 1 or 2 ``pgdurable worker`` processes with
default options drain them. Rate = N ÷ (last completion − first claim), both
read from the database, so process start-up is excluded; the peers scenario
measures DBOS, Procrastinate and PgQueuer the same way. The Stats are shared
with the peers scenario (``throughput_1``, ``throughput_2``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.context import Context
from bench.harness import BenchDatabase, Stats
from bench.procs import spawn_worker, stop
from bench.report import Section, rate
from bench.scenarios.step_overhead import prepare_rows
from pgdurable import db

KEY = "throughput"
TARGET = 2000.0
STEP = "UPDATE bench_rows SET n = n + 1 WHERE k = {k}"


def start_instances(database: BenchDatabase, count: int) -> float:
    """Start ``count`` one-step workflows, one ``df.start`` call each; returns calls/s."""
    with db.connection(database.user_dsn, autocommit=True) as conn:
        started = time.perf_counter()
        for i in range(count):
            conn.execute("SELECT df.start(%s)", [STEP.format(k=i % 1000 + 1)])
        return count / (time.perf_counter() - started)


def drain(database: BenchDatabase, processes: int, log: Path) -> float:
    """Run ``processes`` workers until every instance is finished; returns completions/s."""
    workers = [spawn_worker(database.admin_dsn, log, "--until-idle") for _ in range(processes)]
    try:
        for worker in workers:
            if worker.wait(timeout=600) != 0:
                raise RuntimeError(f"a worker exited with {worker.returncode}; see {log}")
    finally:
        for worker in workers:
            stop(worker)
    span, done, total = database.execute(
        "SELECT extract(epoch FROM max(i.completed_at) - min(e.started_at)),"
        " count(*) FILTER (WHERE i.status = 'completed'), count(*)"
        " FROM df.instances i JOIN pgdurable.executions e ON e.instance_id = i.id"
    )[0]
    if done != total:
        raise RuntimeError(f"only {done} of {total} instances completed")
    return total / float(span)


def run(ctx: Context) -> Section:
    count = ctx.size(1000, 100)  # the peers scenario drains the same number
    starts = Stats()
    rates: dict[int, Stats] = {1: Stats(), 2: Stats()}
    log = Path(tempfile.mkstemp(prefix="pgdurable-bench-throughput-", suffix=".log")[1])
    for run_number in range(ctx.warmup + ctx.runs):
        for processes in (1, 2):
            ctx.progress(f"throughput: {processes} worker(s), run {run_number + 1}")
            with ctx.server.database() as database:
                prepare_rows(database)
                start_rate = start_instances(database, count)
                drain_rate = drain(database, processes, log)
            if run_number >= ctx.warmup:
                rates[processes].samples.append(drain_rate)
                starts.samples.append(start_rate)
    ctx.shared["throughput_1"], ctx.shared["throughput_2"] = rates[1], rates[2]
    ctx.shared["start_rate"] = starts
    section = Section(
        KEY,
        "2. Throughput",
        f"{count} one-step workflows (a one-row `UPDATE`) started up front with `df.start` "
        "(one call per workflow, one client), then drained by `pgdurable worker --until-idle` "
        "processes with default options (concurrency 10). Rate = workflows ÷ (last completion "
        f"− first claim), from the database. {ctx.runs} runs after {ctx.warmup} warm-up, a fresh "
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
    best = max(rates[1].median, rates[2].median)
    section.target(
        f"≥ {rate(TARGET)} on 2 cores", f"{rate(best)} (best of 1 and 2 workers)", best >= TARGET
    )
    return section
