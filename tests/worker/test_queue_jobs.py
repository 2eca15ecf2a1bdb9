"""Translated queue jobs, applied and run by the worker, do what the source ran.

Each test writes a small source file, runs the whole ``import-queue``
pipeline, applies the generated folder and lets a worker run it against the
test database. Schedules that fire within a second (``@every 1s``, Celery's
seconds) or a direct call of the generated enqueue function keep the tests
from waiting for a minute boundary.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgdurable import apply as applying
from pgdurable import pipeline
from pgdurable.errors import ApplyFailed
from pgdurable.testing import wait_for
from pgdurable.translators.queue import enqueue

ROLE = "queue_e2e"


def _setup(database) -> None:
    database.create_role(ROLE)
    database.execute(f"SELECT df.grant_usage('{ROLE}')")
    database.execute(
        "CREATE TABLE public.done (n serial PRIMARY KEY, what text, by_role name,"
        " payload jsonb, at timestamptz DEFAULT now())"
    )
    database.execute(f"GRANT INSERT, SELECT, UPDATE, DELETE ON public.done TO {ROLE}")
    database.execute(f"GRANT USAGE ON SEQUENCE public.done_n_seq TO {ROLE}")


def _import_and_apply(database, source: Path, out: Path, **options) -> list:
    reports = pipeline.import_queue([source], out_dir=out, **options)
    assert all(r.summary["failed"] == 0 for r in reports), [r.text() for r in reports]
    with database.connect() as conn:
        outcomes = applying.apply_directory(out, applying.DatabaseSink(conn))
    return [o for _, o in outcomes]


def _scheduler(database, source: str, name: str) -> str:
    return database.value(
        "SELECT instance_id FROM pgdurable.workflows WHERE source = %s AND name = %s",
        [source, name],
    )


def test_k8s_cronjob_running_psql_c(database, background_worker, tmp_path: Path):
    _setup(database)
    manifest = tmp_path / "cronjob.yaml"
    manifest.write_text(
        f"""apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: "@every 1s"
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
            - name: psql
              image: postgres:16
              env:
                - name: PGDATABASE
                  value: {database.name}
              command: ["psql", "-U", "{ROLE}", "-v", "ON_ERROR_STOP=1", "-c",
                        "INSERT INTO public.done (what, by_role) VALUES ('k8s', current_user)"]
