"""The worker's fast path (migration 0008): claims in the order runs became
ready, the instance loaded by the claim itself, and node stamps written by a
step's own completion (a long step still shows 'running' while it runs)."""

from __future__ import annotations

import json
import threading

import psycopg
import pytest

from pgdurable.testing import wait_for

CLAIM = "SELECT instance_id, instance FROM pgdurable.claim_v2('w', sha256('t'), %s, 60)"


def test_a_timer_that_fell_due_is_claimed_before_later_starts(wf, database):
    earlier = wf.start(wf.sql("SELECT 1"))
    due = wf.start(wf.sql("SELECT 2"))
    later = [wf.start(wf.sql("SELECT 3")) for _ in range(3)]
    # ``due`` stands for a sleeping run whose timer fell due 10 s ago: it has
    # waited longer than anything started since, but not than ``earlier``.
    database.execute(
        "UPDATE pgdurable.runs SET wake_at = (SELECT wake_at FROM pgdurable.runs"
        " WHERE instance_id = %s) + interval '1 microsecond' WHERE instance_id = %s",
        [earlier, due],
    )
    order = [row[0] for row in database.execute(CLAIM, [5])]
    assert order == [earlier, due, *sorted(later, key=later.index)]
    finite = database.value("SELECT bool_and(isfinite(wake_at)) FROM pgdurable.runs")
    assert finite, "new runs get the time they became runnable, not -infinity"


def test_a_signal_makes_its_waiting_run_ready_now(wf, database):
    waiting = wf.start(wf.sql("SELECT 1"))
    other = wf.start(wf.sql("SELECT 2"))
    database.execute(
        "UPDATE pgdurable.runs SET wake_at = 'infinity', waiting_signals = '{go}'"
        " WHERE instance_id = %s",
        [waiting],
    )
    database.execute("SELECT df.signal(%s, 'other', '{}')", [waiting], user="alice")
    assert database.value(
        "SELECT wake_at = 'infinity' FROM pgdurable.runs WHERE instance_id = %s", [waiting]
    ), "a signal the run does not wait for leaves it asleep"
    database.execute("SELECT df.signal(%s, 'go', '{}')", [waiting], user="alice")
    ready = database.execute(
        "SELECT r.wake_at <= clock_timestamp(), r.wake_at > o.wake_at FROM pgdurable.runs r,"
        " pgdurable.runs o WHERE r.instance_id = %s AND o.instance_id = %s",
        [waiting, other],
    )[0]
    assert ready == (True, True)  # runnable now, behind the run that was ready first
    assert [row[0] for row in database.execute(CLAIM, [2])] == [other, waiting]


def test_the_claim_returns_the_instance_as_claimed(wf, database):
    instance = wf.start(wf.sql("SELECT 1", name="one"))
    ((claimed, loaded),) = database.execute(CLAIM, [1])
    assert claimed == instance
    assert loaded["status"] == "running"
    assert loaded == database.value("SELECT pgdurable.load_v1(%s)", [instance])


def test_a_claim_of_several_returns_each_instance_loaded_in_wake_order(wf, database):
    """claim_v3 loads what it claimed in one query (migration 0020): the same
    documents load_v1 gives, one per claimed run, in the order runs became ready."""
    started = [wf.start(wf.then(wf.sql(f"SELECT {n}"), wf.sql("SELECT 0"))) for n in range(4)]
    rows = database.execute(
        "SELECT instance_id, epoch, role_oid, instance"
        " FROM pgdurable.claim_v3('w', sha256('t'), 3, '{}', 60)"
    )
    assert [row[0] for row in rows] == started[:3]
    alice_oid = database.value("SELECT oid FROM pg_roles WHERE rolname = 'alice'")
    for instance_id, epoch, role_oid, loaded in rows:
        held = database.value(
            "SELECT epoch FROM pgdurable.runs WHERE instance_id = %s", [instance_id]
        )
        assert (epoch, role_oid) == (held, alice_oid)
        assert loaded == database.value("SELECT pgdurable.load_v1(%s)", [instance_id])
        assert loaded["id"] == instance_id and loaded["status"] == "running"
        assert len(loaded["nodes"]) == 3


