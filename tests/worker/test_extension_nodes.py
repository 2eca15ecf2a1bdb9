"""pgdurable's extension nodes end to end (SPEC A.4): RETRY, TIMEOUT, TRY,
alone and combined, through the constructors as users write them.

Attempts are counted with sequences: nextval is not rolled back with a failed
step's transaction, so it sees every attempt, while rows a failed or
cancelled attempt inserted disappear with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime

import pytest

from pgdurable.testing import wait_for
from pgdurable.worker.extensions import RetryPolicy

DIVISION = "SQL execution failed: error returned from database: division by zero"


def start(database, expr: str) -> str:
    return database.value(f"SELECT df.start({expr})", user="alice")


@pytest.fixture
def objects(database, alice):
    """A table ``log`` and sequences ``s`` and ``t`` that alice may use."""
    database.execute("CREATE TABLE log (v text, at timestamptz DEFAULT clock_timestamp())")
    database.execute("CREATE SEQUENCE s")
    database.execute("CREATE SEQUENCE t")
    database.execute("GRANT ALL ON log, s, t TO alice")


def seq(database, name: str = "s") -> int:
    return database.value(f"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {name}")


def node_row(database, instance: str, node_type: str):
    return database.execute(
        "SELECT status, result, status_details FROM df.nodes"
        " WHERE instance_id = %s AND node_type = %s",
        [instance, node_type],
    )[0]


# -- RETRY ----------------------------------------------------------------------


def test_retry_delays_grow_and_are_capped():
    policy = RetryPolicy(max_attempts=6, delay_seconds=10, backoff=2.0, max_delay_seconds=50)
    assert [policy.delay_after(n) for n in range(1, 6)] == [10, 20, 40, 50, 50]
    assert RetryPolicy(3, 1).delay_after(3) == 1
    huge = RetryPolicy(5000, 1, backoff=1000.0)
    assert huge.delay_after(4000) == 2_147_483_647.0  # no float overflow


def test_retry_reruns_a_failed_step_after_a_durable_delay(wf, database, objects, background_worker):
    # Attempt 1 divides by zero; attempt 2 succeeds and names its result.
    instance = start(
        database,
        "(pgdurable.retry('SELECT 10 / (nextval(''s'') - 1) AS v' |=> 'x', 3, 2) |=> 'r'"
        " ~> 'SELECT $x AS inner_name, $r AS outer_name')",
    )
    background_worker()

    def waiting():
        status, _, details = node_row(database, instance, "RETRY")
        return status == "running" and details.get("next_attempt_at") and details

    wait_for(waiting, what="the retry delay")
    details = json.loads(
        database.value(
            "SELECT status_details FROM df.instance_nodes(%s) WHERE node_type = 'RETRY'",
            [instance],
            user="alice",
        )
    )
    assert details["attempt"] == 1 and details["max_attempts"] == 3
    assert details["last_error"] == DIVISION
    # No worker holds the instance while it waits: the run is released until the timer.
    lease, wake = database.execute(
        "SELECT lease_expires_at, wake_at FROM pgdurable.runs WHERE instance_id = %s", [instance]
    )[0]
    assert lease is None and wake == datetime.fromisoformat(details["next_attempt_at"])
    picture = database.value("SELECT df.explain(%s)", [instance])
    assert "RETRY (3 attempts, 2s) [attempt 1/3, next at " in picture
    wf.wait_status(instance)
    assert wf.result(instance)["rows"] == [{"inner_name": 10, "outer_name": 10}]
    assert seq(database) == 2
    status, _, details = node_row(database, instance, "RETRY")
    assert status == "completed" and details["attempt"] == 2 and "next_attempt_at" not in details
    # The first attempt's stamps are superseded by the second's.
    sql_nodes = database.execute(
        "SELECT inferred_status, status_details FROM df.instance_nodes(%s)"
        " WHERE query LIKE '%%nextval%%'",
        [instance],
    )
    assert sql_nodes[0][0] == "completed" and sql_nodes[0][1].endswith('::2"}')


def test_retry_propagates_the_last_error_after_max_attempts(wf, database, objects):
    instance = start(
        database, "pgdurable.retry('SELECT (nextval(''s'') || ''x'')::int', 3, 1, backoff => 2.0)"
    )
    began = time.monotonic()
    wf.run()
    elapsed = time.monotonic() - began
    assert wf.status(instance) == "failed"
    assert wf.output(instance) == (
        "SQL execution failed: error returned from database:"
        ' invalid input syntax for type integer: "3x"'
    )
    assert seq(database) == 3
    assert 3.0 <= elapsed < 10  # delays of 1 s and then 2 s
    status, result, details = node_row(database, instance, "RETRY")
    assert status == "failed" and details["attempt"] == 3 and '"3x"' in result


# -- TIMEOUT --------------------------------------------------------------------


def test_timeout_cancels_the_running_statement_on_the_server(wf, database, objects):
    instance = start(
        database,
        "pgdurable.timeout('INSERT INTO log (v) VALUES (''effect''); SELECT pg_sleep(30)', 1)",
    )
    began = time.monotonic()
    wf.run()
    assert time.monotonic() - began < 10
    assert wf.status(instance) == "failed"
    assert wf.output(instance) == "timed out after 1 s"
    # The statement's effects are gone, and no backend is still running it.
    assert database.value("SELECT count(*) FROM log") == 0
    assert (
        database.value(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
            " AND query LIKE '%%pg_sleep(30)%%' AND pid <> pg_backend_pid()"
        )
        == 0
    )
    status, result, _ = node_row(database, instance, "SQL")
    assert status == "failed" and "canceling statement due to user request" in result
    assert node_row(database, instance, "TIMEOUT")[:2] == ("failed", "timed out after 1 s")


def test_timeout_that_is_not_reached_passes_the_result_through(wf, database, alice):
    instance = start(database, "pgdurable.timeout('SELECT 1 AS x' |=> 'x', 5) ~> 'SELECT $x AS y'")
    wf.run()
    assert wf.result(instance)["rows"] == [{"y": 1}]
    status, result, details = node_row(database, instance, "TIMEOUT")
    assert status == "completed" and result["rows"] == [{"x": 1}] and "deadline_at" in details


def test_timeout_stops_a_durable_wait(wf, database, alice):
    instance = start(database, "pgdurable.timeout(df.sleep(30) ~> 'SELECT 1', 1)")
    began = time.monotonic()
    outcomes = wf.run()
    assert time.monotonic() - began < 10
    assert outcomes.get("suspended", 0) >= 1  # it waited as a row, with the deadline as wake time
    assert wf.output(instance) == "timed out after 1 s"
    inferred = dict(
        database.execute("SELECT node_type, inferred_status FROM df.instance_nodes(%s)", [instance])
    )
    assert inferred["SLEEP"] == "skipped" and inferred["SQL"] == "skipped"


def test_timeout_cancels_every_branch_of_a_join(wf, database, objects):
    instance = start(
        database,
        "pgdurable.timeout(df.join('SELECT pg_sleep(30)',"
        " 'INSERT INTO log (v) VALUES (''b''); SELECT pg_sleep(30)'), 1)",
    )
    began = time.monotonic()
    wf.run()
    assert time.monotonic() - began < 10
    assert wf.output(instance) == "timed out after 1 s"
    assert database.value("SELECT count(*) FROM log") == 0


# -- TRY ------------------------------------------------------------------------


def test_try_runs_on_failure_with_the_error(wf, database, objects):
    instance = start(
        database,
        "pgdurable.try('SELECT 1/0', 'INSERT INTO log (v) SELECT $error RETURNING v') |=> 't'"
        " ~> 'SELECT $t.error AS recorded'",
    )
    wf.run()
    assert wf.status(instance) == "completed"
    assert database.value("SELECT v FROM log") == DIVISION
    assert wf.result(instance)["rows"] == [{"recorded": DIVISION}]
    status, result, details = node_row(database, instance, "TRY")
    assert status == "completed" and details["recovered_from"] == DIVISION
    assert result == {"error": DIVISION, "result": {"rows": [{"v": DIVISION}], "row_count": 1}}
    picture = database.value("SELECT df.explain(%s)", [instance])
    assert "TRY [recovered from: SQL execution failed: error returned ...] |=> 't' ✓" in picture


def test_try_that_succeeds_is_transparent_and_skips_on_failure(wf, database, alice):
    instance = start(database, "pgdurable.try('SELECT 1 AS a', 'SELECT $error')")
    wf.run()
    assert wf.result(instance) == {"rows": [{"a": 1}], "row_count": 1}
    inferred = {
        row[0]: row[1]
        for row in database.execute(
            "SELECT query, inferred_status FROM df.instance_nodes(%s)", [instance]
        )
    }
    assert inferred["SELECT $error"] == "skipped"


def test_try_around_a_failing_join(wf, database, objects):
    instance = start(
        database,
        "('SELECT ''before'' AS error' |=> 'error'"
        " ~> pgdurable.try(df.join('SELECT 1', 'SELECT 1/0'),"
        " 'INSERT INTO log (v) SELECT $error RETURNING v')"
        " ~> 'SELECT $error AS restored')",
    )
    wf.run()
    assert wf.status(instance) == "completed", wf.output(instance)
    assert database.value("SELECT v FROM log") == f"JOIN branch 2 failed: {DIVISION}"
    assert wf.result(instance)["rows"] == [{"restored": "before"}]  # $error was on_failure's only


def test_try_whose_on_failure_fails_fails_with_that_error(wf, database, alice):
    instance = start(database, "pgdurable.try('SELECT 1/0', 'SELECT ''x''::int')")
    wf.run()
    assert wf.status(instance) == "failed"
    assert "invalid input syntax for type integer" in wf.output(instance)


# -- combined -------------------------------------------------------------------


def test_retry_of_a_timeout_inside_a_join_inside_a_loop(wf, database, objects):
    # Odd attempts hang and time out; even ones finish. Each of two iterations
    # needs two attempts; the timed-out attempts leave no row behind.
    step = (
        "SELECT pg_sleep(CASE WHEN nextval(''s'') % 2 = 1 THEN 30 ELSE 0 END);"
        " INSERT INTO log (v) SELECT currval(''s'')::text RETURNING v"
    )
    instance = start(
        database,
        f"df.loop(df.join(pgdurable.retry(pgdurable.timeout('{step}', 1), 2, 0), 'SELECT 1'),"
        " 'SELECT nextval(''t'') < 2')",
    )
    began = time.monotonic()
    wf.run()
    assert wf.status(instance) == "completed", wf.output(instance)
    assert time.monotonic() - began < 14
    assert sorted(r[0] for r in database.execute("SELECT v FROM log")) == ["2", "4"]
    assert seq(database) == 4 and seq(database, "t") == 2
    assert wf.result(instance)[0]["rows"] == [{"v": "4"}]


def test_retry_of_a_try_and_a_try_of_a_retry(wf, database, objects):
    # A TRY inside a RETRY recovers, so no retry happens; a RETRY inside a TRY
    # runs out of attempts and the TRY recovers.
    recovered = start(database, "pgdurable.retry(pgdurable.try('SELECT 1/0', 'SELECT 2'), 3, 0)")
    exhausted = start(
        database,
        "pgdurable.try(pgdurable.retry('SELECT 1/(nextval(''s'') * 0)', 2, 0),"
        " 'SELECT $error AS e')",
    )
    wf.run()
    assert wf.result(recovered)["result"]["rows"] == [{"?column?": 2}]
    assert node_row(database, recovered, "RETRY")[2]["attempt"] == 1
    assert wf.result(exhausted) == {
        "error": DIVISION,
        "result": {"rows": [{"e": DIVISION}], "row_count": 1},
    }
    assert seq(database) == 2


# -- crashes --------------------------------------------------------------------


def spawn_worker(database, *extra: str) -> subprocess.Popen:
    """A worker process (as in test_crash.py) with a short lease."""
    return subprocess.Popen(
        [sys.executable, "-m", "pgdurable", "worker", "--dsn", database.conninfo()]
        + ["--lease-seconds", "1", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
    )


def test_sigkill_during_a_retry_delay_keeps_the_plan(wf, database, objects):
    instance = start(
        database,
        "pgdurable.retry('SELECT 1 / (nextval(''s'') - 1); INSERT INTO log (v) VALUES (''ok'')',"
        " 3, 2)",
    )
    worker = spawn_worker(database)
    try:

        def planned():
            details = node_row(database, instance, "RETRY")[2]
            return (details or {}).get("next_attempt_at")

        due = datetime.fromisoformat(wait_for(planned, timeout=15, what="the retry delay"))
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker.stderr.close()
    assert seq(database) == 1  # killed during the delay, before attempt 2
    final = spawn_worker(database, "--until-idle")
    _, stderr = final.communicate(timeout=30)
    assert final.returncode == 0, stderr.decode()
    assert wf.status(instance) == "completed", wf.output(instance)
    assert seq(database) == 2  # exactly one more attempt
    at = database.value("SELECT at FROM log WHERE v = 'ok'")
    assert at >= due  # not before the planned time
    details = node_row(database, instance, "RETRY")[2]
    assert details["attempt"] == 2 and details["last_error"] == DIVISION


# -- translations ---------------------------------------------------------------


def test_a_translated_pg_cron_job_survives_a_failing_run(database, background_worker, tmp_path):
    """The default (profile pgdurable) translation wraps each run in
    pgdurable.try(run, df.sleep(0)): a failing run no longer ends the schedule."""
    from pgdurable import apply as applying
    from pgdurable import pipeline
    from pgdurable.diagnostics import SourceRef
    from pgdurable.translators import pg_cron
    from pgdurable.translators.base import TranslateContext

    role = "pgcron_try"
    database.create_role(role)
    database.execute(f"SELECT df.grant_usage('{role}')")
    database.execute("CREATE TABLE public.ticks (at timestamptz)")
    database.execute("CREATE SEQUENCE public.runs")
    database.execute(f"GRANT ALL ON public.ticks, public.runs TO {role}")
    job = pg_cron.CronJob(
        "1 seconds",
        "INSERT INTO public.ticks SELECT now() WHERE 1 / (nextval('public.runs') - 1) > 0",
        SourceRef("e2e", 1),
        jobid=8,
        jobname="flaky",
        username=role,
        active=True,
    )
    ctx = TranslateContext(portable=False, default_database=database.name, timezone="GMT")
    report = pipeline.run_import("pg_cron", pg_cron.translate([job], ctx), tmp_path)
    assert [r.profile for r in report.results] == ["pgdurable"]
    with database.connect() as conn:
        applying.apply_directory(tmp_path, applying.DatabaseSink(conn))
    instance = database.value("SELECT instance_id FROM pgdurable.workflows WHERE name = 'flaky'")

    background_worker()
    wait_for(lambda: database.value("SELECT count(*) FROM public.ticks") >= 1, timeout=15)
    assert database.value("SELECT df.status(%s)", [instance]) == "running"
    assert seq(database, "public.runs") >= 2  # the first run failed, the schedule went on
    database.execute("SELECT df.cancel(%s)", [instance])
