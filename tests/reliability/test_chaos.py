"""Crashes lose nothing and repeat nothing (SPEC A.2.1, A.2.2, A.2.4; issue 11 §1).

A seeded plan of mixed workflows (sequences, joins, races, loops with a
condition or a break, nested loops over joins, sleeps, buffered signals,
retries, try, failures) runs twice:

- on a cluster of its own, under chaos: two competing worker processes are
  SIGKILLed and replaced at random moments, and PostgreSQL itself is stopped
  with ``-m immediate`` (a crash: no checkpoint, in-flight transactions lost)
  and restarted at random moments; signals arrive at random moments, some
  before the wait that consumes them exists, some while the server is down;
- on the session cluster, crash-free, as the reference.

Every SQL step that has an effect inserts a row into ``effects`` (no unique
key, so a repeated step would show as a duplicate row). Both runs must end
with, per instance, the status and the multiset of effects the plan
predicts: a missing row is a lost step, an extra one a repeated step.

The random choices (graphs, chaos schedule, signal times) come from one
seed, printed at the start; ``PGDURABLE_CHAOS_SEED=<seed>`` replays the plan
(timings are real, so a replay is as close as a real system allows).
"""

from __future__ import annotations

import os
import random
import select
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pgdurable.testing import spawn_worker, sql_literal, stop_process, wait_for

ROLE = "chaos_user"
SIGNAL_TIMEOUT = 600  # the waits' own timeout never fires during a test
OUTAGE_NOTICE = "LISTEN connection lost"  # what a worker logs when the server vanishes
LISTENING = "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN pgdurable_wake'"


# -- the plan -----------------------------------------------------------------


@dataclass
class Planned:
    tag: str
    kind: str
    expr: str  # DSL expression, as df.start takes it
    status: str  # what a crash-free run ends with
    effects: Counter  # step name -> times applied
    signals: list[str] = field(default_factory=list)  # payloads of 'go' signals, in order
    sequence: str | None = None  # a sequence the retry kind uses to fail once


def _insert(tag: str, step: str, *, slow: bool = False) -> str:
    # pg_sleep widens the window in which a kill or crash lands inside a step.
    source = " FROM pg_sleep(0.03)" if slow else ""
    return sql_literal(f"INSERT INTO effects (tag, step) SELECT '{tag}', '{step}'{source}")


def _counted(tag: str) -> str:
    """A loop body step: bump the tag's counter and record the iteration number."""
    return sql_literal(
        f"WITH u AS (UPDATE counters SET n = n + 1 WHERE tag = '{tag}' RETURNING n)"
        f" INSERT INTO effects (tag, step) SELECT '{tag}', 'it' || n FROM u"
    )


def _counter_below(tag: str, limit: int) -> str:
    return sql_literal(f"SELECT n < {limit} FROM counters WHERE tag = '{tag}'")


def _seq(*parts: str) -> str:
    expr = parts[0]
    for part in parts[1:]:
        expr = f"df.seq({expr}, {part})"
    return expr