def test_a_long_step_is_stamped_running_while_a_short_one_is_not(wf, database, background_worker):
    slow = wf.start(wf.then(wf.sql("SELECT 1"), wf.sql("SELECT pg_sleep(30)")))
    background_worker()
    # The THEN's 'running' stamp rides on the first step's completion; the
    # sleeping step's own is written once it has run RUNNING_STAMP_DELAY.
    running = wait_for(
        lambda: (
            database.value(
                "SELECT array_agg(n.node_type ORDER BY n.node_type) FROM df.nodes n"
                " WHERE n.instance_id = %s AND n.status = 'running'",
                [slow],
            )
            == ["SQL", "THEN"]
        ),
        what="the long step's running stamp",
    )
    assert running
    quick = database.execute(
        "SELECT n.status, n.status_details ->> 'execution_id' FROM df.nodes n"
        " JOIN df.instances i ON i.id = n.instance_id"
        " WHERE n.instance_id = %s AND n.node_type = 'SQL' AND n.query = 'SELECT 1'",
        [slow],
    )
    assert quick == [("completed", f"{slow}::1")]
    database.execute("SELECT df.cancel(%s)", [slow], user="alice")
    wf.wait_status(slow, "cancelled")


DIRTY = (
    "SET work_mem = '7MB'; CREATE TEMP TABLE leftover (x int); PREPARE leftover AS SELECT 1;"
    " SELECT pg_advisory_lock(42); SET application_name = 'leftover'"
)
CLEAN = (
    "SELECT current_setting('work_mem') AS work_mem,"
    " to_regclass('pg_temp.leftover') IS NULL AS no_temp,"
    " (SELECT count(*) FROM pg_prepared_statements) AS prepared,"
    " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
    "  AND pid = pg_backend_pid()) AS advisory,"
    " current_setting('application_name') AS app, current_setting('df.in_workflow') AS guard"
)


def test_no_session_state_reaches_the_next_step(wf, database):
    """One connection (concurrency 1) runs every step: what a step leaves in its
    session, after success or failure, is gone when the next step starts
    (LISTEN is the documented exception, see db.STEP_SESSION_RESET)."""
    after_success = wf.start(wf.then(wf.sql(DIRTY), wf.sql(CLEAN)))
    wf.run(concurrency=1)
    failing = wf.start(wf.sql(DIRTY + "; SELECT 1 / 0"))
    wf.run(concurrency=1)
    after_failure = wf.start(wf.sql(CLEAN))
    wf.run(concurrency=1)
    assert wf.status(failing) == "failed"
    default_work_mem = database.value("SELECT reset_val FROM pg_settings WHERE name = 'work_mem'")
    clean = {
        "work_mem": f"{int(default_work_mem) // 1024}MB",
        "no_temp": True,
        "prepared": 0,
        "advisory": 0,
        "app": "pg_durable:worker:workflow-sql",
        "guard": "true",
    }
    for instance in (after_success, after_failure):
        assert wf.result(instance)["rows"] == [clean]


# With standard_conforming_strings on, '\' is a whole literal and the text
# that follows an unterminated one: the server refuses it. With it off, '\''
# is a literal holding a quote and the statement returns 1.
QUOTE_READING = "SELECT length('\\'') AS n"


