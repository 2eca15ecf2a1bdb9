"""One psql session split into steps keeps its settings: run on the real worker.

psql runs its ``-c`` commands and a ``-f`` script's statements in one session,
so a ``SET search_path`` (or ``set_config(..., false)``, ``PGOPTIONS``,
``PGTZ``) holds for every later statement. The translation runs one step per
statement; these tests apply the generated files, run them on the worker
against the test database and check which function ran and which settings
the later statements saw (audit F3, F5).
"""

from __future__ import annotations

from pathlib import Path

from pgdurable import apply as applying
from pgdurable import pipeline
from pgdurable.model import encode
from pgdurable.translators import airflow
from pgdurable.translators.base import TranslateContext
from pgdurable.translators.queue import enqueue

ROLE = "session_e2e"
HOSTILE = "it's $sql$ */ $enqueue$ nightly"  # quotes and the generated file's own tags


def _setup(database) -> None:
    database.create_role(ROLE)
    database.execute(f"SELECT df.grant_usage('{ROLE}')")
    database.execute(
        "CREATE TABLE public.seen (n serial PRIMARY KEY, which text, path text, tz text,"
        " timeout text, app text)"
    )
    database.execute("CREATE SCHEMA reporting")
    for schema in ("public", "reporting"):
        database.execute(
            f"CREATE FUNCTION {schema}.refresh_all() RETURNS void LANGUAGE sql AS $$"
            f" INSERT INTO public.seen (which, path, tz, timeout, app) VALUES ('{schema}',"
            " current_setting('search_path'), current_setting('TimeZone'),"
            " current_setting('statement_timeout'), current_setting('application_name')) $$"
        )
    database.execute(f"GRANT USAGE ON SCHEMA reporting TO {ROLE}")
    database.execute(f"GRANT INSERT, SELECT ON public.seen TO {ROLE}")
    database.execute(f"GRANT USAGE ON SEQUENCE public.seen_n_seq TO {ROLE}")


def _run_crontab(database, background_worker, wf, tmp_path: Path, text: str):
    cron = tmp_path / "crontab"
    cron.write_text(text)
    (report,) = pipeline.import_queue([cron], out_dir=tmp_path / "out", crontab_kind="user")
    with database.connect() as conn:
        applying.apply_directory(tmp_path / "out", applying.DatabaseSink(conn))
    background_worker()
    for result in report.results:
        function = enqueue.function_name(result.name)
        run = database.value(f"SELECT pgdurable_jobs.{function}()", user=ROLE)
        wf.wait_status(run, "completed", timeout=30)
        database.execute(
            "SELECT df.cancel(instance_id) FROM pgdurable.workflows WHERE name = %s",
            [result.name],
        )
    return report


def _seen(database):
    return database.execute("SELECT which, path, tz, timeout, app FROM public.seen ORDER BY n")


def test_set_in_a_first_c_holds_in_the_second(database, background_worker, wf, tmp_path):
    _setup(database)
    report = _run_crontab(
        database,
        background_worker,
        wf,
        tmp_path,
        f'0 6 * * * psql -U {ROLE} -d {database.name} -v ON_ERROR_STOP=1 -c "SET search_path'
        ' TO reporting, public" -c "SELECT refresh_all()"\n',
    )
    assert [r.fidelity.name for r in report.results] == ["EXACT"], report.text()
    assert [d.code for d in report.results[0].diagnostics if d.code == "PGD264"]
    assert _seen(database)[0][:2] == ("reporting", "reporting, public")


def test_script_set_set_config_and_reset(database, background_worker, wf, tmp_path):
    """A -f script: SET, set_config(..., false), a quote in a value, RESET, SET LOCAL."""
    _setup(database)
    (tmp_path / "nightly.sql").write_text(
        "-- nightly refresh\n"
        "SET search_path = reporting;\n"
        "SELECT set_config('application_name', 'it''s $sql$ */ $enqueue$ nightly', false);\n"
        "SET LOCAL statement_timeout = '7s';\n"
        "SELECT refresh_all();\n"
        "RESET search_path;\n"
        "SET TIME ZONE 'Asia/Tokyo';\n"
        "SELECT refresh_all();\n"
    )
    report = _run_crontab(
        database,
        background_worker,
        wf,
        tmp_path,
        f"0 6 * * * psql -U {ROLE} -d {database.name} -v ON_ERROR_STOP=1 -f nightly.sql\n",
    )
    assert [r.fidelity.name for r in report.results] == ["EXACT"], report.text()
    first, second = _seen(database)
    assert first[0] == "reporting" and first[4] == HOSTILE
    assert first[3] == "0"  # SET LOCAL ended with its own statement's transaction
    assert second[:3] == ("public", '"$user", public', "Asia/Tokyo")
    assert second[4] == HOSTILE


def test_pgoptions_and_pgtz_reach_every_step(database, background_worker, wf, tmp_path):
    _setup(database)
    report = _run_crontab(
        database,
        background_worker,
        wf,
        tmp_path,
        "PGTZ=America/Lima\n"
        f"0 6 * * * PGOPTIONS='-c search_path=reporting -c statement_timeout=5s' psql -U {ROLE}"
        f' -d {database.name} -c "SELECT refresh_all()"\n',
    )
    assert [r.fidelity.name for r in report.results] == ["EXACT"], report.text()
    assert _seen(database)[0][:4] == ("reporting", "reporting", "America/Lima", "5s")


def test_airflow_bash_psql_script_keeps_its_search_path(database, wf, tmp_path):
    _setup(database)
    database.execute(f"GRANT USAGE ON SCHEMA reporting TO {wf.user}")
    database.execute(f"GRANT INSERT, SELECT ON public.seen TO {wf.user}")
    database.execute(f"GRANT USAGE ON SEQUENCE public.seen_n_seq TO {wf.user}")
    (tmp_path / "refresh.sql").write_text("SET search_path TO reporting;\nSELECT refresh_all();\n")
    dag = tmp_path / "refresh_dag.py"
    dag.write_text(
        "from datetime import datetime\n"
        "from airflow import DAG\n"
        "from airflow.operators.bash import BashOperator\n"
        'with DAG(dag_id="refresh", schedule=None, start_date=datetime(2024, 1, 1)) as dag:\n'
        '    BashOperator(task_id="t", bash_command="psql -v ON_ERROR_STOP=1 -f refresh.sql")\n'
    )
    batch = airflow.translate(airflow.read_paths([dag]), TranslateContext())
    (result,) = batch.results
    assert result.fidelity.name == "EXACT", result.diagnostics
    instance = wf.start(encode(result.workflow.body))
    wf.run()
    wf.wait_status(instance, "completed")
    assert _seen(database)[0][:2] == ("reporting", "reporting")
