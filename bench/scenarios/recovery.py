"""Scenario 5: resumed progress after a worker is SIGKILLed with 1 000 instances in flight.

1 000 instances (quick: 100) of three one-row ``INSERT`` steps each are
started; one ``pgdurable worker`` process drives them until 30 % of the steps
are journaled, is SIGKILLed, and a new worker process is started at once.
From the new process's start (before ``exec``, so Python start-up counts) we
take the first step journaled after the restart, the first step of an
instance the killed worker held a lease on (those wait for the lease to
expire), and the last instance completing. Exactly-once is checked on the
table the steps write and on the journal: every (instance, step) once.

Both processes use the same lease: the default 30 s, then 5 s. Each
configuration gets its own fresh database per run.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.context import Context
from bench.harness import BenchDatabase, Stats
from bench.procs import log_tail, spawn_worker, stop, wait_until
from bench.report import Section, seconds
from pgdurable import db

KEY = "recovery"
STEPS = 3
KILL_AT = 0.3  # fraction of all steps journaled when the worker is killed
LEASES = (30.0, 5.0)  # the worker's default, then a short one
MAX_FULL_RUNS = 3  # the 30 s lease makes a run ~40 s: keeps the scenario under 4 minutes


def _spread(stats: Stats) -> str:
    return f"{seconds(stats.median)} ({stats.low:.2f}–{stats.high:.2f})"


def start_instances(database: BenchDatabase, count: int) -> None:
    step = "INSERT INTO effects (instance_id, step) VALUES (''{{sys_instance_id}}'', {k})"
    chain = " ~> ".join(f"'{step.format(k=k)}'" for k in range(1, STEPS + 1))
    with db.connection(database.user_dsn, autocommit=True) as conn:
        conn.execute(f"SELECT count(df.start({chain})) FROM generate_series(1, {count})")


def one_run(database: BenchDatabase, count: int, lease: float, log: Path) -> dict[str, float]:
    """Kill a worker mid-flight, restart one, and time the recovery (seconds, epoch-based)."""
    database.execute("CREATE TABLE effects (instance_id text, step int)")
    database.execute("GRANT ALL ON effects TO bench")
    start_instances(database, count)
    total = count * STEPS
    options = ("--lease-seconds", str(lease))
    first = spawn_worker(database.admin_dsn, log, *options)
    try:
        wait_until(
            lambda: database.value("SELECT count(*) FROM pgdurable.journal") >= KILL_AT * total,
            timeout=300,
            interval=0.01,
            what=f"{KILL_AT:.0%} of the steps",
            process=first,
            log=log,
        )
    finally:
        stop(first, kill=True)
    killed_at = time.time()
    # Read what the dead worker left before the new one can claim anything.
    done_at_kill = database.value("SELECT count(*) FROM pgdurable.journal")
    unfinished = database.value(
        "SELECT count(*) FROM df.instances WHERE status IN ('pending', 'running')"
    )
    held = [
        row[0]
        for row in database.execute(
            "SELECT instance_id FROM pgdurable.runs WHERE lease_expires_at > clock_timestamp()"
        )
    ]
    lease_left = database.value(
        "SELECT coalesce(extract(epoch FROM max(lease_expires_at)) - %s, 0)"
        " FROM pgdurable.runs WHERE lease_expires_at IS NOT NULL",
        [killed_at],
    )
    restarted_at = time.time()
    second = spawn_worker(database.admin_dsn, log, *options)
    try:
        wait_until(
            lambda: (
                database.value(
                    "SELECT count(*) FROM df.instances WHERE status IN ('pending', 'running')",
                )
                == 0
            ),
            timeout=lease + 300,
            interval=0.05,
            what="every instance to finish after the restart",
            process=second,
            log=log,
        )
    finally:
        stop(second)
    first_step = database.value(
        "SELECT extract(epoch FROM min(recorded_at)) - %s FROM pgdurable.journal"
        " WHERE recorded_at > to_timestamp(%s)",
        [restarted_at, restarted_at],
    )
    held_resumed = database.value(
        "SELECT extract(epoch FROM min(recorded_at)) - %s FROM pgdurable.journal"
        " WHERE recorded_at > to_timestamp(%s) AND instance_id = ANY(%s)",
        [restarted_at, restarted_at, held],
    )
    others_done = database.value(
        "SELECT extract(epoch FROM max(recorded_at)) - %s FROM pgdurable.journal"
        " WHERE NOT instance_id = ANY(%s)",
        [restarted_at, held],
    )
    all_done = database.value(
        "SELECT extract(epoch FROM max(recorded_at)) - %s FROM pgdurable.journal",
        [restarted_at],
    )
    statuses = dict(database.execute("SELECT status, count(*) FROM df.instances GROUP BY 1"))
    effects, distinct = database.execute(
        "SELECT count(*), count(DISTINCT (instance_id, step)) FROM effects"
    )[0]
    journal = database.value("SELECT count(*) FROM pgdurable.journal")
    exact = statuses == {"completed": count} and effects == distinct == journal == total
    if not exact:
        raise RuntimeError(
            f"lost or duplicated steps: instances {statuses}, {effects} effects "
            f"({distinct} distinct), {journal} journal rows, {total} expected\n" + log_tail(log)
        )
    return {
        "done_at_kill": float(done_at_kill),
        "unfinished_at_kill": float(unfinished),
        "held": float(len(held)),
        "lease_left_s": float(lease_left),
        "first_step_s": float(first_step),
        "held_resumed_s": float(held_resumed) if held_resumed is not None else float("nan"),
        "others_done_s": float(others_done),
        "all_done_s": float(all_done),
    }


def run(ctx: Context) -> Section:
    count = ctx.size(1000, 100)
    runs = ctx.runs if ctx.quick else min(ctx.runs, MAX_FULL_RUNS)
    results: dict[float, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "worker.log"
        for lease in LEASES:
            results[lease] = []
            for attempt in range(runs):
                ctx.progress(f"recovery: lease {lease:.0f} s, run {attempt + 1}/{runs}")
                with ctx.server.database() as database:
                    results[lease].append(one_run(database, count, lease, log))

    section = Section(
        KEY,
        "5. Recovery after SIGKILL",
        f"{count:,} instances of {STEPS} one-row `INSERT` steps; one `pgdurable worker` "
        f"process (concurrency 10) is SIGKILLed once {KILL_AT:.0%} of the steps are "
        "journaled and a new process is started at once with the same options. Times "
        "are from the new process's spawn (Python start-up included) to journal commits "
        "(`pgdurable.journal.recorded_at`). Both processes run with the default lease "
        f"(30 s), then with `--lease-seconds 5`; {runs} runs each, fresh database per run "
        f"(no warm-up: every run starts cold processes; {ctx.runs} runs requested, at most "
        f"{MAX_FULL_RUNS} at full size because a 30 s-lease run lasts ~40 s).",
        [
            "lease",
            "in flight at kill",
            "leases held by the killed worker",
            "restart → first step",
            "restart → all others done",
            "restart → held instances resume",
            "restart → all done",
            "exactly-once",
        ],
    )
    for lease, samples in results.items():

        def stats(name: str, samples: list[dict[str, float]] = samples) -> Stats:
            return Stats([s[name] for s in samples])

        section.rows.append(
            [
                f"{lease:.0f} s" + (" (default)" if lease == LEASES[0] else ""),
                f"{stats('unfinished_at_kill').median:,.0f} of {count:,} unfinished "
                f"({stats('done_at_kill').median:,.0f} of {count * STEPS:,} steps done)",
                f"{stats('held').median:.0f} (lease left {stats('lease_left_s').median:.1f} s)",
                _spread(stats("first_step_s")),
                _spread(stats("others_done_s")),
                _spread(stats("held_resumed_s")),
                _spread(stats("all_done_s")),
                f"{len(samples)}/{len(samples)} runs: {count * STEPS:,} effects, none lost "
                "or repeated",
            ]
        )
        section.data[f"lease_{lease:.0f}s"] = samples
    default, short = (Stats([s["first_step_s"] for s in results[x]]) for x in LEASES)
    section.notes.append(
        "Progress resumes as soon as the new process is up: only the instances the killed "
        "worker had claimed (at most its concurrency) are fenced by their leases; every "
        "other unfinished instance is claimable at once. "
        f"Restart → first step: {seconds(default.median)} (30 s lease), "
        f"{seconds(short.median)} (5 s lease)."
    )
    section.notes.append(
        "The held instances resume when their lease expires (last heartbeat + lease), so "
        "'held instances resume' and 'all done' follow the lease length; a shorter lease "
        "recovers sooner but a worker stalled for longer than the lease (GC, a paused VM) "
        "loses its claims to another worker, which fencing makes safe but wasteful."
    )
    return section