@pytest.mark.parametrize(
    "turn_off",
    [
        "SET standard_conforming_strings = off",
        "SET LOCAL standard_conforming_strings = off",
        "SAVEPOINT s; SET standard_conforming_strings = off",
        # COMMIT inside: the step is re-run outside a transaction (at least once).
        "CALL public.scs_off_then_commit()",
    ],
)
def test_the_next_step_is_read_with_standard_conforming_strings_on(wf, database, turn_off):
    """The server lexes a step's text before the step's own session reset runs,
    so a step that turned the setting off must not change how the next step's
    quotes are read: the worker checked that text for transaction control
    with the setting on (step_text)."""
    database.execute(
        "CREATE PROCEDURE public.scs_off_then_commit() LANGUAGE plpgsql AS $$ BEGIN"
        " PERFORM set_config('standard_conforming_strings', 'off', false); COMMIT; END $$"
    )
    instance = wf.start(wf.then(wf.sql(turn_off), wf.sql(QUOTE_READING)))
    wf.run(concurrency=1)
    assert wf.status(instance) == "failed"
    assert "unterminated quoted string" in wf.output(instance)


def test_the_last_step_finishes_its_instance_in_its_own_transaction(wf, database):
    """A step after which nothing runs (the end of a THEN chain, a branch of
    an IF there) completes the instance in the transaction of its statement;
    a step followed by more work does not."""
    chain = wf.start(wf.then(wf.sql("SELECT 1 AS a"), wf.sql("SELECT 2 AS b")))
    branch = wf.start(
        wf.if_(wf.sql("SELECT true"), wf.sql("SELECT 'yes' AS c"), wf.sql("SELECT 0"))
    )
    looped = wf.start(wf.loop(wf.then(wf.sql("SELECT 1"), wf.brk())))
    wf.run()
    same_transaction = (
        "SELECT j.xmin = i.xmin FROM pgdurable.journal j JOIN df.instances i"
        " ON i.id = j.instance_id WHERE j.instance_id = %s ORDER BY j.recorded_at DESC LIMIT 1"
    )
    for instance in (chain, branch):
        assert wf.status(instance) == "completed"
        assert database.value(same_transaction, [instance]) is True
    assert wf.result(chain)["rows"] == [{"b": 2}]
    assert wf.result(branch)["rows"] == [{"c": "yes"}]
    # Every node of the chain is stamped as if the instance had been finished apart.
    stamps = database.execute(
        "SELECT node_type, status, status_details ->> 'execution_id', result IS NOT NULL"
        " FROM df.nodes WHERE instance_id = %s ORDER BY node_type",
        [chain],
    )
    assert stamps == [("SQL", "completed", f"{chain}::1", True)] * 2 + [
        ("THEN", "completed", f"{chain}::1", True)
    ]
    assert (
        database.value(
            "SELECT status || ':' || (output IS NOT NULL) FROM pgdurable.executions"
            " WHERE instance_id = %s",
            [chain],
        )
        == "Completed:true"
    )
    assert wf.status(looped) == "completed"
    assert database.value(same_transaction, [looped]) is False  # a loop decides at run time
    assert database.value("SELECT count(*) FROM pgdurable.runs") == 0


COMPLETION_VERSIONS = pytest.mark.parametrize("version", ["v2", "v3"])


@COMPLETION_VERSIONS
def test_a_last_step_does_not_finish_a_cancelled_instance(wf, database, version):
    instance = wf.start(wf.sql("SELECT 1"))
    node = database.value("SELECT root_node FROM df.instances WHERE id = %s", [instance])
    token = b"t" * 32
    epoch = database.value("SELECT epoch FROM pgdurable.claim_v2('w', sha256(%s), 1, 60)", [token])
    database.execute("SELECT df.cancel(%s)", [instance], user="alice")
    status = database.value(
        f"SELECT pgdurable.complete_step_{version}(%s, %s, %s, %s, 1, %s, '{{}}', '[]', '[]')",
        [instance, epoch, token, instance, node],
        user="alice",
    )
    assert status == "cancelled"
    assert wf.status(instance) == "cancelled"
    # The run stays for the worker's cancel path, which removes it.
    assert database.value("SELECT count(*) FROM pgdurable.runs") == 1