def plan_instance(rng: random.Random, index: int) -> Planned:
    tag = f"t{index:04d}"
    kind = rng.choice(
        [
            "seq",
            "join",
            "race",
            "race_signal",
            "loop_while",
            "loop_break",
            "loop_join",
            "sleep",
            "signals",
            "retry",
            "fails",
            "try",
        ]
    )

    def step(name: str) -> str:
        return _insert(tag, name, slow=rng.random() < 0.3)

    if kind == "seq":
        names = [f"s{k}" for k in range(1, rng.randint(2, 6) + 1)]
        return Planned(tag, kind, _seq(*map(step, names)), "completed", Counter(names))
    if kind == "join":
        expr = _seq(
            f"df.join3({_seq(step('a1'), step('a2'))}, {step('b1')}, {step('c1')})", step("d")
        )
        return Planned(tag, kind, expr, "completed", Counter(["a1", "a2", "b1", "c1", "d"]))
    if kind == "race":
        # The sleeping branch cannot win; its step must never run.
        loser = _seq(f"df.sleep({SIGNAL_TIMEOUT})", step("lost"))
        expr = _seq(f"df.race({step('won')}, {loser})", step("after"))
        return Planned(tag, kind, expr, "completed", Counter(["won", "after"]))
    if kind == "race_signal":
        never = f"df.wait_for_signal('never', {SIGNAL_TIMEOUT})"
        expr = _seq(f"df.race({never}, {step('won')})", step("after"))
        return Planned(tag, kind, expr, "completed", Counter(["won", "after"]))
    if kind == "loop_while":
        loop = f"df.loop({_counted(tag)}, {_counter_below(tag, 3)})"
        if rng.random() < 0.5:  # a root loop: every iteration is a new generation
            return Planned(tag, kind, loop, "completed", Counter(["it1", "it2", "it3"]))
        expr = _seq(step("before"), loop, step("after"))
        return Planned(
            tag, kind, expr, "completed", Counter(["before", "it1", "it2", "it3", "after"])
        )
    if kind == "loop_break":
        stop = sql_literal(f"SELECT n >= 2 FROM counters WHERE tag = '{tag}'")
        body = _seq(_counted(tag), f"df.if({stop}, df.break('done'), 'SELECT 0')")
        expr = _seq(step("before"), f"df.loop({body})", step("after"))
        return Planned(tag, kind, expr, "completed", Counter(["before", "it1", "it2", "after"]))
    if kind == "loop_join":
        body = f"df.join({_counted(tag)}, {step('side')})"
        expr = _seq(f"df.loop({body}, {_counter_below(tag, 3)})", step("after"))
        effects = Counter(["it1", "it2", "it3", "after"]) + Counter({"side": 3})
        return Planned(tag, kind, expr, "completed", effects)
    if kind == "sleep":
        expr = _seq(step("before"), f"df.sleep({rng.randint(1, 2)})", step("after"))
        return Planned(tag, kind, expr, "completed", Counter(["before", "after"]))
    if kind == "signals":
        # Two waits on one name: the buffered signals are consumed first in, first out.
        def waited(name: str) -> str:
            wait = f"df.as(df.wait_for_signal('go', {SIGNAL_TIMEOUT}), '{name}')"
            use = sql_literal(
                f"INSERT INTO effects (tag, step)"
                f" SELECT '{tag}', '{name}-' || (($%s.data)::jsonb ->> 'k')" % name
            )
            return _seq(wait, use)

        expr = _seq(step("before"), waited("first"), waited("second"))
        payloads = [f"p{index}a", f"p{index}b"]
        effects = Counter(["before", f"first-{payloads[0]}", f"second-{payloads[1]}"])
        return Planned(tag, kind, expr, "completed", effects, signals=payloads)
    if kind == "retry":
        # Fails on its first attempt only: nextval is not rolled back with the
        # failed attempt, while the attempt's insert is.
        sequence = f"flaky_{tag}"
        flaky = sql_literal(
            f"INSERT INTO effects (tag, step) VALUES ('{tag}', 'flaky');"
            f" SELECT 1 / (nextval('{sequence}') - 1)"
        )
        expr = _seq(step("before"), f"pgdurable.retry({flaky}, 5, 1)", step("after"))
        planned = Planned(tag, kind, expr, "completed", Counter(["before", "flaky", "after"]))
        planned.sequence = sequence
        return planned
    if kind == "fails":
        expr = _seq(step("before"), "'SELECT 1/0'", step("never"))
        return Planned(tag, kind, expr, "failed", Counter(["before"]))
    assert kind == "try"
    attempt = _seq(step("tried"), "'SELECT 1/0'")
    expr = _seq(f"pgdurable.try({attempt}, {step('recovered')})", step("after"))
    return Planned(tag, kind, expr, "completed", Counter(["tried", "recovered", "after"]))


# -- one database under test ---------------------------------------------------


