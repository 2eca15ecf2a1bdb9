"""`pgdurable cutover`, `rollback` and `retire` against the real pg_cron extension.

pg_cron lives in the cluster's `pgdurable` database (cron.database_name); the jobs
write to the test's own database. The pgdurable schema is installed next to pg_cron,
which is what lets one transaction start the workflows and retire the jobs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgdurable import db, migrator, pipeline
from pgdurable.cli import cli
from pgdurable.testing import spawn_worker, stop_process, wait_for
from pgdurable.translators import pg_cron

REPO = Path(__file__).resolve().parents[2]
ROLE = "cutover_app"
WORKER_APP = "pg_durable:worker:workflow-sql"  # the worker's application_name for steps


@pytest.fixture
def cron_db(pg_cron_cluster, database) -> Iterator[str]:
    """pg_cron's database with the pgdurable schema; the job role may start workflows
    there and write the test database's ticks table. Jobs and workflows named
    `cutover-*` are removed afterwards."""
    conninfo = pg_cron_cluster.conninfo("pgdurable")
    with db.connection(conninfo) as conn:
        migrator.apply(conn)
    database.create_role(ROLE)
    with db.connection(conninfo, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        conn.execute(f"SELECT df.grant_usage('{ROLE}')")
    database.execute(
        "CREATE TABLE public.ticks (who text NOT NULL, job text NOT NULL,"
        " at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    database.execute(f"GRANT INSERT, SELECT ON public.ticks TO {ROLE}")
    yield conninfo
    with db.connection(conninfo, autocommit=True) as conn:
        conn.execute(
            "SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'cutover-%'"
            " OR command LIKE '%cutover-unnamed%'"
        )
        conn.execute(
            "SELECT pgdurable.retire(source, name) FROM pgdurable.workflows"
            " WHERE name LIKE 'cutover-%' OR name LIKE 'pgcron_job_%'"
        )


def _tick(job: str) -> str:
    return (
        f"INSERT INTO public.ticks (who, job) VALUES (current_setting('application_name'), '{job}')"
    )


def _schedule(conn, name: str, schedule: str, command: str, database: str, active=True) -> int:
    return conn.execute(
        "SELECT cron.schedule_in_database(%s, %s, %s, %s, %s, %s)",
        [name, schedule, command, database, ROLE, active],
    ).fetchone()[0]


def _import(cron: str, out: Path, keep) -> pipeline.ImportReport:
    """Translate the jobs ``keep`` selects from the live cron.job into ``out``."""
    items, ctx = pg_cron.read_database(cron)
    mine = [j for j in items if isinstance(j, pg_cron.CronJob) and keep(j)]
    return pipeline.run_import(pg_cron.SOURCE, pg_cron.translate(mine, ctx), out)


def test_cutover_across_a_minute_boundary_runs_each_tick_exactly_once(cron_db, database, tmp_path):
    with db.connection(cron_db, autocommit=True) as conn:
        tick = _schedule(conn, "cutover-tick", "* * * * *", _tick("tick"), database.name)
        # Not in the folder: proves pg_cron ran at the boundary that tick skips.
        control = _schedule(conn, "cutover-control", "* * * * *", _tick("control"), database.name)
        out = tmp_path / "pg_cron"
        report = _import(cron_db, out, lambda j: j.jobname == "cutover-tick")
        assert [(r.name, str(r.fidelity)) for r in report.results] == [("cutover-tick", "exact")]

        worker = spawn_worker(cron_db, "--log-level", "warning", log=tmp_path / "worker.log")
        try:
            wait_for(
                lambda: conn.execute("SELECT count(*) FROM df._worker_epoch").fetchone()[0],
                timeout=30,
                what="the worker's liveness row",
            )
            # Cut over at second ~58, two seconds before pg_cron's next tick.
            now = time.time()
            at = now - now % 60 + 58
            if at - now < 0.5:
                at += 60
            wait_for(lambda: time.time() >= at, timeout=61, interval=0.05, what="second 58")
            result = CliRunner().invoke(cli, ["cutover", str(out), "--dsn", cron_db, "--json"])
            assert result.exit_code == 0, result.output
            cut = conn.execute("SELECT clock_timestamp()").fetchone()[0]
            boundary = conn.execute(
                "SELECT date_trunc('minute', %s::timestamptz) + interval '1 minute'", [cut]
            ).fetchone()[0]
            assert (
                conn.execute("SELECT count(*) FROM cron.job WHERE jobid = %s", [tick]).fetchone()[0]
                == 0
            )
            instance = conn.execute(
                "SELECT instance_id FROM pgdurable.workflows"
                " WHERE source = 'pg_cron' AND name = 'cutover-tick'"
            ).fetchone()[0]
            assert instance is not None

            # pg_cron ran its control job at the boundary, and the workflow its tick.
            wait_for(
                lambda: conn.execute(
                    "SELECT count(*) FROM cron.job_run_details WHERE jobid = %s"
                    " AND status IN ('succeeded', 'failed') AND start_time >= %s",
                    [control, boundary],
                ).fetchone()[0],
                timeout=40,
                what="pg_cron's control run after the boundary",
            )
            wait_for(
                lambda: database.value(
                    "SELECT count(*) FROM public.ticks WHERE job = 'tick' AND at >= %s", [boundary]
                ),
                timeout=20,
                what="the workflow's first tick",
            )
        finally:
            stop_process(worker)
            conn.execute("SELECT cron.unschedule(%s)", [control])
    after = database.execute("SELECT who, job FROM public.ticks WHERE at >= %s ORDER BY job", [cut])
    # Exactly once: the tick ran on the worker only; pg_cron started no run of the
    # retired job after the cutover (its control job proves pg_cron was running).
    assert after == [("pg_cron", "control"), (WORKER_APP, "tick")]
    ran = conn_value(
        cron_db,
        "SELECT count(*) FROM cron.job_run_details WHERE jobid = %s AND start_time >= %s",
        [tick, cut],
    )
    assert ran == 0


def conn_value(conninfo: str, query: str, params: list) -> object:
    with db.connection(conninfo, autocommit=True) as conn:
        return conn.execute(query, params).fetchone()[0]


JOB_COLUMNS = "jobname, schedule, command, nodename, nodeport, database, username, active"


def _jobs(conn) -> list[tuple]:
    return conn.execute(
        f"SELECT {JOB_COLUMNS} FROM cron.job WHERE jobname LIKE 'cutover-%'"
        " OR command LIKE '%cutover-unnamed%' ORDER BY jobname, command"
    ).fetchall()


def test_cutover_then_rollback_restores_identical_cron_jobs(cron_db, database, tmp_path):
    with db.connection(cron_db, autocommit=True) as conn:
        _schedule(conn, "cutover-nightly", "0 3 * * *", "SELECT 'it''s'", database.name)
        _schedule(
            conn, "cutover-paused", "*/5 * * * 1-5", "SELECT 2;\nSELECT 3", "pgdurable", False
        )
        conn.execute(
            "SELECT cron.alter_job(cron.schedule('0 4 1 1 *', 'SELECT 1 AS \"cutover-unnamed\"'),"
            " database => %s, username => %s)",
            [database.name, ROLE],
        )
        before = _jobs(conn)
        assert len(before) == 3
        out = tmp_path / "pg_cron"
        _import(
            cron_db,
            out,
            lambda j: (j.jobname or "").startswith("cutover-") or "cutover-unnamed" in j.command,
        )
        runner = CliRunner()
        printed = runner.invoke(cli, ["cutover", str(out), "--sql"])
        assert printed.exit_code == 0, printed.output
        assert printed.output.startswith("BEGIN;\n") and printed.output.endswith("COMMIT;\n")
        assert _jobs(conn) == before  # --sql runs nothing

        cut = runner.invoke(cli, ["cutover", str(out), "--dsn", cron_db, "--without-worker"])
        assert cut.exit_code == 0, cut.output
        assert _jobs(conn) == []
        registered = conn.execute(
            "SELECT name, started FROM pgdurable.workflows WHERE source = 'pg_cron'"
            " AND (name LIKE 'cutover-%' OR name LIKE 'pgcron_job_%') ORDER BY name"
        ).fetchall()
        assert [r[1] for r in registered] == [True, False, True]  # the paused job: not started
        # what the source calls each step, kept beside the registry (pgdurable show)
        labelled = conn.execute(
            "SELECT name, labels::text FROM pgdurable.workflow_step_labels"
            " WHERE name = 'cutover-nightly'"
        ).fetchall()
        assert len(labelled) == 1 and '"job cutover-nightly"' in labelled[0][1]

        back = runner.invoke(cli, ["rollback", str(out), "--dsn", cron_db, "--json"])
        assert back.exit_code == 0, back.output
        answer = json.loads(back.stdout)
        assert answer["command"] == "rollback" and answer["connection"]["source"]
        assert [Path(f["file"]).name for f in answer["files"]] == ["rollback.sql"]
        assert _jobs(conn) == before
        assert (
            conn.execute(
                "SELECT count(*) FROM pgdurable.workflows WHERE name = ANY(%s)",
                [[r[0] for r in registered]],
            ).fetchone()[0]
            == 0
        )


def test_cutover_refuses_without_a_worker_and_changes_nothing(cron_db, database, tmp_path):
    with db.connection(cron_db, autocommit=True) as conn:
        conn.execute("DELETE FROM df._worker_epoch")  # no worker of an earlier test counts
        _schedule(conn, "cutover-lonely", "0 3 * * *", "SELECT 1", database.name)
        out = tmp_path / "pg_cron"
        _import(cron_db, out, lambda j: j.jobname == "cutover-lonely")
        result = CliRunner().invoke(cli, ["cutover", str(out), "--dsn", cron_db])
        assert result.exit_code == 1
        assert "no worker is running" in result.output
        assert len(_jobs(conn)) == 1
        assert (
            conn.execute(
                "SELECT count(*) FROM pgdurable.workflows WHERE name = 'cutover-lonely'"
            ).fetchone()[0]
            == 0
        )


def test_cutover_of_pg_cron_jobs_needs_the_database_pg_cron_lives_in(cron_db, database, tmp_path):
    with db.connection(cron_db, autocommit=True) as conn:
        _schedule(conn, "cutover-elsewhere", "0 3 * * *", "SELECT 1", database.name)
        out = tmp_path / "pg_cron"
        _import(cron_db, out, lambda j: j.jobname == "cutover-elsewhere")
    result = CliRunner().invoke(
        cli, ["cutover", str(out), "--dsn", database.conninfo(), "--without-worker"]
    )
    assert result.exit_code == 1
    assert f"database {database.name} has no cron.job" in result.output
    assert database.value("SELECT count(*) FROM pgdurable.workflows") == 0


def test_retire_removes_the_workflows_and_their_generated_functions(database, tmp_path):
    """Before 0013, retire_workflow left enqueue_*/trigger_* functions that still started
    runs; `pgdurable retire DIR` (and SOURCE/NAME) drops them with the workflow."""
    database.create_role(ROLE)
    database.execute(f"SELECT df.grant_usage('{ROLE}')")
    crontab = tmp_path / "jobs"
    crontab.write_text(f"PGUSER={ROLE}\n0 1 * * * psql -d {database.name} -c 'SELECT 1'\n")
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "etl.py").write_text(
        "from airflow import DAG\n"
        "from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator\n"
        "with DAG('cutover_etl', schedule=None) as dag:\n"
        "    SQLExecuteQueryOperator(task_id='load', conn_id='postgres_default', sql='SELECT 2')\n"
    )
    runner = CliRunner()
    queue_out, airflow_out = tmp_path / "crontab", tmp_path / "airflow"
    for args in (
        ["import-queue", str(crontab), "--format", "crontab", "--out", str(queue_out)],
        ["import-airflow", str(dags), "--default-username", ROLE, "--out", str(airflow_out)],
        ["apply", str(queue_out), "--dsn", database.conninfo()],
        ["apply", str(airflow_out), "--dsn", database.conninfo()],
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output

    def functions() -> list[str]:
        return [
            r[0]
            for r in database.execute(
                "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n"
                " ON n.oid = p.pronamespace WHERE n.nspname IN ('pgdurable_jobs', 'airflow_dags')"
                " ORDER BY 1"
            )
        ]

    enqueue = [f for f in functions() if f.startswith("pgdurable_jobs.")]
    # the DAG's two trigger functions: (label, conf) and the older (label) form
    assert len(enqueue) == 1 and len(functions()) == 3
    started = database.value(f"SELECT {enqueue[0].replace('(jsonb)', '()')}")
    assert database.value("SELECT status FROM df.instances WHERE id = %s", [started])

    retired = runner.invoke(cli, ["retire", str(queue_out), "--dsn", database.conninfo()])
    assert retired.exit_code == 0, retired.output
    assert f"dropped {enqueue[0]}" in retired.output
    assert [f for f in functions() if f.startswith("pgdurable_jobs.")] == []
    by_name = runner.invoke(
        cli, ["retire", "airflow/cutover_etl", "--dsn", database.conninfo(), "--json"]
    )
    assert by_name.exit_code == 0, by_name.output
    assert functions() == []
    assert database.value("SELECT count(*) FROM pgdurable.workflows") == 0
    missing = runner.invoke(cli, ["retire", "nope", "--dsn", database.conninfo()])
    assert missing.exit_code == 1 and "no registered workflow named 'nope'" in missing.output


HOSTILE = [
    "cutover-q'); SELECT pg_sleep(0); CREATE TABLE pwned_q (); --",
    "cutover-$$); CREATE TABLE pwned_d (); --$$",
    "cutover-line\nCREATE TABLE pwned_n ();",
    "cutover-*/ CREATE TABLE pwned_c (); /*",
    "cutover-back\\'); CREATE TABLE pwned_b (); --",
    "cutover-sep\u2028CREATE TABLE pwned_s ();",
]


def test_rollback_of_hostile_job_texts_restores_them_and_runs_nothing_else(
    cron_db, database, tmp_path
):
    role = "cutover \"evil'; CREATE TABLE pwned_r (); --"
    database.create_role(role)
    with db.connection(cron_db, autocommit=True) as conn:
        conn.execute(db.sql.SQL("SELECT df.grant_usage({})").format(db.sql.Literal(role)))
        for name in HOSTILE:
            conn.execute(
                "SELECT cron.schedule_in_database(%s, '0 3 1 1 *', %s, %s, %s, true)",
                [name, f"SELECT {db.sql.Literal(name).as_string(conn)}", database.name, role],
            )
        before = _jobs(conn)
        assert len(before) == len(HOSTILE)
        out = tmp_path / "pg_cron"
        _import(cron_db, out, lambda j: (j.jobname or "").startswith("cutover-"))
        runner = CliRunner()
        for command in (["cutover", "--without-worker"], ["rollback"]):
            result = runner.invoke(cli, [command[0], str(out), "--dsn", cron_db, *command[1:]])
            assert result.exit_code == 0, result.output
        assert _jobs(conn) == before
        assert conn.execute("SELECT relname FROM pg_class WHERE relname ~ 'pwned'").fetchall() == []
        conn.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE username = %s", [role])


def test_commands_that_need_the_schema_say_so(empty_database, tmp_path):
    runner = CliRunner()
    folder = REPO / "fixtures" / "examples" / "pg_cron" / "expected"
    for args in (["show", "nightly"], ["retire", "pg_cron/nightly"], ["cutover", str(folder)]):
        result = runner.invoke(cli, [*args, "--dsn", empty_database.conninfo()])
        assert result.exit_code == 1, result.output
        assert "run `pgdurable schema install`" in result.output


def test_cutover_of_sources_outside_the_database_prints_exactly_what_to_remove(database, tmp_path):
    database.create_role(ROLE)
    database.execute(f"SELECT df.grant_usage('{ROLE}')")
    sources = tmp_path / "src"
    sources.mkdir()
    (sources / "cron.yaml").write_text(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: nightly-report\n"
        "  namespace: batch jobs\nspec:\n  schedule: '15 1 * * *'\n  jobTemplate:\n"
        "    spec:\n      template:\n        spec:\n          containers:\n"
        "            - name: report\n              image: postgres:16\n"
        f"              command: [psql, -d, {database.name}, -U, {ROLE}, -c, 'SELECT 1']\n"
    )
    line = f"30 2 * * * psql -d {database.name} -U {ROLE} -c 'SELECT 2'  # nightly"
    (sources / "crontab").write_text(line + "\n")
    runner = CliRunner()
    out = tmp_path / "out"
    imported = runner.invoke(cli, ["import-queue", str(sources), "--out", str(out)])
    assert imported.exit_code == 0, imported.output
    result = runner.invoke(
        cli, ["cutover", str(out / "k8s"), "--dsn", database.conninfo(), "--without-worker"]
    )
    assert result.exit_code == 0, result.output
    # shell-quoted: a name or namespace is never a second command
    assert "  kubectl delete cronjob nightly-report -n 'batch jobs'" in result.stdout
    assert database.value("SELECT started FROM pgdurable.workflows WHERE source = 'k8s'")
    crontab = runner.invoke(
        cli, ["cutover", str(out / "crontab"), "--dsn", database.conninfo(), "--without-worker"]
    )
    assert crontab.exit_code == 0, crontab.output
    assert f"from the crontab: {line}" in crontab.stdout
    rollback = (out / "crontab" / "rollback.sql").read_text()
    assert f"add back to the crontab ({sources / 'crontab'}:1): {line}" in rollback


def test_a_manual_item_keeps_its_job_at_cutover():
    """Its workflow is registered but not started: retiring the job would leave its
    ticks to neither system, so neither the SQL nor the outside step is given."""
    from pgdurable import cutover

    beat = cutover.outside_steps(
        cutover.cutover_steps(REPO / "fixtures/expected/queue/celery/celeryconfig_tasks")
    )
    assert len(beat) == 4 and any("'expire-tokens'" in step for step in beat)
    assert not any("weekday-digest" in step for step in beat)  # manual (PGD307)
    text = (REPO / "fixtures/expected/pg_cron/cron_job_export/cutover.sql").read_text()
    assert "\nSELECT cron.unschedule(14);" in text  # payroll-or-friday: exact
    assert "\n-- SELECT cron.unschedule(13);  -- warm-cache" in text  # manual
