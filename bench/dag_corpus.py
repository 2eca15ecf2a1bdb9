"""A generated folder of Airflow DAG files, the corpus of the translation scenario.

``generate(folder, count)`` writes ``count`` DAG files that rotate through three
templates, one per Airflow generation (1.x ``*_operator`` imports, 2.x TaskFlow
with TaskGroups and branches, 3.x ``airflow.sdk``), with the common constructs
the translator meets in real folders: list and dict comprehensions of tasks,
trigger rules, Jinja templates, cron and preset schedules. Files differ in their
DAG id and a few literals, so nothing can be cached across files.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATES = [
    """from datetime import datetime, timedelta
from airflow import DAG
from airflow.operators.bash_operator import BashOperator
from airflow.operators.postgres_operator import PostgresOperator
from airflow.operators.dummy_operator import DummyOperator

args = {{"start_date": datetime(2020, 1, 1), "retries": 2, "retry_delay": timedelta(minutes=1)}}
with DAG("gen_{n}", default_args=args, schedule_interval="{m} 3 * * *", catchup=False) as dag:
    start = DummyOperator(task_id="start")
    tasks = [PostgresOperator(task_id=f"load_{{i}}", sql=f"INSERT INTO t{{i}} SELECT * FROM s{{i}} WHERE d = '{{{{ ds }}}}'") for i in range(5)]
    done = BashOperator(task_id="done", bash_command='psql -c "ANALYZE t0"', trigger_rule="all_done")
    start >> tasks >> done
""",
    """import pendulum
from airflow.decorators import dag, task
from airflow.providers.postgres.hooks.postgres import PostgresHook
from airflow.providers.common.sql.operators.sql import BranchSQLOperator, SQLExecuteQueryOperator
from airflow.operators.empty import EmptyOperator
from airflow.utils.task_group import TaskGroup


@dag(dag_id="gen_{n}", schedule="@hourly", start_date=pendulum.datetime(2023, 1, 1), catchup=False)
def pipeline():
    @task
    def count():
        return PostgresHook().get_first("SELECT count(*) FROM events")[0]

    branch = BranchSQLOperator(task_id="branch", sql="SELECT {m} % 2 = 0",
                               follow_task_ids_if_true="group.even", follow_task_ids_if_false="group.odd")
    with TaskGroup("group") as group:
        even = SQLExecuteQueryOperator(task_id="even", sql="INSERT INTO log VALUES ('even')")
        odd = SQLExecuteQueryOperator(task_id="odd", sql="INSERT INTO log VALUES ('odd')")
    join = EmptyOperator(task_id="join", trigger_rule="none_failed_min_one_success")
    count() >> branch >> [even, odd] >> join


pipeline()
""",
    """from airflow.sdk import DAG
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator, SQLCheckOperator
from airflow.providers.standard.operators.python import PythonOperator

with DAG(dag_id="gen_{n}", schedule=None):
    check = SQLCheckOperator(task_id="check", sql="SELECT count(*) FROM t{m}")
    steps = {{name: SQLExecuteQueryOperator(task_id=name, sql=f"CALL {{name}}()") for name in ["a", "b", "c", "d"]}}
    alert = SQLExecuteQueryOperator(task_id="alert", sql="INSERT INTO alerts VALUES (1)", trigger_rule="one_failed")
    py = PythonOperator(task_id="py", python_callable=print)
    check >> steps["a"] >> [steps["b"], steps["c"]] >> steps["d"] >> [alert, py]
""",
]


def generate(folder: Path, count: int) -> None:
    """Write ``dag_0000.py`` … into ``folder``, rotating through the templates."""
    for n in range(count):
        text = TEMPLATES[n % len(TEMPLATES)].format(n=n, m=n % 60)
        (folder / f"dag_{n:04d}.py").write_text(text)
