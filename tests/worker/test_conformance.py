"""Behaviour matched to pg_durable 0.2.6 (issue 17), end to end with a real worker:
signals delivered at once, the liveness row, RACE branches that wait while a
sibling runs, a role dropped mid-run, and superuser instances when the
server-level setting is on."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from pgdurable import db, migrator
from pgdurable.embedded import EmbeddedCluster
from pgdurable.testing import TEST_SETTINGS, TestDatabase, sql_literal, wait_for
from pgdurable.worker import run_worker


def start(database, expr: str, user: str = "alice") -> str:
    return database.value(f"SELECT df.start({expr})", user=user)


def waiting_for(database, instance: str, signal: str) -> None:
    wait_for(
        lambda: (
            database.value(
                "SELECT waiting_signals FROM pgdurable.runs WHERE instance_id = %s", [instance]
            )
            == [signal]
        ),
        what=f"{instance} to wait for {signal!r}",
    )


# -- 2. signals ----------------------------------------------------------------


def test_signal_then_await_in_one_transaction_completes(wf, database, background_worker):
    instance = start(database, "(df.wait_for_signal('go') |=> 's' ~> 'SELECT $s.data::jsonb AS d')")
    background_worker()
    waiting_for(database, instance, "go")
    # One statement, one transaction: the signal must reach the worker before it commits.
    database.execute(
        f"DO $$ BEGIN PERFORM df.signal({sql_literal(instance)}, 'go', '{{\"k\":1}}');"
        f" PERFORM df.await_instance({sql_literal(instance)}, 20); END $$",
        user="alice",
    )
    assert wf.status(instance) == "completed"
    assert wf.result(instance)["rows"] == [{"d": {"k": 1}}]


def test_signal_survives_the_senders_rollback(wf, database, background_worker):
    instance = start(database, "(df.wait_for_signal('go') ~> 'SELECT 1 AS one')")
    background_worker()
    waiting_for(database, instance, "go")
    with database.connect("alice", autocommit=False) as conn:
        conn.execute("SELECT df.signal(%s, 'go')", [instance])
        conn.rollback()
    wf.wait_status(instance, "completed")


def test_signal_to_an_instance_started_in_the_same_transaction_arrives_at_commit(wf, database):
    with database.connect("alice", autocommit=False) as conn:
        instance = conn.execute(
            "SELECT df.start(df.wait_for_signal('go') |=> 's' ~> 'SELECT $s.data AS d')"
        ).fetchone()[0]
        conn.execute("SELECT df.signal(%s, 'go', '7')", [instance])
        conn.commit()
    wf.run()
    assert wf.result(instance)["rows"] == [{"d": 7}]


def test_signals_of_an_ended_instance_are_removed_and_none_are_stored_after(wf, database):
    instance = start(database, "(df.wait_for_signal('go') ~> 'SELECT 1')")
    for name in ("go", "other", "other"):
        database.execute("SELECT df.signal(%s, %s)", [instance, name], user="alice")
    wf.run()
    assert wf.status(instance) == "completed"
    count = "SELECT count(*) FROM pgdurable.{} WHERE instance_id = %s"
    assert database.value(count.format("signals"), [instance]) == 0
    assert database.value(count.format("consumed_signals"), [instance]) == 0
    assert database.value("SELECT df.signal(%s, 'late')", [instance], user="alice") == "OK"
    assert database.value(count.format("signals"), [instance]) == 0


def test_consumed_signals_of_a_loop_do_not_accumulate(wf, database, background_worker):
    database.execute("CREATE TABLE ticks (n int)")
    database.execute("GRANT ALL ON ticks TO alice")
    instance = start(
        database,
        "df.loop(df.wait_for_signal('tick') ~> 'INSERT INTO ticks VALUES (1)',"
        " 'SELECT count(*) < 4 FROM ticks')",
    )
    background_worker()
    consumed = []
    for n in range(1, 5):
        waiting_for(database, instance, "tick")
        database.execute("SELECT df.signal(%s, 'tick')", [instance], user="alice")
        wait_for(lambda n=n: database.value("SELECT count(*) FROM ticks") == n, what="a tick")
        consumed.append(
            database.value(
                "SELECT count(*) FROM pgdurable.consumed_signals WHERE instance_id = %s",
                [instance],
            )
        )
    wf.wait_status(instance, "completed")
    assert max(consumed) <= 1, consumed  # one per live wait, not one per iteration
    assert (
        database.value(
            "SELECT count(*) FROM pgdurable.consumed_signals WHERE instance_id = %s", [instance]
        )
        == 0
    )


# -- 3. heartbeat --------------------------------------------------------------


def test_worker_refreshes_its_liveness_row_and_removes_it_on_stop(database, background_worker):
    worker = background_worker()
    first = wait_for(
        lambda: database.execute("SELECT epoch_id, last_seen_at FROM df._worker_epoch"),
        what="the liveness row",
    )
    assert len(first) == 1
    epoch, seen = first[0]
    wait_for(
        lambda: database.value(
            "SELECT last_seen_at > %s FROM df._worker_epoch WHERE epoch_id = %s", [seen, epoch]
        ),
        timeout=15,
        what="last_seen_at to advance",
    )
    worker.stop()
    assert database.value("SELECT count(*) FROM df._worker_epoch") == 0


def test_rows_of_dead_workers_are_removed_by_a_live_one(database, background_worker):
    database.execute(
        "INSERT INTO df._worker_epoch VALUES (gen_random_uuid(), now() - interval '1 hour',"
        " now() - interval '2 minutes')"
    )
    background_worker()
    wait_for(
        lambda: database.value(
            "SELECT count(*) = 1 AND bool_and(last_seen_at > now() - interval '1 minute')"
            " FROM df._worker_epoch"
        ),
        what="the dead worker's row to go",
    )


# -- 4. RACE with a waiting branch ----------------------------------------------


def test_race_branch_whose_timer_is_due_resumes_while_the_sibling_sql_runs(
    wf, database, background_worker
):
    database.execute("CREATE TABLE laps (n int)")
    database.execute("GRANT ALL ON laps TO alice")
    began = time.monotonic()
    instance = start(
        database,
        "df.race(df.loop(('INSERT INTO laps VALUES (1)' ~> df.sleep(1)),"
        " 'SELECT count(*) < 3 FROM laps'), 'SELECT pg_sleep(30)')",
    )
    background_worker()
    wf.wait_status(instance, "completed", timeout=20)
    assert time.monotonic() - began < 20  # not after the 30 s sibling
    assert database.value("SELECT count(*) FROM laps") == 3  # each lap ran exactly once
    assert wf.result(instance) == {"slept": True, "seconds": 1}


def test_race_branch_waiting_for_a_signal_wins_while_the_sibling_sql_runs(
    wf, database, background_worker
):
    instance = start(database, "df.race(df.wait_for_signal('go') |=> 'got', 'SELECT pg_sleep(30)')")
    background_worker()
    wait_for(
        lambda: database.value(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%'"
            " AND pid <> pg_backend_pid()"
        ),
        what="the sibling's SQL to run",
    )
    database.execute("SELECT df.signal(%s, 'go', '\"now\"')", [instance], user="alice")
    wf.wait_status(instance, "completed", timeout=15)
    assert wf.result(instance) == {"signal_name": "go", "timed_out": False, "data": "now"}


# -- 5. the submitting role disappears mid-run ------------------------------------


def test_role_dropped_mid_run_fails_the_loop_that_could_not_start(wf, database, background_worker):
    role = database.create_role("carol_gone")
    database.execute(f"SELECT df.grant_usage('{role}')")
    database.execute("CREATE TABLE marks (n int)")
    database.execute(f"GRANT INSERT ON marks TO {role}")
    instance = start(
        database,
        "'INSERT INTO marks VALUES (1)' ~> df.sleep(3) ~> df.loop('SELECT 1', 'SELECT false')",
        user=role,
    )
    background_worker()
    wait_for(lambda: database.value("SELECT count(*) FROM marks"), what="the first step")
    database.execute(f"DROP OWNED BY {role}")
    database.execute(f"DROP ROLE {role}")
    wf.wait_status(instance, "failed", timeout=20)
    rows = database.execute(
        "SELECT node_type, status, inferred_status, result::jsonb #>> '{}' FROM df.instance_nodes(%s)",
        [instance],
    )
    by_type = {}
    for node_type, status, inferred, result in rows:
        by_type.setdefault(node_type, []).append((status, inferred, result))
    ((loop_status, loop_inferred, loop_error),) = by_type["LOOP"]
    assert (loop_status, loop_inferred) == ("failed", "failed")
    assert "submitted_by role no longer exists" in loop_error
    # The steps before it ran once, as journaled; the loop's body never started.
    assert [s for s, _, _ in by_type["SLEEP"]] == ["completed"]
    assert sorted(s for s, _, _ in by_type["SQL"]) == ["completed", "pending", "pending"]
    assert "LOOP" in database.value("SELECT df.explain(%s)", [instance])
    assert "pending" not in database.value(
        "SELECT string_agg(inferred_status, ',') FROM df.instance_nodes(%s)"
        " WHERE node_type = 'LOOP'",
        [instance],
    )


# -- 1. superuser instances with the setting on in postgresql.conf -----------------


@pytest.fixture(scope="module")
def superuser_cluster():
    """A cluster of its own whose configuration file turns superuser instances on."""
    base = Path(tempfile.mkdtemp(prefix="pgdurable-su-"))
    base.chmod(0o755)
    cluster = EmbeddedCluster(
        base / "cluster",
        settings={**TEST_SETTINGS, "pg_durable.enable_superuser_instances": "on"},
    )
    try:
        cluster.start()
        with db.connection(cluster.conninfo()) as conn:
            migrator.apply(conn)
        yield TestDatabase(cluster, "pgdurable")
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)


def test_superuser_instance_runs_when_postgresql_conf_enables_it(superuser_cluster):
    database = superuser_cluster
    assert database.value("SHOW pg_durable.enable_superuser_instances") == "on"
    assert database.value("SELECT pgdurable.superuser_instances_enabled()") is True
    instance = database.value("SELECT df.start('SELECT current_user::text AS who')")
    asyncio.run(run_worker(database.conninfo(), until_idle=True, poll_interval=0.2))
    assert database.value("SELECT df.status(%s)", [instance]) == "completed"
    assert database.value("SELECT df.result(%s)::jsonb -> 'rows'", [instance]) == [
        {"who": "postgres"}
    ]


def test_a_session_cannot_turn_the_server_setting_off_for_others(superuser_cluster):
    database = superuser_cluster
    with database.connect() as conn:
        conn.execute("SET pg_durable.enable_superuser_instances = off")
        with pytest.raises(psycopg.errors.RaiseException, match="enable_superuser_instances"):
            conn.execute("SELECT df.start('SELECT 1')")
    # …and a fresh session still has the server's value.
    assert database.value("SELECT pgdurable.superuser_instances_enabled()") is True


def test_signal_from_a_role_whose_name_needs_quoting_is_delivered_at_once(
    wf, database, background_worker
):
    role = database.create_role("o'brien\\ops")
    database.execute("SELECT df.grant_usage(%s)", [role])
    instance = start(database, "(df.wait_for_signal('go') ~> 'SELECT 1 AS one')", user=role)
    background_worker()
    waiting_for(database, instance, "go")
    database.execute(
        f"DO $$ BEGIN PERFORM df.signal({sql_literal(instance)}, 'go');"
        f" PERFORM df.await_instance({sql_literal(instance)}, 20); END $$",
        user=role,
    )
    assert wf.status(instance) == "completed"