class Target:
    """The plan's objects and instances in one database (chaos or reference)."""

    def __init__(self, conninfo_for, execute) -> None:
        self.conninfo_for = conninfo_for  # user -> conninfo
        self.execute = execute  # (query, params, user) -> rows
        self.ids: dict[str, str] = {}  # tag -> instance id

    def prepare(self, plans: list[Planned]) -> None:
        self.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}')"
            f" THEN CREATE ROLE {ROLE} LOGIN; END IF; END $$",
            None,
            "postgres",
        )
        self.execute(f"SELECT df.grant_usage('{ROLE}')", None, "postgres")
        sequences = [p.sequence for p in plans if p.sequence]
        statements = [
            "CREATE TABLE effects (id bigserial PRIMARY KEY, tag text NOT NULL, step text NOT NULL)",
            "CREATE TABLE counters (tag text PRIMARY KEY, n int NOT NULL DEFAULT 0)",
            "CREATE TABLE sent_signals (tag text, k int, PRIMARY KEY (tag, k))",
            *(f"CREATE SEQUENCE {name}" for name in sequences),
            f"GRANT ALL ON effects, counters, sent_signals TO {ROLE}",
            f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {ROLE}",
        ]
        self.execute(";".join(statements), None, "postgres")
        self.execute(
            "INSERT INTO counters (tag) SELECT unnest(%s::text[])",
            [[p.tag for p in plans]],
            "postgres",
        )
        from pgdurable import db

        with db.connect(self.conninfo_for(ROLE)) as conn:  # one transaction for all starts
            for p in plans:
                row = conn.execute(f"SELECT df.start({p.expr}, %s)", [p.tag]).fetchone()
                self.ids[p.tag] = row[0]
            conn.commit()

    def send_signal(self, tag: str, k: int, payload: str) -> bool:
        """Send signal ``k`` of ``tag`` once, even across a server crash: the
        signal and its marker row commit together, and an ambiguous failure
        is resolved by looking for the marker. False when the server is down."""
        from pgdurable import db

        try:
            with db.connect(self.conninfo_for(ROLE)) as conn:
                sent = conn.execute(
                    "SELECT 1 FROM sent_signals WHERE tag = %s AND k = %s", [tag, k]
                ).fetchone()
                if not sent:
                    conn.execute(
                        "SELECT df.signal(%s, 'go', %s)", [self.ids[tag], f'{{"k":"{payload}"}}']
                    )
                    conn.execute("INSERT INTO sent_signals VALUES (%s, %s)", [tag, k])
                    conn.commit()
            return True
        except db.DatabaseError:
            return False
        except Exception as exc:  # DatabaseUnavailable while the server restarts
            if type(exc).__name__ == "DatabaseUnavailable":
                return False
            raise

    def unfinished(self) -> int:
        return self.execute(
            "SELECT count(*) FROM df.instances WHERE status NOT IN ('completed', 'failed')",
            None,
            "postgres",
        )[0][0]

    def outcome(self) -> tuple[dict[str, str], dict[str, Counter]]:
        statuses = dict(self.execute("SELECT label, status FROM df.instances", None, "postgres"))
        effects: dict[str, Counter] = {}
        for tag, step in self.execute("SELECT tag, step FROM effects", None, "postgres"):
            effects.setdefault(tag, Counter())[step] += 1
        return statuses, effects


def check(plans: list[Planned], target: Target, what: str, seed: int) -> None:
    statuses, effects = target.outcome()
    wrong_status = {
        p.tag: (p.kind, statuses.get(p.tag), p.status)
        for p in plans
        if statuses.get(p.tag) != p.status
    }
    lost, repeated = {}, {}
    for p in plans:
        got = effects.get(p.tag, Counter())
        if got - p.effects:
            repeated[p.tag] = (p.kind, dict(got - p.effects))
        if p.effects - got:
            lost[p.tag] = (p.kind, dict(p.effects - got))
    replay = f"(replay with PGDURABLE_CHAOS_SEED={seed})"
    assert not wrong_status, f"{what}: unexpected statuses {wrong_status} {replay}"
    assert not repeated, f"{what}: steps applied more than once {repeated} {replay}"
    assert not lost, f"{what}: steps lost {lost} {replay}"


