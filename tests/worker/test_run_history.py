"""Run history (issue 20): every tick of a registered workflow's schedule loop
and every started run is a row the worker writes; plain instances are never
touched by it (none of their steps fails or runs again because of it)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pgdurable import apply as applying
from pgdurable import pipeline
from pgdurable.diagnostics import SourceRef
from pgdurable.testing import wait_for
from pgdurable.translators import pg_cron
from pgdurable.translators.base import TranslateContext

ROLE = "history_job"


def _setup_tick_job(database, tmp_path: Path) -> str:
    """A real translation of a pg_cron job that runs every second (pg_cron 1.5+
    interval schedule): a loop of df.sleep(1) ~> pgdurable.try(command, sleep 0).
    The command fails while public.control.fail is true."""
    database.create_role(ROLE)
    database.execute(f"SELECT df.grant_usage('{ROLE}')")
    database.execute(
        "CREATE TABLE public.control (fail boolean NOT NULL);"
        " INSERT INTO public.control VALUES (false);"
        " CREATE TABLE public.ticks (n serial PRIMARY KEY, at timestamptz DEFAULT now());"
        " CREATE FUNCTION public.tick() RETURNS void LANGUAGE plpgsql AS $$"
        " BEGIN INSERT INTO public.ticks DEFAULT VALUES;"
        " IF (SELECT fail FROM public.control) THEN"
        "   RAISE EXCEPTION 'tick failed on purpose'; END IF; END $$;"
        f" GRANT SELECT ON public.control TO {ROLE}; GRANT INSERT ON public.ticks TO {ROLE};"
        f" GRANT USAGE ON SEQUENCE public.ticks_n_seq TO {ROLE}"
    )
    job = pg_cron.CronJob(
        "1 seconds",
        "SELECT public.tick()",
        SourceRef("history", 1),
        jobid=3,
        jobname="tick",
        username=ROLE,
        active=True,
    )
    ctx = TranslateContext(portable=False, default_database=database.name, timezone="GMT")
    pipeline.run_import("pg_cron", pg_cron.translate([job], ctx), tmp_path)
    assert "pgdurable.try(" in (tmp_path / "tick.sql").read_text()
    with database.connect() as conn:
        applying.apply_directory(tmp_path, applying.DatabaseSink(conn))
    return database.value("SELECT instance_id FROM pgdurable.workflows WHERE name = 'tick'")


def _runs(database, where: str = "true") -> list[dict]:
    return database.value(
        "SELECT coalesce(json_agg(h ORDER BY h.runid), '[]') FROM pgdurable.run_history h"
        f" WHERE {where}"
    )


def test_schedule_ticks_are_runs_and_failures_inside_try_show(
    database, background_worker, tmp_path, caplog
):
    instance_id = _setup_tick_job(database, tmp_path)
    caplog.set_level(logging.INFO, logger="pgdurable.worker")
    background_worker()

    ok = wait_for(
        lambda: len(runs := _runs(database, "outcome = 'succeeded'")) >= 2 and runs,
        timeout=30,
        what="two succeeded ticks",
    )
    first = ok[0]
    assert first["workflow"] == "pg_cron/tick" and first["kind"] == "tick"
    assert first["instance_id"] == instance_id
    assert first["execution"] == f"{instance_id}::{first['iteration']}"
    assert first["username"] == ROLE and first["database"] == database.name
    assert first["due_at"] <= first["started_at"] <= first["ended_at"]
    assert [r["run_number"] for r in ok[:2]] == [first["run_number"], first["run_number"] + 1]
    assert first["error"] is None

    database.execute("UPDATE public.control SET fail = true")
    failed = wait_for(
        lambda: _runs(database, "outcome = 'failed'"), timeout=30, what="a failed tick"
    )[0]
    error = failed["error"]
    assert error.endswith("tick failed on purpose")
    # The loop goes on (pgdurable.try recovered), the run still failed.
    assert database.value("SELECT df.status(%s)", [instance_id]) == "running"
    health = database.value(
        "SELECT row_to_json(h) FROM pgdurable.workflow_health h WHERE workflow = 'pg_cron/tick'"
    )
    assert health["state"] == "failing"
    assert health["last_outcome"] == "failed"
    assert health["last_error"] == error
    assert health["failed_runs"] >= 1

    # pg_cron's shape, as a DBA queries it.
    cron = database.value(
        "SELECT row_to_json(d) FROM pgdurable.job_run_details d WHERE runid = %s",
        [failed["runid"]],
    )
    assert set(cron) == {
        "jobid", "runid", "job_pid", "database", "username", "command", "status",
        "return_message", "start_time", "end_time",
    }  # fmt: skip
    assert (cron["status"], cron["return_message"], cron["command"]) == (
        "failed",
        error,
        "pg_cron/tick",
    )

    # The worker says so at WARNING, with workflow, run and error.
    warned = wait_for(
        lambda: [r for r in caplog.records if r.getMessage() == "run_failed" and r.levelno == 30],
        what="a run_failed warning",
    )
    fields = warned[0].fields
    assert fields["workflow"] == "pg_cron/tick"
    assert fields["run"] == failed["run_number"]
    assert fields["error"] == error

    database.execute("UPDATE public.control SET fail = false")
    wait_for(
        lambda: _runs(database, f"outcome = 'succeeded' AND runid > {failed['runid']}"),
        timeout=30,
        what="a tick that succeeds again",
    )

    # Cancel: the open or next run ends cancelled; the history keeps the rest.
    database.execute("SELECT df.cancel(%s)", [instance_id])
    wait_for(
        lambda: (
            database.value("SELECT count(*) FROM pgdurable.workflow_runs WHERE outcome = 'running'")
            == 0
            and not database.value(
                "SELECT count(*) FROM pgdurable.runs WHERE instance_id = %s", [instance_id]
            )
        ),
        timeout=30,
        what="the cancelled instance's runs closed",
    )
    outcomes = {r["outcome"] for r in _runs(database)}
    assert outcomes <= {"succeeded", "failed", "cancelled"}
    assert {"succeeded", "failed"} <= outcomes
    assert (
        database.value(
            "SELECT state FROM pgdurable.workflow_health WHERE workflow = 'pg_cron/tick'"
        )
        == "cancelled"
    )


def test_plain_instances_are_not_recorded_and_run_once(wf, database):
    """Unregistered instances (no label, a look-alike label, a run label of no
    registered workflow), with root-scope timers, a recovered failure and a
    loop, complete as before: no history row, no step run twice."""
    database.execute("CREATE TABLE public.hits (label text)")
    database.execute("GRANT INSERT ON public.hits TO alice")
    body = wf.then(
        wf.sleep(0),
        wf.node("TRY", left_node=wf.sql("SELECT 1/0"), right_node=wf.sleep(0)),
        wf.sql("INSERT INTO public.hits VALUES ('$label')"),
    )
    looped = wf.loop(wf.then(wf.sleep(0), wf.brk("done")))
    labels = [None, "pg_cron/tick", "nobody/none#run", "airflow:nodag"]
    ids = [wf.start(body, label) for label in labels] + [wf.start(looped, "loop")]
    wf.run()
    for instance_id in ids:
        assert wf.status(instance_id) == "completed", wf.output(instance_id)
    assert database.value("SELECT count(*) FROM public.hits") == len(labels)
    assert database.value("SELECT count(*) FROM pgdurable.workflow_runs") == 0
    assert database.value("SELECT count(*) FROM pgdurable.workflow_run_counters") == 0


def _register(database, name: str, start: bool = False) -> None:
    database.execute(
        "SELECT pgdurable.deploy_workflow(source => 'celery', workflow_name => %s,"
        " definition => 'SELECT 1', schedule => NULL, profile => 'portable',"
        " fidelity => 'exact', run_as => 'alice', target_database => NULL, start => %s)",
        [name, start],
    )


def test_started_runs_of_a_registered_workflow(wf, database, caplog):
    """Instances started with a workflow's run label are its runs: the last
    step finishing the instance, a failed instance and a failure recovered by
    pgdurable.try each end their run the way the run went."""
    _register(database, "report")
    caplog.set_level(logging.INFO, logger="pgdurable.worker")
    label = "celery/report#run"
    one_step = wf.start(wf.sql("SELECT 42 AS answer"), label)
    failing = wf.start(wf.then(wf.sql("SELECT 1"), wf.sql("SELECT 1/0")), label)
    recovered = wf.start(
        wf.then(
            wf.node("TRY", left_node=wf.sql("SELECT 1/0"), right_node=wf.sleep(0)),
            wf.sql("SELECT 2"),
        ),
        label,
    )
    wf.run()
    runs = {r["instance_id"]: r for r in _runs(database)}
    assert set(runs) == {one_step, failing, recovered}
    assert wf.status(one_step) == "completed" and wf.status(recovered) == "completed"
    assert wf.status(failing) == "failed"
    assert runs[one_step]["outcome"] == "succeeded"
    assert runs[failing]["outcome"] == "failed"
    assert runs[failing]["error"].endswith("division by zero")
    assert runs[recovered]["outcome"] == "failed"
    assert runs[recovered]["error"].endswith("division by zero")
    for instance_id, run in runs.items():
        assert run["kind"] == "run" and run["workflow"] == "celery/report"
        assert run["execution"] == f"{instance_id}::1"
        created = database.value(
            "SELECT to_json(created_at) #>> '{}' FROM df.instances WHERE id = %s", [instance_id]
        )
        assert run["due_at"] == created  # due when started
        assert run["due_at"] <= run["started_at"] <= run["ended_at"]
    assert sorted(r["run_number"] for r in runs.values()) == [1, 2, 3]
    ended = {
        r.fields["instance"]: r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("run_") and r.getMessage() != "run_started"
    }
    assert ended == {one_step: "run_succeeded", failing: "run_failed", recovered: "run_failed"}


def test_a_role_sees_only_its_own_runs(wf, database):
    database.create_role("mallory")
    database.execute("SELECT df.grant_usage('mallory')")
    _register(database, "mine")
    instance_id = wf.start(wf.sql("SELECT 1"), "celery/mine#run")
    wf.run()
    views = ["pgdurable.run_history", "pgdurable.job_run_details", "pgdurable.workflow_runs"]
    for view in views:
        assert database.value(f"SELECT count(*) FROM {view}") == 1, view
        assert database.value(f"SELECT count(*) FROM {view}", user="alice") == 1, view
        assert database.value(f"SELECT count(*) FROM {view}", user="mallory") == 0, view
    assert database.value("SELECT count(*) FROM pgdurable.workflow_health", user="alice") == 1
    assert database.value("SELECT count(*) FROM pgdurable.workflow_health", user="mallory") == 0
    assert (
        database.value("SELECT instance_id FROM pgdurable.run_history", user="alice") == instance_id
    )


def test_runs_lead_to_their_steps(wf, database):
    """instance id + execution select the run's node stamps in df.nodes."""
    _register(database, "steps")
    instance_id = wf.start(wf.then(wf.sql("SELECT 1"), wf.sql("SELECT 2")), "celery/steps#run")
    wf.run()
    execution = database.value("SELECT execution FROM pgdurable.run_history")
    stamped = database.value(
        "SELECT count(*) FROM df.nodes WHERE instance_id = %s"
        " AND status_details ->> 'execution_id' = %s",
        [instance_id, execution],
    )
    assert stamped == 3  # THEN and its two steps
    assert json.loads(json.dumps(execution)) == f"{instance_id}::1"