@COMPLETION_VERSIONS
def test_a_flush_during_the_last_step_cannot_deadlock_with_its_completion(wf, database, version):
    """A long step's 'running' flush (another connection, while the step's
    transaction is open) and the completion of the workflow's last step touch
    the same node rows and the run row; both queue on the run row first, so
    neither holds a node the other waits for (this deadlocked before 0015)."""
    instance = wf.start(wf.then(wf.sql("SELECT 1"), wf.sql("SELECT 2")))
    root, last = database.execute(
        "SELECT i.root_node, n.right_node FROM df.instances i"
        " JOIN df.nodes n ON n.instance_id = i.id AND n.id = i.root_node WHERE i.id = %s",
        [instance],
    )[0]
    token = b"k" * 32
    epoch = database.value("SELECT epoch FROM pgdurable.claim_v2('w', sha256(%s), 1, 60)", [token])
    execution = f"{instance}::1"

    def stamp(node: str, status: str) -> str:
        return json.dumps([{"node": node, "status": status, "exec": execution}])

    flush = database.connect(autocommit=False)
    completer = database.connect(autocommit=False)
    try:
        flush.execute(
            "SELECT pgdurable.stamp_nodes_v1(%s, %s, %s, %s::jsonb)",
            [instance, epoch, token, stamp(root, "running")],
        )
        finish = json.dumps([{"node": root, "status": "completed", "exec": execution, "result": 2}])
        outcome: list[object] = []

        def complete() -> None:
            try:
                status = completer.execute(
                    f"SELECT pgdurable.complete_step_{version}(%s, %s, %s, %s, 1, %s, '2', '[]',"
                    " %s)",
                    [instance, epoch, token, instance, last, finish],
                ).fetchone()[0]
                completer.commit()
                outcome.append(status)
            except Exception as exc:  # the assertion below shows it
                outcome.append(exc)

        thread = threading.Thread(target=complete)
        thread.start()
        pid = completer.info.backend_pid
        wait_for(
            lambda: database.value(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", [pid]
            ),
            what="the completion to wait for the flush's lock",
        )
        # The flush goes on to stamp the last step itself; before 0015 the
        # completion held that row and this waited for it: a deadlock.
        flush.execute(
            "SELECT pgdurable.stamp_nodes_v1(%s, %s, %s, %s::jsonb)",
            [instance, epoch, token, stamp(last, "running")],
        )
        flush.commit()
        thread.join(timeout=30)
    finally:
        flush.close()
        completer.close()
    assert outcome == ["completed"]
    assert wf.status(instance) == "completed"
    assert (
        database.value(
            "SELECT status FROM df.nodes WHERE instance_id = %s AND id = %s", [instance, last]
        )
        == "completed"
    ), "the flush's 'running' stamp never replaces the completion"