"""
    )
    # --portable: backoffLimit's pgdurable.retry needs the extension-node runtime
    outcomes = _import_and_apply(database, manifest, tmp_path / "out", portable=True)
    assert outcomes[0].startswith("created ")
    background_worker()
    wait_for(
        lambda: database.value("SELECT count(*) FROM public.done") >= 2,
        timeout=30,
        what="two runs of the CronJob's psql -c",
    )
    assert database.execute("SELECT DISTINCT what, by_role FROM public.done") == [("k8s", ROLE)]
    scheduler = _scheduler(database, "k8s", "tick")
    assert database.value("SELECT df.status(%s)", [scheduler]) == "running"
    runs = database.value(
        "SELECT count(*) FROM df.instances WHERE label = 'k8s/tick#run' AND status = 'completed'"
    )
    assert runs >= 2
    database.execute("SELECT df.cancel(%s)", [scheduler])


def test_crontab_line_running_psql_f(database, background_worker, wf, tmp_path: Path):
    _setup(database)
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "rollup.sql").write_text(
        "INSERT INTO public.done (what, by_role) VALUES ('first', current_user);\n"
        "BEGIN;\n"
        "UPDATE public.done SET what = 'first+' WHERE what = 'first';\n"
        "INSERT INTO public.done (what, by_role) VALUES (:'label', current_user);\n"
        "COMMIT;\n"
    )
    cron_d = tmp_path / "cron.d" / "rollup"
    cron_d.parent.mkdir()
    cron_d.write_text(
        "MAILTO=root\n"
        f"0 * * * * {ROLE} psql -d {database.name} -v ON_ERROR_STOP=1 -v label=second"
        " -f ../sql/rollup.sql > /dev/null 2>&1\n"
    )
    _import_and_apply(database, cron_d, tmp_path / "out")
    # The hourly schedule would wait for a full hour: run the line now, as a producer would.
    run = database.value("SELECT pgdurable_jobs.enqueue_rollup()", user=ROLE)
    background_worker()
    wf.wait_status(run, "completed", timeout=30)
    rows = database.execute("SELECT what, by_role FROM public.done ORDER BY n")
    assert rows == [("first+", ROLE), ("second", ROLE)]
    database.execute("SELECT df.cancel(%s)", [_scheduler(database, "crontab", "rollup")])


def test_system_crontab_vacuumdb_and_reindexdb_run_their_sql(
    database, background_worker, wf, tmp_path: Path
):
    """A cron.d file as a provisioning playbook installs it: the user field is the role,
    vacuumdb/reindexdb lines run the VACUUM and REINDEX they send (outside a transaction
    block, as PostgreSQL requires)."""
    _setup(database)
    database.execute(f"ALTER TABLE public.done OWNER TO {ROLE}")  # VACUUM skips others' tables
    database.execute("INSERT INTO public.done (what) SELECT 'row' FROM generate_series(1, 50)")
    index_file = "SELECT relfilenode FROM pg_class WHERE relname = 'done_pkey'"
    before = database.value(index_file)
    cron = tmp_path / "deploy" / "maintenance"
    cron.parent.mkdir()
    cron.write_text(
        "SHELL=/bin/sh\n"
        f"10 1 * * * {ROLE} vacuumdb --analyze --quiet -d {database.name} -t public.done\n"
        f"0 3 * * 6 {ROLE} reindexdb -d {database.name} --table=public.done\n"
    )
    # queue_e2e is no well-known system account: say it is a system crontab
    reports = pipeline.import_queue([cron], out_dir=tmp_path / "out", crontab_kind="system")
    (report,) = reports
    assert [r.fidelity.name for r in report.results] == ["EXACT", "EXACT"], report.text()
    with database.connect() as conn:
        applying.apply_directory(tmp_path / "out", applying.DatabaseSink(conn))
    background_worker()
    for result in report.results:
        function = enqueue.function_name(result.name)
        run = database.value(f"SELECT pgdurable_jobs.{function}()", user=ROLE)
        wf.wait_status(run, "completed", timeout=30)
        database.execute("SELECT df.cancel(%s)", [_scheduler(database, "crontab", result.name)])
    assert database.value(index_file) != before  # REINDEX TABLE wrote a new index file
    wait_for(
        lambda: database.value(
            "SELECT last_vacuum IS NOT NULL AND last_analyze IS NOT NULL"
            " FROM pg_stat_user_tables WHERE relname = 'done'"
        ),
        timeout=30,
        what="the statistics of VACUUM (ANALYZE) public.done",
    )


def test_celery_task_mapped_to_sql_function(database, background_worker, tmp_path: Path):
    _setup(database)
    database.execute(
        "CREATE FUNCTION public.record_digest(payload jsonb) RETURNS void LANGUAGE sql AS"
        " $$ INSERT INTO public.done (what, by_role, payload)"
        " VALUES ('digest', current_user, payload) $$"
    )
    database.execute(f"GRANT EXECUTE ON FUNCTION public.record_digest(jsonb) TO {ROLE}")
    config = tmp_path / "celeryconfig.py"
    config.write_text(
        "beat_schedule = {\n"
        "    'digest': {\n"
        "        'task': 'mail.tasks.digest',\n"
        "        'schedule': 1.0,\n"
        "        'args': (7,),\n"
        "        'kwargs': {'lang': 'en'},\n"
        "    },\n"
        "}\n"
    )
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text("tasks:\n  mail.tasks.digest: SELECT public.record_digest($args::jsonb)\n")
    _import_and_apply(
        database,
        config,
        tmp_path / "out",
        tasks_file=tasks,
        default_username=ROLE,
        default_database=database.name,
    )
    background_worker()
    wait_for(
        lambda: database.value("SELECT count(*) FROM public.done") >= 1,
        timeout=30,
        what="a run of the mapped Celery task",
    )
    what, by_role, payload = database.execute(
        "SELECT what, by_role, payload FROM public.done ORDER BY n LIMIT 1"
    )[0]
    assert (what, by_role) == ("digest", ROLE)
    assert payload == {"args": [7], "kwargs": {"lang": "en"}}
    database.execute("SELECT df.cancel(%s)", [_scheduler(database, "celery", "digest")])


def test_enqueue_function_starts_a_run(database, background_worker, wf, tmp_path: Path):
    _setup(database)
    schedule = tmp_path / "schedule.yml"
    schedule.write_text(
        "import_feed:\n"
        "  cron: '0 3 * * *'\n"
        "  class: ImportFeedJob\n"
        "  lock: until_executed\n"
        "  retry: false\n"
    )
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(
        "tasks:\n"
        "  ImportFeedJob:\n"
        "    sql: INSERT INTO public.done (what, by_role, payload)"
        " VALUES ('feed', current_user, $args::jsonb)\n"
    )
    _import_and_apply(
        database,
        schedule,
        tmp_path / "out",
        tasks_file=tasks,
        default_username=ROLE,
        default_database=database.name,
    )
    database.create_role("queue_producer")
    database.execute("GRANT USAGE ON SCHEMA pgdurable_jobs TO queue_producer")
    database.execute(
        "GRANT EXECUTE ON FUNCTION pgdurable_jobs.enqueue_import_feed(jsonb) TO queue_producer"
    )
    args = json.dumps({"args": ["https://example.com/feed.xml"]})
    # A producer enqueues; the run belongs to the job's role (SECURITY DEFINER).
    first = database.value(
        "SELECT pgdurable_jobs.enqueue_import_feed(%s::jsonb)", [args], user="queue_producer"
    )
    assert database.value("SELECT submitted_by FROM df.instances WHERE id = %s", [first]) == ROLE
    # Uniqueness (lock:): while that run is pending, a second enqueue is skipped.
    assert database.value("SELECT pgdurable_jobs.enqueue_import_feed()", user=ROLE) is None
    background_worker()
    wf.wait_status(first, "completed", timeout=30)
    assert database.execute("SELECT what, by_role, payload FROM public.done") == [
        ("feed", ROLE, {"args": ["https://example.com/feed.xml"]})
    ]
    second = database.value("SELECT pgdurable_jobs.enqueue_import_feed()", user=ROLE)
    assert second is not None and second != first
    wf.wait_status(second, "completed", timeout=30)
    database.execute("SELECT df.cancel(%s)", [_scheduler(database, "sidekiq", "import_feed")])


def test_default_output_refuses_to_apply_without_extension_nodes(database, tmp_path: Path):
    """Retries need pgdurable.retry: until that runtime is installed, applying a
    default (non-portable) file fails at once, with the --portable hint; once it
    is installed, the same file applies."""
    _setup(database)
    manifest = tmp_path / "cronjob.yaml"
    manifest.write_text(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: retried}\n"
        "spec:\n  schedule: '0 1 * * *'\n  jobTemplate:\n    spec:\n      template:\n"
        "        spec:\n          containers:\n            - name: p\n              image: pg\n"
        f"              command: [psql, -U, {ROLE}, -c, 'SELECT 1']\n"
    )
    pipeline.import_queue([manifest], out_dir=tmp_path / "out")
    installed = database.value(
        "SELECT count(*) FROM pg_proc WHERE proname = 'retry'"
        " AND pronamespace = 'pgdurable'::regnamespace"
    )
    with database.connect() as conn:
        if installed:
            applying.apply_directory(tmp_path / "out", applying.DatabaseSink(conn))
            assert database.value("SELECT count(*) FROM pgdurable.workflows") == 1
            return
        with pytest.raises(ApplyFailed, match="--portable"):
            applying.apply_directory(tmp_path / "out", applying.DatabaseSink(conn))
    assert database.value("SELECT count(*) FROM pgdurable.workflows") == 0