def test_workers_prune_the_history_to_its_settings(database, background_worker):
    database.execute(f'ALTER DATABASE "{database.name}" SET pgdurable.run_history_max_runs = 2')
    database.execute(
        "INSERT INTO pgdurable.workflow_runs (source, workflow, jobid, run_number, kind,"
        " instance_id, execution, started_at, ended_at, outcome, submitted_by)"
        " SELECT 'pg_cron', 'w', 1, n, 'tick', 'aaaaaaaa', 'aaaaaaaa::' || n, now(), now(),"
        " 'succeeded', 'postgres' FROM generate_series(1, 5) n"
    )
    background_worker()  # prunes when it starts, then once a minute
    wait_for(
        lambda: database.value("SELECT count(*) FROM pgdurable.workflow_runs") == 2,
        what="the history pruned to 2 runs",
    )
    assert database.value(
        "SELECT array_agg(run_number ORDER BY 1) FROM pgdurable.workflow_runs"
    ) == [
        4,
        5,
    ]


def test_airflow_trigger_runs_are_runs_of_their_dag(wf, database):
    """trigger_<dag>() labels its runs 'airflow:<dag_id>' (a custom label is not linked)."""
    database.execute(
        "SELECT pgdurable.deploy_workflow(source => 'airflow', workflow_name => 'etl_daily',"
        " definition => 'SELECT 1', schedule => NULL, profile => 'portable',"
        " fidelity => 'exact', run_as => 'alice', target_database => NULL, start => false)"
    )
    triggered = wf.start(wf.sql("SELECT 1"), "airflow:etl_daily")
    custom = wf.start(wf.sql("SELECT 1"), "my manual run")
    wf.run()
    runs = _runs(database)
    assert [(r["workflow"], r["instance_id"], r["outcome"]) for r in runs] == [
        ("airflow/etl_daily", triggered, "succeeded")
    ]
    assert wf.status(custom) == "completed"


