"""PostgresOperator(runtime_parameters=...): the settings Airflow SETs on the task's
connection are in effect for the task's SQL when the translated DAG runs on the
worker, and end with the task (as the closed connection's did)."""

from __future__ import annotations

import textwrap

from pgdurable.model import encode
from pgdurable.translators import airflow
from pgdurable.translators.base import TranslateContext

DAG = """
from datetime import datetime
from airflow import DAG
from airflow.providers.postgres.operators.postgres import PostgresOperator

with DAG(dag_id="settings", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
    first = PostgresOperator(
        task_id="first", postgres_conn_id="postgres_default",
        sql="INSERT INTO public.seen VALUES ('first', current_setting('search_path'), current_setting('work_mem'))",
        runtime_parameters={"search_path": "reporting, public", "work_mem": "7MB"},
    )
    second = PostgresOperator(
        task_id="second", postgres_conn_id="postgres_default",
        sql="INSERT INTO public.seen VALUES ('second', current_setting('search_path'), current_setting('work_mem'))",
    )
    first >> second
"""


def translate(tmp_path, text: str, generation_file: str = "d.py"):
    path = tmp_path / generation_file
    path.write_text(textwrap.dedent(text))
    (result,) = airflow.translate(airflow.read_paths([path]), TranslateContext()).results
    return result


def test_runtime_parameters_are_set_for_the_task_only(wf, database, tmp_path):
    database.execute("CREATE TABLE seen (task text, search_path text, work_mem text)")
    database.execute("GRANT ALL ON seen TO alice")
    result = translate(tmp_path, DAG)
    assert str(result.fidelity) == "exact", result.diagnostics
    assert "PGD253" in {d.code for d in result.diagnostics}
    instance = wf.start(encode(result.workflow.body))
    wf.run()
    assert wf.status(instance) == "completed", wf.output(instance)
    default_path, default_mem = database.execute(
        "SELECT current_setting('search_path'), current_setting('work_mem')", user="alice"
    )[0]
    rows = database.execute("SELECT task, search_path, work_mem FROM seen ORDER BY task")
    assert rows == [("first", "reporting, public", "7MB"), ("second", default_path, default_mem)]


def test_a_runtime_parameters_value_not_literal_is_approximate(tmp_path):
    result = translate(
        tmp_path,
        DAG.replace(
            '{"search_path": "reporting, public", "work_mem": "7MB"}', "settings_from_env()"
        ),
    )
    assert str(result.fidelity) == "approximate"
    assert "PGD252" in {d.code for d in result.diagnostics}
