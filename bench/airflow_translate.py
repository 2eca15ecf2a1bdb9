"""Benchmark: translate a folder of generated Airflow DAG files.

Generates N DAG files (default 1000) mixing the three generations and the
common constructs (operators, TaskGroups, loops, branches, trigger rules,
templates, schedules), then times ``pipeline.import_airflow`` over the folder
(read, translate, write one SQL file per DAG) several times and prints the
median. Usage: ``.venv/bin/python bench/airflow_translate.py [N] [RUNS]``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from pgdurable import pipeline

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
    for n in range(count):
        text = TEMPLATES[n % len(TEMPLATES)].format(n=n, m=n % 60)
        (folder / f"dag_{n:04d}.py").write_text(text)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with tempfile.TemporaryDirectory() as tmp:
        dags = Path(tmp) / "dags"
        dags.mkdir()
        generate(dags, count)
        timings = []
        for run in range(runs):
            out = Path(tmp) / f"out{run}"
            started = time.perf_counter()
            report = pipeline.import_airflow(paths=[dags], out_dir=out, default_username="etl")
            timings.append(time.perf_counter() - started)
            assert len(report.results) == count, report.summary
        print(
            f"{count} DAG files, {runs} runs: median {statistics.median(timings):.2f} s "
            f"(min {min(timings):.2f}, max {max(timings):.2f}); summary {report.summary}"
        )


if __name__ == "__main__":
    main()