def test_a_queue_job_whose_runs_fail_never_looks_healthy(database, background_worker, tmp_path):
    """A translated CronJob: each tick of its loop only enqueues a run (and
    succeeds); the enqueued runs fail. The workflow shows failing all along."""
    role = "history_queue"
    database.create_role(role)
    database.execute(f"SELECT df.grant_usage('{role}')")
    manifest = tmp_path / "cronjob.yaml"
    manifest.write_text(
        f"""apiVersion: batch/v1
kind: CronJob
metadata:
  name: broken
spec:
  schedule: "@every 1s"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
            - name: psql
              image: postgres:16
              env:
                - name: PGDATABASE
                  value: {database.name}
              command: ["psql", "-U", "{role}", "-v", "ON_ERROR_STOP=1", "-c",
                        "INSERT INTO public.missing_table VALUES (1)"]
"""
    )
    out = tmp_path / "out"
    reports = pipeline.import_queue([manifest], out_dir=out, portable=True)
    assert all(r.summary["failed"] == 0 for r in reports)
    with database.connect() as conn:
        applying.apply_directory(out, applying.DatabaseSink(conn))
    background_worker()
    wait_for(
        lambda: database.value(
            "SELECT count(*) FILTER (WHERE kind = 'run' AND outcome = 'failed') >= 2"
            " AND count(*) FILTER (WHERE kind = 'tick' AND outcome = 'succeeded') >= 3"
            " FROM pgdurable.run_history WHERE workflow = 'k8s/broken'"
        ),
        timeout=30,
        what="ticks that enqueue and runs that fail",
    )
    for _ in range(3):  # whenever one looks, newer ticks succeeding do not hide it
        health = database.value(
            "SELECT row_to_json(h) FROM pgdurable.workflow_health h WHERE workflow = 'k8s/broken'"
        )
        assert (health["state"], health["last_outcome"]) == ("failing", "failed"), health
        assert "missing_table" in health["last_error"]
    scheduler = database.value("SELECT instance_id FROM pgdurable.workflows WHERE name = 'broken'")
    database.execute("SELECT df.cancel(%s)", [scheduler])


