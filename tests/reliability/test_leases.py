"""Leases are safe (SPEC A.2.4; issue 11 §2).

A worker frozen with SIGSTOP in the middle of a SQL step (its statement ran,
its transaction is open, the completion not yet sent) outlives its lease;
another worker takes the instance over and finishes it. When the first one
is resumed with SIGCONT it must not commit its stale completion: the epoch
check in ``pgdurable.check_lease`` fails, its transaction rolls back, and the
step's effect exists exactly once.

Leases are measured by the database clock only: the worker sends durations,
never timestamps, so a worker host whose clock is wrong cannot extend or
shorten a lease.
"""

from __future__ import annotations

import re
import signal

import psycopg
import pytest

from pgdurable.testing import spawn_worker, stop_process, wait_for

STEP_BACKENDS = (
    "SELECT pid, state FROM pg_stat_activity"
    " WHERE application_name = 'pg_durable:worker:workflow-sql' AND query LIKE %s"
)


def test_a_paused_worker_cannot_commit_a_stale_completion(database, wf, tmp_path):
    database.execute("CREATE TABLE effects (who int, at timestamptz DEFAULT clock_timestamp())")
    database.execute("GRANT ALL ON effects TO alice")
    instance = wf.start(
        wf.then(
            wf.sql("INSERT INTO effects (who) SELECT pg_backend_pid(); SELECT pg_sleep(1.5)"),
            wf.sql("SELECT count(*) AS n FROM effects"),
        )
    )
    first = spawn_worker(
        database.conninfo(), "--lease-seconds", "2", "--concurrency", "1", log=tmp_path / "a.log"
    )
    second = None
    try:
        # The first worker's step is running: freeze the worker process there.
        running = wait_for(
            lambda: database.execute(STEP_BACKENDS, ["%pg_sleep(1.5)%"]),
            what="the first worker's step",
        )
        first.send_signal(signal.SIGSTOP)
        frozen_backend = running[0][0]
        # Its statement finishes on the server; the transaction stays open.
        wait_for(
            lambda: (
                database.value(
                    "SELECT state FROM pg_stat_activity WHERE pid = %s", [frozen_backend]
                )
                == "idle in transaction"
            ),
            what="the frozen step's transaction",
        )
        # The lease runs out by the database's clock: nobody extends it.
        wait_for(
            lambda: database.value(
                "SELECT lease_expires_at < clock_timestamp() FROM pgdurable.runs"
                " WHERE instance_id = %s",
                [instance],
            ),
            what="the lease to expire",
        )
        epoch_before = database.value(
            "SELECT epoch FROM pgdurable.runs WHERE instance_id = %s", [instance]
        )
        second = spawn_worker(
            database.conninfo(), "--lease-seconds", "2", "--concurrency", "1",
            log=tmp_path / "b.log",
        )  # fmt: skip
        wf.wait_status(instance, "completed", timeout=30)
        # The second worker's own run of the step is the one that counts.
        assert wf.result(instance)["rows"] == [{"n": 1}]
        assert epoch_before >= 1
        first.send_signal(signal.SIGCONT)
        # Resumed, the first worker sends its completion and is fenced out.
        wait_for(
            lambda: (
                not database.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'idle in transaction'",
                    [frozen_backend],
                )
            ),
            what="the resumed worker's transaction to end",
        )
        effects = database.execute("SELECT who FROM effects")
        assert len(effects) == 1 and effects[0][0] != frozen_backend
        assert wf.status(instance) == "completed"
        journal = database.value(
            "SELECT count(*) FROM pgdurable.journal WHERE instance_id = %s", [instance]
        )
        assert journal == 2  # one row per step, none from the stale worker
        assert first.poll() is None  # fenced, not crashed
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGCONT)
        stop_process(first)
        if second is not None:
            stop_process(second)


@pytest.mark.parametrize(
    "completion",
    [
        "SELECT pgdurable.complete_step_v1(%s, %s, %s, %s, 1, %s, '{}')",
        "SELECT pgdurable.complete_step_v2(%s, %s, %s, %s, 1, %s, '{}', '[]')",
        "SELECT pgdurable.complete_step_v3(%s, %s, %s, %s, 1, %s, '{}', '[]')",
    ],
    ids=["v1", "v2", "v3"],
)
def test_a_fenced_completion_is_refused_even_inside_its_own_transaction(database, wf, completion):
    """The fence at the SQL level: a completion with an outdated epoch raises,
    and the step's statement in the same transaction is rolled back with it."""
    database.execute("CREATE TABLE effects (v int)")
    database.execute("GRANT ALL ON effects TO alice")
    instance = wf.start(wf.sql("INSERT INTO effects VALUES (1)"))
    node = database.value("SELECT root_node FROM df.instances WHERE id = %s", [instance])
    token = b"t" * 32
    claim = "SELECT epoch FROM pgdurable.claim_v1('w', sha256(%s), 1, 60)"
    stale = database.value(claim, [token])
    assert database.value(claim, [token]) is None  # a valid lease is never claimed twice
    database.execute(
        "UPDATE pgdurable.runs SET lease_expires_at = clock_timestamp() - interval '1s'"
    )
    current = database.value(claim, [token])  # the takeover
    assert current == stale + 1
    with database.connect("alice", autocommit=False) as conn:
        conn.execute("INSERT INTO effects VALUES (1)")
        with pytest.raises(psycopg.Error, match="lease lost"):
            conn.execute(completion, [instance, stale, token, instance, node])
        conn.rollback()
    assert database.value("SELECT count(*) FROM effects") == 0
    assert database.value("SELECT count(*) FROM pgdurable.journal") == 0


def test_leases_are_measured_by_the_database_clock_only(database):
    """No lease function takes a point in time from the worker: a lease's end
    is always ``clock_timestamp()`` on the server plus a duration."""
    arguments = database.execute(
        "SELECT p.proname, pg_get_function_arguments(p.oid) FROM pg_proc p"
        " JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'pgdurable' AND p.proname IN"
        " ('claim_v1', 'heartbeat_v1', 'check_lease')"
    )
    assert len(arguments) == 3
    for name, signature in arguments:
        assert "timestamp" not in signature, (name, signature)
    bodies = database.value(
        "SELECT string_agg(prosrc, ' ') FROM pg_proc WHERE proname IN"
        " ('claim_v1', 'heartbeat_v1', 'check_lease')"
    )
    # Every comparison with or assignment to a lease's end uses the server's clock.
    uses = re.findall(r"lease_expires_at\s*(?:=|<|>)\s*([a-z_]+)", bodies)
    assert len(uses) >= 4 and set(uses) == {"clock_timestamp"}, uses
