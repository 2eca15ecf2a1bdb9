"""Scenario 1b: where an exactly-once SQL step's time goes.

Scenario 1's chain of ten one-row UPDATEs, on a second throwaway server
that loads pg_stat_statements (``track = all``, so statements inside our
functions count) and counts function time (``track_functions = all``); it
is kept apart so every other figure comes from a server with default
settings. Several chains run one after another on an in-process worker at
concurrency 1; per step the report gives the span between journal commits
(as scenario 1, slightly inflated by the statistics), the worker's own CPU
time (``os.times``, this process) and the server's execution time of each
statement and function, then what neither accounts for in the worker's wall time: round trips, WAL
flushes at COMMIT (not counted as execution) and scheduling.
"""

from __future__ import annotations

import asyncio
import os
import time

from bench.context import Context
from bench.harness import BenchServer
from bench.report import Section
from bench.scenarios.step_overhead import STEPS, UPDATE, prepare_rows
from pgdurable import db
from pgdurable.worker import run_worker

KEY = "breakdown"
CHAINS = 20
TOP = 10  # statements listed
STATISTICS = {
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "all",
    "track_functions": "all",
}
STATEMENTS = """
SELECT toplevel, calls, total_exec_time, regexp_replace(query, '\\s+', ' ', 'g')
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY total_exec_time DESC
"""
FUNCTIONS = "SELECT funcname, calls, total_time, self_time FROM pg_stat_user_functions"


def _chains(database, chains: int) -> tuple[float, float, float, int]:
    """Start ``chains`` chains, then run them one after another from zeroed
    statistics: (span, worker wall time, worker CPU), seconds per step, and
    the number of steps."""
    chain = " ~> ".join(f"'{UPDATE.format(k=k)}'" for k in range(1, STEPS + 1))
    with db.connection(database.user_dsn, autocommit=True) as conn:
        started = [conn.execute(f"SELECT df.start({chain})").fetchone()[0] for _ in range(chains)]
    database.execute("SELECT pg_stat_statements_reset(), pg_stat_reset()")
    before, started_at = os.times(), time.perf_counter()
    asyncio.run(run_worker(database.admin_dsn, concurrency=1, until_idle=True))
    after, wall = os.times(), time.perf_counter() - started_at
    cpu = (after.user - before.user) + (after.system - before.system)
    spans = database.value(
        "SELECT sum(s) FROM (SELECT extract(epoch FROM max(recorded_at) - min(recorded_at)) s"
        " FROM pgdurable.journal WHERE instance_id = ANY (%s) GROUP BY instance_id) x",
        [started],
    )
    steps = chains * STEPS
    return float(spans) / (chains * (STEPS - 1)), wall / steps, cpu / steps, steps


def _short(query: str, width: int = 90) -> str:
    return query if len(query) <= width else query[: width - 1] + "…"


def run(ctx: Context) -> Section:
    chains = ctx.size(CHAINS, 3)
    ctx.progress("step breakdown: a server with pg_stat_statements")
    with BenchServer(settings=STATISTICS) as server, server.database() as database:
        prepare_rows(database)
        database.execute("CREATE EXTENSION pg_stat_statements")
        _chains(database, 2)  # warm-up: the server's caches
        span, wall, cpu, steps = _chains(database, chains)
        statements = database.execute(STATEMENTS)
        functions = database.execute(FUNCTIONS)
    per_step = 1.0 / steps  # the views count milliseconds: ms per step
    top_level = sum(total for toplevel, _, total, _ in statements if toplevel) * per_step / 1000
    section = Section(
        KEY,
        "1b. Where a step's time goes",
        f"Scenario 1's 10-step chain, {chains} chains one after another on an in-process "
        "worker (concurrency 1), on a second server with pg_stat_statements (track = all) and "
        "track_functions = all; figures per step, one run after a warm-up. Server time is "
        "execution time as those views count it (COMMIT's WAL flush is not in it); the worker's "
        "start-up and claims are shared by the steps.",
        ["part", "per step", "calls per step"],
    )
    section.rows.append(
        ["span between journal commits (as scenario 1)", f"{span * 1000:.3f} ms", "—"]
    )
    section.rows.append(["worker run, start-up and claims included", f"{wall * 1000:.3f} ms", "—"])
    section.rows.append(["worker CPU (Python, this process)", f"{cpu * 1000:.3f} ms", "—"])
    section.rows.append(
        ["server execution, top-level statements", f"{top_level * 1000:.3f} ms", "—"]
    )
    rest = wall - cpu - top_level
    section.rows.append(
        ["the rest: round trips, WAL flush, scheduling", f"{rest * 1000:.3f} ms", "—"]
    )
    for toplevel, calls, total, query in statements[:TOP]:
        where = "" if toplevel else "(inside a function) "
        section.rows.append(
            [f"{where}`{_short(query)}`", f"{total * per_step:.3f} ms", f"{calls / steps:.2f}"]
        )
    for name, calls, total, own in sorted(functions, key=lambda row: -row[3])[:5]:
        section.rows.append(
            [
                f"function `{name}` (own time; with callees {total * per_step:.3f} ms)",
                f"{own * per_step:.3f} ms",
                f"{calls / steps:.2f}",
            ]
        )
    section.data = {
        "span_s": span,
        "wall_s": wall,
        "worker_cpu_s": cpu,
        "server_top_level_s": top_level,
        "steps": steps,
        "statements": [
            {"toplevel": t, "calls": c, "total_ms": ms_, "query": q} for t, c, ms_, q in statements
        ],
        "functions": [
            {"name": n, "calls": c, "total_ms": t, "self_ms": s} for n, c, t, s in functions
        ],
    }
    return section