# -- the test -------------------------------------------------------------------


def test_chaos_loses_nothing_and_repeats_nothing(
    crashable_cluster, database, long_run, tmp_path: Path
):
    seed = int(os.environ.get("PGDURABLE_CHAOS_SEED") or random.SystemRandom().randrange(2**31))
    print(f"chaos seed {seed} (replay with PGDURABLE_CHAOS_SEED={seed})")
    rng = random.Random(seed)
    instances = 1000 if long_run else 200
    chaos_seconds = 180.0 if long_run else 30.0
    plans = [plan_instance(rng, i) for i in range(instances)]

    chaos = Target(
        lambda user: crashable_cluster.conninfo(user),
        lambda q, p, user: crashable_cluster.execute(q, p, user=user),
    )
    reference = Target(
        lambda user: database.conninfo(user), lambda q, p, user: database.execute(q, p, user=user)
    )
    for target in (chaos, reference):
        target.prepare(plans)

    # The reference: every signal buffered up front, one worker, no chaos.
    for p in plans:
        for k, payload in enumerate(p.signals):
            assert reference.send_signal(p.tag, k, payload)
    reference_worker = spawn_worker(
        database.conninfo(), "--concurrency", "20", log=tmp_path / "reference.log"
    )

    # Chaos: half of the signals are sent before any worker runs (buffered before
    # their wait exists), the rest at random moments while the chaos goes on.
    signals = [
        (0.0 if rng.random() < 0.5 else rng.uniform(0, chaos_seconds), p.tag, k, payload)
        for p in plans
        for k, payload in enumerate(p.signals)
    ]
    signals.sort()
    # Signals of one tag must go in order (FIFO is part of what is checked).
    by_tag: dict[str, list[tuple[int, str]]] = {}
    for _, tag, k, payload in signals:
        by_tag.setdefault(tag, []).append((k, payload))
    for items in by_tag.values():
        items.sort()
    times = sorted(t for t, *_ in signals)
    queue = [
        (t, tag, *item) for t, (tag, item) in zip(times, _interleave(by_tag, rng), strict=True)
    ]

    def send_due(now: float) -> None:
        while queue and queue[0][0] <= now:
            _, tag, k, payload = queue[0]
            if not chaos.send_signal(tag, k, payload):
                return  # the server is down: try again after it is back
            queue.pop(0)

    worker_args = ("--concurrency", "8", "--lease-seconds", "2")
    logs = tmp_path / "workers"
    logs.mkdir()
    spawned = 0

    def new_worker() -> object:
        nonlocal spawned
        spawned += 1
        return spawn_worker(
            crashable_cluster.conninfo(), *worker_args, log=logs / f"worker{spawned}.log"
        )

    def outages_seen() -> int:
        # Every worker's LISTEN connection breaks the moment the server goes away.
        return sum(log.read_text().count(OUTAGE_NOTICE) for log in logs.glob("*.log"))

    send_due(0.0)
    workers = [new_worker(), new_worker()]
    kills = exits = 0
    started = time.monotonic()
    next_event = rng.uniform(0.5, 2.5)
    try:
        while (now := time.monotonic() - started) < chaos_seconds:
            send_due(now)
            for i, worker in enumerate(workers):
                if worker.poll() is not None:  # a worker gave up on its own
                    exits += 1
                    workers[i] = new_worker()
            if now >= next_event:
                if rng.random() < 0.7:
                    victim = rng.randrange(len(workers))
                    workers[victim].send_signal(signal.SIGKILL)
                    stop_process(workers[victim])
                    kills += 1
                    workers[victim] = new_worker()
                else:
                    # Crash only a server every worker is connected to (a worker
                    # still starting up would find no server at all), and keep it
                    # down until a worker has noticed the outage.
                    wait_for(
                        lambda: crashable_cluster.value(LISTENING) == len(workers),
                        timeout=30,
                        what="every worker to listen",
                    )
                    seen = outages_seen()
                    crashable_cluster.crash()
                    wait_for(
                        lambda seen=seen: outages_seen() > seen,
                        timeout=30,
                        what="a worker to notice the server crash",
                    )
                    crashable_cluster.start()
                next_event = now + rng.uniform(0.5, 2.5)
            next_signal = queue[0][0] if queue else chaos_seconds
            _wait_for_an_exit(workers, min(next_event, next_signal) - (time.monotonic() - started))
        # Calm: the server is up, the last signals go out, the workers finish.
        send_due(float("inf"))
        assert not queue, "signals could not be sent after the chaos"

        def finished() -> bool:
            nonlocal exits
            for i, worker in enumerate(workers):
                if worker.poll() is not None:
                    exits += 1
                    workers[i] = new_worker()
            return chaos.unfinished() == 0

        wait_for(finished, timeout=120, interval=0.2, what="every chaos instance to finish")
        wait_for(
            lambda: reference.unfinished() == 0, timeout=60, interval=0.2, what="the reference"
        )
    finally:
        for worker in [*workers, reference_worker]:
            stop_process(worker)

    steps = crashable_cluster.value(
        "SELECT count(*) FROM df.nodes WHERE status IN ('completed', 'failed')"
    )
    effects = crashable_cluster.value("SELECT count(*) FROM effects")
    print(
        f"chaos seed {seed}: {instances} instances, {steps} node completions,"
        f" {effects} step effects, {kills} worker kills, {crashable_cluster.crashes}"
        f" PostgreSQL crashes, {exits} worker exits, kinds {Counter(p.kind for p in plans)}"
    )
    check(plans, reference, "crash-free reference", seed)
    check(plans, chaos, "under chaos", seed)
    assert crashable_cluster.value("SELECT count(*) FROM pgdurable.runs") == 0
    assert kills > 0 and crashable_cluster.crashes > 0
    assert exits == 0, "a worker process exited on its own (see its log)"