def _completed_chain(wf, database, version: str) -> list[tuple]:
    """Complete both steps of a THEN chain by hand through one completion
    version, with the stamps a worker could queue; the node rows after."""
    instance = wf.start(wf.then(wf.sql("SELECT 1 AS a"), wf.sql("SELECT 2 AS b")))
    root, first, last = database.execute(
        "SELECT i.root_node, n.left_node, n.right_node FROM df.instances i"
        " JOIN df.nodes n ON n.instance_id = i.id AND n.id = i.root_node WHERE i.id = %s",
        [instance],
    )[0]
    token = b"s" * 32
    epoch = database.value("SELECT epoch FROM pgdurable.claim_v2('w', sha256(%s), 1, 60)", [token])
    execution = f"{instance}::1"
    complete = (
        f"SELECT pgdurable.complete_step_{version}(%s, %s, %s, %s, 1, %s, %s::json, %s::jsonb,"
        " %s::jsonb)"
    )

    def stamp(node: str, status: str, **extra: object) -> dict:
        return {"node": node, "status": status, "exec": execution, **extra}

    queued = [
        stamp(root, "running", exec="other::1"),
        stamp(root, "running", details={"attempt": 1}),  # the later stamp of a node wins
        stamp(first, "running"),  # the step's own, overwritten by its completion
        stamp(last, "failed", result="x"),
        stamp(last, "running"),  # after a terminal stamp of the same execution: ignored
    ]
    status = database.value(
        complete, [instance, epoch, token, instance, first, '{"a": 1}', json.dumps(queued), None]
    )
    assert status == "running"
    middle = database.execute(
        "SELECT id = %s, status, status_details FROM df.nodes WHERE instance_id = %s"
        " AND id IN (%s, %s) ORDER BY id = %s",
        [last, instance, root, last, last],
    )
    assert middle == [
        (False, "running", {"execution_id": execution, "attempt": 1}),
        (True, "failed", {"execution_id": execution}),
    ]
    finish = [stamp(root, "completed", result={"b": 2})]
    # The first step's 'running' stamp no longer applies: it completed in this execution.
    queued = [stamp(root, "running"), stamp(first, "running"), stamp(last, "running")]
    status = database.value(
        complete,
        [
            instance,
            epoch,
            token,
            instance,
            last,
            '{"b": 2}',
            json.dumps(queued),
            json.dumps(finish),
        ],
    )
    assert status == "completed"
    assert wf.status(instance) == "completed"
    assert (
        database.value("SELECT count(*) FROM pgdurable.runs WHERE instance_id = %s", [instance])
        == 0
    )
    return database.execute(
        "SELECT id = %s, id = %s, status, result, status_details ->> 'execution_id' = %s"
        " FROM df.nodes WHERE instance_id = %s ORDER BY id = %s, id = %s",
        [root, last, execution, instance, root, last],
    )


def test_the_set_based_completion_writes_what_the_stamp_loop_wrote(wf, database):
    """complete_step_v3 writes every node stamp in one statement; the rows it
    leaves are those v2's loop (one UPDATE per stamp, in order) left."""
    expected = [
        (False, False, "completed", {"a": 1}, True),
        (False, True, "completed", {"b": 2}, True),
        (True, False, "completed", {"b": 2}, True),
    ]
    assert _completed_chain(wf, database, "v2") == expected
    assert _completed_chain(wf, database, "v3") == expected


@COMPLETION_VERSIONS
def test_a_completion_holds_the_run_row_exclusively_until_it_commits(wf, database, version):
    """Writers of one instance queue on its run row: even a step that does
    not end the workflow holds the row FOR UPDATE, so no other writer that
    checks the lease (FOR SHARE or FOR UPDATE) gets past it meanwhile."""
    instance = wf.start(wf.then(wf.sql("SELECT 1"), wf.sql("SELECT 2")))
    first = database.value(
        "SELECT n.left_node FROM df.instances i JOIN df.nodes n"
        " ON n.instance_id = i.id AND n.id = i.root_node WHERE i.id = %s",
        [instance],
    )
    token = b"h" * 32
    epoch = database.value("SELECT epoch FROM pgdurable.claim_v2('w', sha256(%s), 1, 60)", [token])
    completer = database.connect(autocommit=False)
    other = database.connect(autocommit=False)
    try:
        status = completer.execute(
            f"SELECT pgdurable.complete_step_{version}(%s, %s, %s, %s, 1, %s, '1', '[]')",
            [instance, epoch, token, instance, first],
        ).fetchone()[0]
        assert status == "running"
        with pytest.raises(psycopg.errors.LockNotAvailable):
            other.execute(
                "SELECT 1 FROM pgdurable.runs WHERE instance_id = %s FOR SHARE NOWAIT", [instance]
            )
        other.rollback()
        completer.commit()
        held = other.execute(
            "SELECT epoch FROM pgdurable.runs WHERE instance_id = %s FOR SHARE NOWAIT", [instance]
        ).fetchall()
        assert held == [(epoch,)]
    finally:
        other.close()
        completer.close()
