"""Scenario 3: from ``df.start``'s commit to the first step starting.

One ``pgdurable worker`` process (default options) waits idle. A client
starts a one-step workflow whose step records ``clock_timestamp()``; latency
= that mark − the client's clock when its autocommit ``df.start`` returned
(server and client share the host's clock). The next start waits until the
previous instance completed, so the worker is idle each time.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.context import Context
from bench.harness import percentile
from bench.procs import spawn_worker, stop, wait_until
from bench.report import Section, ms
from pgdurable import db

KEY = "latency"
TARGET_P50_S = 0.005
TARGET_P99_S = 0.020
STEP = "INSERT INTO marks (instance_id, at) VALUES ('{sys_instance_id}', clock_timestamp())"


def run(ctx: Context) -> Section:
    samples_per_run = ctx.size(200, 20)
    log = Path(tempfile.mkstemp(prefix="pgdurable-bench-latency-", suffix=".log")[1])
    latencies: list[float] = []
    with ctx.server.database() as database:
        database.execute("CREATE TABLE marks (instance_id text PRIMARY KEY, at timestamptz)")
        database.execute("GRANT ALL ON marks TO bench")
        worker = spawn_worker(database.admin_dsn, log)
        try:
            with db.connection(database.user_dsn, autocommit=True) as conn:
                total = samples_per_run * (ctx.runs + ctx.warmup)
                for number in range(total):
                    if number % samples_per_run == 0:
                        ctx.progress(f"latency: {number}/{total}")
                    instance = conn.execute("SELECT df.start(%s)", [STEP]).fetchone()[0]
                    committed = time.time()
                    at = wait_until(
                        lambda instance=instance: conn.execute(
                            "SELECT extract(epoch FROM at) FROM marks WHERE instance_id = %s",
                            [instance],
                        ).fetchone(),
                        timeout=30,
                        what=f"the step of {instance}",
                        interval=0.002,
                        process=worker,
                        log=log,
                    )[0]
                    wait_until(
                        lambda instance=instance: conn.execute(
                            "SELECT status = 'completed' FROM df.instances WHERE id = %s",
                            [instance],
                        ).fetchone()[0],
                        timeout=30,
                        what=f"{instance} to complete",
                        interval=0.002,
                    )
                    if number >= ctx.warmup * samples_per_run:
                        latencies.append(float(at) - committed)
        finally:
            stop(worker)
    log.unlink()  # kept only when the run failed, for the worker's messages
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    section = Section(
        KEY,
        "3. Latency",
        f"{len(latencies)} one-step workflows started one after another (each once the "
        "previous completed) against an idle `pgdurable worker` process with default options; "
        "latency = the step's `clock_timestamp()` − the client's clock when `df.start` "
        f"returned. Percentiles over all samples ({ctx.warmup * samples_per_run} warm-up "
        "samples dropped).",
        ["measurement", "p50", "p99", "max"],
    )
    section.rows.append(
        ["`df.start` commit → first step starts", ms(p50), ms(p99), ms(max(latencies))]
    )
    section.data = {"samples_s": latencies, "p50_s": p50, "p99_s": p99}
    section.target(
        f"p50 ≤ {ms(TARGET_P50_S)}, p99 ≤ {ms(TARGET_P99_S)}",
        f"p50 {ms(p50)}, p99 {ms(p99)}",
        p50 <= TARGET_P50_S and p99 <= TARGET_P99_S,
    )
    return section
