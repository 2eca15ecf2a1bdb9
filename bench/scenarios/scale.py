"""Scenario 4: 10 000 instances parked at once on one worker process.

Half the instances sleep (``df.sleep`` of 20…79 s, so timers keep falling due
while the rest wait), half wait for a signal; each then runs one step that
records ``clock_timestamp()`` in ``marks``. One ``pgdurable worker`` process
(default options) drives them all while its resident memory is sampled.

- Timer lateness = the step after the sleep starting (its mark) minus the
  sleep's due time (``pgdurable.timers.due_at``, fixed when the sleep first ran).
- Signal latency = ``df.signal`` committed (client clock, same host as the
  server) to the step after the wait starting. A sample of waiters is
  signalled one at a time while the timers fire; the rest in one burst at the
  end, whose drain time gives the delivery rate.

One run at full size (it takes about 2.5 minutes), whatever ``--runs`` says:
the figures are percentiles over thousands of instances, not over runs.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

from bench.context import Context
from bench.harness import BenchDatabase, percentile
from bench.procs import RssSampler, cpu_seconds, log_tail, spawn_worker, stop, wait_until
from bench.report import Section, ms
from pgdurable import db

KEY = "scale"
TARGET_RSS_MB = 150.0
TARGET_LATENESS_S = 1.0
START_SESSIONS = 2  # one per core: df.start is CPU-bound in the server
START_BATCH = 500


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _mark(kind: str) -> str:
    """DSL text of the step that records when it started, for instance ``kind``."""
    return _literal(
        f"INSERT INTO marks (instance_id, kind, at) "
        f"VALUES ('{{sys_instance_id}}', '{kind}', clock_timestamp())"
    )


def start_instances(
    database: BenchDatabase, sleepers: int, waiters: int, first_sleep: int, window: int
) -> float:
    """Start every instance from ``START_SESSIONS`` sessions; seconds it took."""
    batches: list[str] = []
    for lo in range(0, sleepers, START_BATCH):
        hi = min(lo + START_BATCH, sleepers)
        batches.append(
            f"SELECT count(df.start(df.sleep({first_sleep} + g % {window}) ~> {_mark('woke')},"
            f" 'sleep')) FROM generate_series({lo}, {hi - 1}) g"
        )
    for lo in range(0, waiters, START_BATCH):
        hi = min(lo + START_BATCH, waiters)
        batches.append(
            f"SELECT count(df.start(df.wait_for_signal('go') ~> {_mark('signalled')}, 'wait'))"
            f" FROM generate_series({lo}, {hi - 1}) g"
        )
    errors: list[BaseException] = []

    def session(part: list[str]) -> None:
        try:
            with db.connection(database.user_dsn, autocommit=True) as conn:
                for query in part:
                    conn.execute(query)
        except BaseException as exc:  # reported by the caller, after the join
            errors.append(exc)

    began = time.perf_counter()
    threads = [
        threading.Thread(target=session, args=(batches[i::START_SESSIONS],))
        for i in range(START_SESSIONS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - began


class BacklogSampler:
    """How many runs are runnable (a timer fell due, a signal arrived, a new
    start) but not claimed, every 0.25 s.

    A lateness that grows with this backlog means the worker cannot keep up;
    a late timer with an empty backlog points at the wake-up path instead.
    """

    QUERY = (
        "SELECT count(*) FROM pgdurable.runs WHERE wake_at <= clock_timestamp()"
        " AND (lease_expires_at IS NULL"
        " OR lease_expires_at < clock_timestamp())"
    )

    def __init__(self, dsn: str) -> None:
        self.samples: list[tuple[float, int]] = []  # (monotonic time, due and unclaimed)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(dsn,), daemon=True)
        self._thread.start()

    def _run(self, dsn: str) -> None:
        with db.connection(dsn, autocommit=True) as conn:
            while not self._done.wait(0.25):
                self.samples.append((time.monotonic(), conn.execute(self.QUERY).fetchone()[0]))

    def peak_since(self, since: float) -> int:
        return max((n for at, n in self.samples if at >= since), default=0)

    def stop(self) -> None:
        self._done.set()
        self._thread.join(5)


def _summary(values: list[float]) -> str:
    if not values:
        return "—"
    return (
        f"p50 {ms(percentile(values, 0.5))} · p99 {ms(percentile(values, 0.99))} · "
        f"max {ms(max(values))}"
    )


def run(ctx: Context) -> Section:
    total = ctx.size(10_000, 300)
    sleepers, waiters = total // 2, total - total // 2
    first_sleep, window = ctx.size(20, 3), ctx.size(60, 8)
    paced = ctx.size(1000, 50)
    with ctx.server.database() as database, tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "worker.log"
        database.execute("CREATE TABLE marks (instance_id text, kind text, at timestamptz)")
        database.execute("GRANT ALL ON marks TO bench")
        ctx.progress(f"scale: starting {total} instances")
        started_in = start_instances(database, sleepers, waiters, first_sleep, window)

        ctx.progress("scale: one worker process; waiting until every instance is parked")
        worker = spawn_worker(database.admin_dsn, log)
        rss = RssSampler(worker.pid)
        backlog = BacklogSampler(database.admin_dsn)
        try:
            spawned = time.perf_counter()

            def parked() -> bool:
                timers, waiting = database.execute(
                    "SELECT (SELECT count(*) FROM pgdurable.timers),"
                    " (SELECT count(*) FROM pgdurable.runs WHERE wake_at = 'infinity')"
                )[0]
                return timers == sleepers and waiting == waiters

            wait_until(
                parked,
                timeout=600,
                interval=0.2,
                what="every instance to park",
                process=worker,
                log=log,
            )
            activation = time.perf_counter() - spawned
            parked_mono = time.monotonic()
            activated_at = database.value("SELECT clock_timestamp()")
            rss_parked = rss.sample() or 0.0
            cpu_parked = cpu_seconds(worker.pid) or 0.0

            # Signal a sample one at a time while the timers are still falling due.
            ids = [
                row[0]
                for row in database.execute(
                    "SELECT id FROM df.instances WHERE label = 'wait' ORDER BY id"
                )
            ]
            sample, rest = ids[:paced], ids[paced:]
            left = float(
                database.value(
                    "SELECT extract(epoch FROM max(due_at) - clock_timestamp())"
                    " FROM pgdurable.timers",
                )
            )
            interval = max(0.02, left / max(1, len(sample)))
            ctx.progress(
                f"scale: {len(sample)} signals, one every {interval * 1000:.0f} ms, "
                f"while timers fire (last due in {left:.0f} s)"
            )
            sent: dict[str, float] = {}
            with db.connection(database.user_dsn, autocommit=True) as conn:
                tick = time.monotonic()
                for instance in sample:
                    conn.execute("SELECT df.signal(%s, 'go')", [instance])
                    sent[instance] = time.time()
                    # Pacing, not synchronisation: signals arrive at a steady rate.
                    tick += interval
                    time.sleep(max(0.0, tick - time.monotonic()))

            def marked(kind: str, count: int) -> bool:
                return database.value("SELECT count(*) FROM marks WHERE kind = %s", [kind]) >= count

            wait_until(
                lambda: marked("woke", sleepers),
                timeout=300,
                interval=0.2,
                what="every timer to fire",
                process=worker,
                log=log,
            )
            wait_until(
                lambda: marked("signalled", len(sample)),
                timeout=300,
                interval=0.1,
                what="the paced signals",
                process=worker,
                log=log,
            )

            ctx.progress(f"scale: burst of {len(rest)} signals")
            with db.connection(database.user_dsn, autocommit=True) as conn:
                conn.execute("SELECT count(df.signal(id, 'go')) FROM unnest(%s::text[]) id", [rest])
                burst_at = time.time()
            wait_until(
                lambda: marked("signalled", waiters),
                timeout=600,
                interval=0.1,
                what="the burst to be delivered",
                process=worker,
                log=log,
            )
            cpu_end = cpu_seconds(worker.pid) or 0.0
            wall_after = time.monotonic() - parked_mono
            rss.stop()
        finally:
            rss.stop()
            backlog.stop()
            stop(worker)
        load = os.getloadavg()

        lateness = [
            float(x)
            for (x,) in database.execute(
                "SELECT extract(epoch FROM m.at - t.due_at) FROM marks m"
                " JOIN pgdurable.timers t ON t.instance_id = m.instance_id WHERE m.kind = 'woke'"
            )
        ]
        late_during = [
            float(x)
            for (x,) in database.execute(
                "SELECT extract(epoch FROM m.at - t.due_at) FROM marks m"
                " JOIN pgdurable.timers t ON t.instance_id = m.instance_id"
                " WHERE m.kind = 'woke' AND t.due_at <= %s",
                [activated_at],
            )
        ]
        late_after = [
            float(x)
            for (x,) in database.execute(
                "SELECT extract(epoch FROM m.at - t.due_at) FROM marks m"
                " JOIN pgdurable.timers t ON t.instance_id = m.instance_id"
                " WHERE m.kind = 'woke' AND t.due_at > %s",
                [activated_at],
            )
        ]
        # p99 lateness per 10 s of due time after parking: a spike or a steady drift?
        windows = database.execute(
            "SELECT floor(extract(epoch FROM t.due_at - %s) / 10)::int AS w, count(*),"
            " percentile_disc(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM m.at - t.due_at))"
            " FROM marks m JOIN pgdurable.timers t ON t.instance_id = m.instance_id"
            " WHERE m.kind = 'woke' AND t.due_at > %s GROUP BY w ORDER BY w",
            [activated_at, activated_at],
        )
        marks_at = dict(
            database.execute(
                "SELECT instance_id, extract(epoch FROM at) FROM marks WHERE kind = 'signalled'"
            )
        )
        paced_latency = [float(marks_at[i]) - sent[i] for i in sample]
        burst_latency = [float(marks_at[i]) - burst_at for i in rest]
        statuses = dict(database.execute("SELECT status, count(*) FROM df.instances GROUP BY 1"))
        marks, distinct = database.execute(
            "SELECT count(*), count(DISTINCT instance_id) FROM marks"
        )[0]
        if statuses != {"completed": total} or marks != total or distinct != total:
            raise RuntimeError(
                f"instances {statuses}, marks {marks} ({distinct} distinct)\n" + log_tail(log)
            )
        errors_logged = log_tail(log, 100_000).count("ERROR")

    section = Section(
        KEY,
        f"4. {total:,} parked instances on one worker",
        f"{total:,} instances started at once (`df.start` in `generate_series`, "
        f"{START_SESSIONS} sessions); {sleepers:,} run `df.sleep({first_sleep}…"
        f"{first_sleep + window - 1})` and {waiters:,} `df.wait_for_signal('go')`, each "
        "followed by one step recording `clock_timestamp()`. One `pgdurable worker` process "
        "with default options (concurrency 10, lease 30 s), RSS sampled every 0.1 s from "
        "/proc. Timer lateness = the step after the sleep starting − the sleep's "
        "`pgdurable.timers.due_at`. Signal latency = `df.signal` committed → the step after "
        f"the wait starting: {len(sample):,} signals paced one every "
        f"{interval * 1000:.0f} ms while the timers fire, then the remaining "
        f"{len(rest):,} in one transaction. One run (the figures are percentiles over "
        "instances, not runs).",
        ["measurement", "n", "result"],
    )
    burst_drain = max(burst_latency) if burst_latency else 0.0
    section.rows += [
        ["start the instances", f"{total:,}", f"{started_in:.1f} s ({total / started_in:,.0f}/s)"],
        [
            "worker: every instance parked (sleep armed / wait registered)",
            f"{total:,}",
            f"{activation:.1f} s after the process started ({total / activation:,.0f}/s)",
        ],
        [
            "worker peak RSS (VmHWM)",
            "",
            f"{rss.hwm_mb:.0f} MB (RSS {rss_parked:.0f} MB with "
            f"all parked, {rss.samples[-1][1]:.0f} MB at the end)",
        ],
        ["timer lateness, all sleeps", f"{len(lateness):,}", _summary(lateness)],
        [
            "… due while the worker was still parking new instances",
            f"{len(late_during):,}",
            _summary(late_during),
        ],
        ["… due after every instance was parked", f"{len(late_after):,}", _summary(late_after)],
        [
            "signal latency, paced (timers firing meanwhile)",
            f"{len(paced_latency):,}",
            _summary(paced_latency),
        ],
        ["signal latency, one burst", f"{len(burst_latency):,}", _summary(burst_latency)],
        [
            "burst drained",
            f"{len(burst_latency):,}",
            f"{burst_drain:.1f} s ({len(burst_latency) / burst_drain:,.0f} deliveries/s)"
            if burst_drain
            else "—",
        ],
    ]
    section.notes.append(
        f"Every instance completed and its step ran once ({marks:,} marks, all distinct); "
        f"the worker logged {errors_logged} ERROR lines."
    )
    section.notes.append(
        f"Worker CPU: {cpu_parked:.0f} s while parking ({cpu_parked / activation:.0%} of a core), "
        f"{cpu_end - cpu_parked:.0f} s over the {wall_after:.0f} s after "
        f"({(cpu_end - cpu_parked) / wall_after:.0%} of a core). Runnable runs not yet "
        "claimed (due timers and signalled waits), peak after parking: "
        f"{backlog.peak_since(parked_mono)}. Load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} cores."
    )
    section.notes.append(
        "Timer lateness p99 by 10 s of due time after parking: "
        + ", ".join(f"+{w * 10}s {float(p):.2f} s (n={n})" for w, n, p in windows)
        + "."
    )
    section.notes.append(
        "Burst latency is queueing: one worker with concurrency 10 works through the "
        "signalled instances in turn, so the p99 is about the drain time."
    )
    p99 = percentile(lateness, 0.99)
    section.target(
        f"worker RSS ≤ {TARGET_RSS_MB:.0f} MB with {total:,} parked",
        f"{rss.hwm_mb:.0f} MB",
        rss.hwm_mb <= TARGET_RSS_MB,
    )
    section.target(
        f"timer lateness p99 ≤ {TARGET_LATENESS_S:.0f} s", ms(p99), p99 <= TARGET_LATENESS_S
    )
    section.data = {
        "instances": total,
        "start_s": started_in,
        "activation_s": activation,
        "rss_hwm_mb": rss.hwm_mb,
        "rss_peak_sampled_mb": rss.peak_mb,
        "rss_parked_mb": rss_parked,
        "lateness_s": {"p50": percentile(lateness, 0.5), "p99": p99, "max": max(lateness)},
        "lateness_during_activation_s": sorted(late_during)[-5:],
        "lateness_p99_by_10s_after_parking": [[w * 10, n, float(p)] for w, n, p in windows],
        "worker_cpu_s": {"parking": cpu_parked, "after": cpu_end - cpu_parked},
        "due_unclaimed": [[round(at - parked_mono, 2), n] for at, n in backlog.samples],
        "loadavg_end": load,
        "signal_paced_s": {
            "p50": percentile(paced_latency, 0.5),
            "p99": percentile(paced_latency, 0.99),
            "max": max(paced_latency),
        },
        "signal_burst_s": {
            "p50": percentile(burst_latency, 0.5),
            "p99": percentile(burst_latency, 0.99),
            "max": burst_drain,
        }
        if burst_latency
        else None,
    }
    return section
