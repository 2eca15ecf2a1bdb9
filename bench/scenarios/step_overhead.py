"""Scenario 1: per-step overhead of an exactly-once workflow vs the floor.

A workflow of ten one-row UPDATEs runs on an idle in-process worker; the
per-step time is the span between the first and the last step's journal
commit divided by nine (worker start-up and the claim are excluded). The
floor is the same ten UPDATEs sent autocommit from psycopg by the same role.
The floor is shared with the peers scenario, which reports ratios to it.
"""

from __future__ import annotations

import asyncio
import time

from bench.context import Context
from bench.harness import BenchDatabase, repeat
from bench.report import Section, ms, spread
from pgdurable import db
from pgdurable.worker import run_worker

KEY = "step"
STEPS = 10
TARGET_RATIO = 2.0  # an exactly-once step within twice an autocommit statement
UPDATE = "UPDATE bench_rows SET n = n + 1 WHERE k = {k}"


def prepare_rows(database: BenchDatabase) -> None:
    database.execute("CREATE TABLE bench_rows (k int PRIMARY KEY, n int NOT NULL)")
    database.execute("INSERT INTO bench_rows SELECT k, 0 FROM generate_series(1, 1000) k")
    database.execute("GRANT ALL ON bench_rows TO bench")


def floor_per_statement(dsn: str, statements: int = STEPS, rounds: int = 20) -> float:
    """Seconds per autocommit one-row UPDATE (``rounds`` batches of ``statements``)."""
    with db.connection(dsn, autocommit=True) as conn:
        started = time.perf_counter()
        for _ in range(rounds):
            for k in range(1, statements + 1):
                conn.execute(UPDATE.format(k=k))
        return (time.perf_counter() - started) / (rounds * statements)


def workflow_per_step(database: BenchDatabase, steps: int = STEPS) -> float:
    chain = " ~> ".join(f"'{UPDATE.format(k=k)}'" for k in range(1, steps + 1))
    with db.connection(database.user_dsn, autocommit=True) as conn:
        instance = conn.execute(f"SELECT df.start({chain})").fetchone()[0]
    asyncio.run(run_worker(database.admin_dsn, concurrency=10, until_idle=True))
    span = database.value(
        "SELECT extract(epoch FROM max(recorded_at) - min(recorded_at))"
        " FROM pgdurable.journal WHERE instance_id = %s",
        [instance],
    )
    return float(span) / (steps - 1)


def run(ctx: Context) -> Section:
    with ctx.server.database() as database:
        prepare_rows(database)
        ctx.progress("step overhead: floor")
        floor = repeat(lambda: floor_per_statement(database.user_dsn), ctx.runs, ctx.warmup)
        ctx.progress("step overhead: workflow")
        steps = repeat(lambda: workflow_per_step(database), ctx.runs, ctx.warmup)
    ratio = steps.median / floor.median
    ctx.shared["floor"] = floor
    ctx.shared["step"] = steps
    section = Section(
        KEY,
        "1. Per-step overhead",
        "A workflow of 10 one-row `UPDATE`s (exactly-once SQL steps) on an idle in-process "
        "worker; per step = span between the first and last step's journal commit ÷ 9. "
        "Floor: the same `UPDATE`s sent autocommit from psycopg by the same role "
        f"(batches of 200). {ctx.runs} runs after {ctx.warmup} warm-up.",
        ["measurement", "per step, median (min–max)", "ratio to floor"],
    )
    section.rows.append(["floor: autocommit UPDATE (psycopg)", spread(floor), "1.0×"])
    section.rows.append(["pgdurable exactly-once SQL step", spread(steps), f"{ratio:.1f}×"])
    section.notes.append(
        "What a step costs beyond the floor: two round trips where the floor has one (the "
        "statement, then its completion and COMMIT pipelined: the completion carries the "
        "statement's result, and the lease token must travel as a bind parameter, never in "
        "query text a step could read); the completion function (lease check, journal row, "
        "node stamps); and the worker's own CPU in Python (psycopg's async driver)."
    )
    section.data = {"floor_s": floor.as_dict(), "step_s": steps.as_dict(), "ratio": ratio}
    section.target(
        f"≤ {TARGET_RATIO}× floor per step",
        f"{ratio:.1f}× ({ms(steps.median)})",
        ratio <= TARGET_RATIO,
    )
    return section
