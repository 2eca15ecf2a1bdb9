"""``{{ dag.dag_id }}``, ``{{ task.task_id }}``, ``{{ dag_run.dag_id }}`` and
``{{ task_instance.task_id }}`` are the literal ids (known when translating):
the translated DAG runs on the worker and writes them."""

from __future__ import annotations

import textwrap

from pgdurable.model import encode
from pgdurable.translators import airflow
from pgdurable.translators.base import TranslateContext

DAG = """
from datetime import datetime
from airflow import DAG
from airflow.utils.task_group import TaskGroup
from airflow.providers.postgres.operators.postgres import PostgresOperator

with DAG(dag_id="audit_names", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
    with TaskGroup("load"):
        PostgresOperator(
            task_id="mark", postgres_conn_id="postgres_default",
            sql="INSERT INTO public.names VALUES ('{{ dag.dag_id }}', '{{ task.task_id }}', "
                "'{{ dag_run.dag_id }}/{{ task_instance.task_id }}')",
        )
"""


def test_dag_and_task_ids_are_literals(wf, database, tmp_path):
    database.execute("CREATE TABLE names (dag text, task text, both_ text)")
    database.execute("GRANT ALL ON names TO alice")
    path = tmp_path / "names.py"
    path.write_text(textwrap.dedent(DAG))
    (result,) = airflow.translate(airflow.read_paths([path]), TranslateContext()).results
    assert str(result.fidelity) == "exact", result.diagnostics
    instance = wf.start(encode(result.workflow.body))
    wf.run()
    assert wf.status(instance) == "completed", wf.output(instance)
    assert database.execute("SELECT * FROM names") == [
        ("audit_names", "load.mark", "audit_names/load.mark")
    ]