def _wait_for_an_exit(workers: list, seconds: float) -> None:
    """Block until one of the workers exits or ``seconds`` pass (the next
    scheduled chaos action), whichever comes first."""
    handles = [os.pidfd_open(worker.pid) for worker in workers if worker.poll() is None]
    try:
        select.select(handles, [], [], max(0.0, seconds))
    finally:
        for handle in handles:
            os.close(handle)


def _interleave(by_tag: dict[str, list[tuple[int, str]]], rng: random.Random):
    """The signals in a random order that keeps each tag's own order."""
    pending = {tag: list(items) for tag, items in by_tag.items()}
    while pending:
        tag = rng.choice(sorted(pending))
        yield tag, pending[tag].pop(0)
        if not pending[tag]:
            del pending[tag]


def test_a_worker_outlives_a_server_crash(crashable_cluster, tmp_path: Path):
    """Regression: the worker process used to exit with a traceback when its
    claim query met a connection the restarted server had closed."""
    cluster = crashable_cluster
    cluster.execute(f"CREATE ROLE {ROLE} LOGIN; SELECT df.grant_usage('{ROLE}')")
    log = tmp_path / "worker.log"
    worker = spawn_worker(cluster.conninfo(), "--lease-seconds", "2", log=log)
    try:
        first = cluster.value("SELECT df.start('SELECT 1')", user=ROLE)
        wait_for(lambda: cluster.value("SELECT df.status(%s)", [first]) == "completed")
        cluster.crash()
        cluster.start()
        second = cluster.value("SELECT df.start('SELECT 2')", user=ROLE)
        wait_for(
            lambda: cluster.value("SELECT df.status(%s)", [second]) == "completed",
            timeout=20,
            what="an instance started after the crash",
        )
        assert worker.poll() is None, log.read_text()
    finally:
        stop_process(worker)
