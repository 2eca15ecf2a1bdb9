"""Scenario 8: one database, 1, 2 and 4 worker processes draining one-step workflows.

The drain of scenario 2 (``throughput.drain``: workers listen, then N one-step
workflows are started in one commit; rate = N ÷ (last completion − first claim))
with more worker processes than the machine may have cores. Where the rate stops
growing, the database (its commits, its CPU) is the limit, not the worker: that
is when a deployment needs a second database with its own worker group, since
one workflow's instances, timers and signals live in one database.
"""

from __future__ import annotations

import os

from bench.context import Context
from bench.harness import Stats, repeat
from bench.report import Section, rate, spread
from bench.scenarios.throughput import drain_fresh

KEY = "scaleout"
PROCESSES = (1, 2, 4)


def run(ctx: Context) -> Section:
    count = ctx.size(2000, 60)
    rates: dict[int, Stats] = {}
    for processes in PROCESSES:
        ctx.progress(f"scale-out: {processes} worker process(es)")
        rates[processes] = repeat(
            lambda processes=processes: drain_fresh(ctx, processes, count), ctx.runs, ctx.warmup
        )
    section = Section(
        KEY,
        "8. Scale-out across worker processes",
        f"{count} one-step workflows (a one-row `UPDATE`) drained by 1, 2 or 4 `pgdurable "
        "worker` processes (default options, concurrency 10 each) against one database, as in "
        f"scenario 2. {ctx.runs} runs after {ctx.warmup} warm-up, a fresh database each; "
        f"this machine has {os.cpu_count()} cores shared by the workers and the server.",
        ["worker processes", "completed, median (min–max)", "ratio to 1 process"],
    )
    base = rates[PROCESSES[0]].median
    for processes, stats in rates.items():
        section.rows.append([str(processes), spread(stats, rate), f"{stats.median / base:.2f}×"])
    section.data = {f"workers_{p}": stats.as_dict() for p, stats in rates.items()}
    section.data["instances"] = count
    best = max(rates, key=lambda p: rates[p].median)
    section.notes.append(
        f"The rate peaks at {best} process(es). Beyond the point where it stops growing, more "
        "workers only add connections and claim contention: the database's commit rate and CPU "
        "are the limit, and the way on is another database with its own worker group (README, "
        '"When one database is not enough").'
    )
    return section