def test_a_leaky_function_sees_no_other_roles_runs(wf, database):
    """The views are security barriers: a cheap function of the reader's in the
    WHERE clause runs only on rows the reader may see."""
    database.create_role("snoop")
    database.execute("SELECT df.grant_usage('snoop')")
    database.execute("CREATE SCHEMA snoop AUTHORIZATION snoop")
    database.execute(
        "CREATE FUNCTION snoop.leak(value text) RETURNS boolean LANGUAGE plpgsql COST 0.0001"
        " AS $$ BEGIN RAISE NOTICE 'leaked: %', value; RETURN true; END $$",
        user="snoop",
    )
    _register(database, "secret")
    wf.start(wf.sql("SELECT 1/0"), "celery/secret#run")
    wf.run()
    with database.connect("snoop") as conn:
        notices: list[str] = []
        conn.add_notice_handler(lambda notice: notices.append(notice.message_primary))
        for query in (
            "SELECT * FROM pgdurable.run_history WHERE snoop.leak(error)",
            "SELECT * FROM pgdurable.job_run_details WHERE snoop.leak(return_message)",
            "SELECT * FROM pgdurable.workflow_health WHERE snoop.leak(last_error)",
            "SELECT * FROM pgdurable.instance_states WHERE snoop.leak(label)",
            "SELECT * FROM pgdurable.workflow_runs WHERE snoop.leak(error)",
        ):
            assert conn.execute(query).fetchall() == [], query
    assert notices == []
