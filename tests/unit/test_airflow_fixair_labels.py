"""Labels of constructs the real-input audit found mislabelled: a DAG that reads
its interval and can skip one (PGD248), statements Airflow refuses in a
transaction block (PGD366), non-static default_args without workflow meaning
(PGD249), croniter's L and # (not PGD314)."""

from __future__ import annotations

import textwrap

from pgdurable.translators import airflow
from pgdurable.translators.base import TranslateContext

HEAD = """
from datetime import datetime, timedelta
from airflow import DAG
from airflow.models import Variable
from airflow.providers.postgres.operators.postgres import PostgresOperator
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
"""


def translate(tmp_path, body: str, name: str = "d"):
    path = tmp_path / "dag.py"
    path.write_text(HEAD + textwrap.dedent(body))
    batch = airflow.translate(airflow.read_paths([path]), TranslateContext(default_username="etl"))
    return {r.name: r for r in batch.results}[name]


def codes(result) -> set[str]:
    return {d.code for d in result.diagnostics}


def message(result, code: str) -> str:
    return "\n".join(d.message for d in result.diagnostics if d.code == code)


def dag(sql: str, *, catchup: str = "False", extra: str = "") -> str:
    return f"""
with DAG(dag_id="d", schedule="0 2 * * *", start_date=datetime(2024, 1, 1),
         catchup={catchup}{extra}) as dag:
    PostgresOperator(task_id="load", postgres_conn_id="postgres_default", sql={sql!r})
"""


def test_catchup_with_an_interval_partitioned_load_is_approximate(tmp_path):
    result = translate(
        tmp_path,
        dag(
            "INSERT INTO daily SELECT '{{ ds }}'::date", catchup="True", extra=", max_active_runs=1"
        ),
    )
    assert str(result.fidelity) == "approximate"
    text = message(result, "PGD248")
    assert "catchup is on" in text and "max_active_runs=1" in text
    assert "PGD238" not in codes(result) and "PGD205" not in codes(result)


def test_an_overlapping_tick_of_an_interval_reading_dag_is_approximate(tmp_path):
    result = translate(tmp_path, dag("DELETE FROM ev WHERE day = '{{ data_interval_start }}'"))
    assert str(result.fidelity) == "approximate" and "PGD248" in codes(result)
    assert "catchup" not in message(result, "PGD248")


def test_a_dag_that_does_not_read_its_interval_stays_exact(tmp_path):
    result = translate(tmp_path, dag("REFRESH MATERIALIZED VIEW totals", catchup="True"))
    assert str(result.fidelity) == "exact", result.diagnostics
    assert {"PGD238", "PGD205"} <= codes(result) and "PGD248" not in codes(result)


def test_vacuum_without_autocommit_fails_in_airflow(tmp_path):
    result = translate(tmp_path, dag("VACUUM ANALYZE events"))
    assert str(result.fidelity) == "manual" and "PGD366" in codes(result)
    assert "every Airflow run" in message(result, "PGD366")


def test_create_index_concurrently_in_sqlexecutequery_without_autocommit(tmp_path):
    result = translate(
        tmp_path,
        """
        with DAG(dag_id="d", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
            SQLExecuteQueryOperator(
                task_id="idx", conn_id="postgres_default",
                sql="-- speed up lookups\\nCREATE INDEX CONCURRENTLY IF NOT EXISTS ev_day ON ev (day)",
            )
        """,
    )
    assert "PGD366" in codes(result) and str(result.fidelity) == "manual"


def test_vacuum_with_autocommit_translates(tmp_path):
    result = translate(
        tmp_path,
        """
        with DAG(dag_id="d", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
            PostgresOperator(task_id="v", postgres_conn_id="postgres_default", autocommit=True,
                             sql="VACUUM ANALYZE events")
        """,
    )
    assert "PGD366" not in codes(result) and str(result.fidelity) == "exact"


def test_a_variable_built_email_list_is_noted_not_manual(tmp_path):
    result = translate(
        tmp_path,
        """
        default_args = {
            "owner": "analytics",
            "email": [a.strip() for a in Variable.get("alert_to").split(",")],
            "email_on_failure": True,
            "retries": 2,
        }
        with DAG(dag_id="d", default_args=default_args, schedule=None,
                 start_date=datetime(2024, 1, 1)) as dag:
            PostgresOperator(task_id="t", postgres_conn_id="postgres_default", sql="SELECT 1")
        """,
    )
    assert str(result.fidelity) == "exact", result.diagnostics
    assert "PGD249" in codes(result) and "PGD315" not in codes(result)


def test_a_comprehension_that_makes_tasks_over_an_unknown_list_is_still_manual(tmp_path):
    result = translate(
        tmp_path,
        """
        with DAG(dag_id="d", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
            loads = [
                PostgresOperator(task_id=f"load_{t}", postgres_conn_id="postgres_default", sql="SELECT 1")
                for t in Variable.get("tables").split(",")
            ]
        """,
    )
    assert "PGD315" in codes(result) and str(result.fidelity) == "manual"


def test_croniter_L_and_hash_are_not_refused(tmp_path):
    for schedule in ("10 0 L * *", "10 0 * * 6#2", "0 3 * * fri#1"):
        body = dag("SELECT 1").replace('"0 2 * * *"', repr(schedule))
        result = translate(tmp_path, body)
        assert "PGD314" not in codes(result), (schedule, result.diagnostics)
        assert str(result.fidelity) != "manual", (schedule, result.diagnostics)


def test_croniter_L_in_airflow_3_is_exact(tmp_path):
    body = dag("SELECT 1").replace('"0 2 * * *"', '"10 0 L * *"')
    path = tmp_path / "dag.py"
    path.write_text(HEAD.replace("from airflow import DAG", "from airflow.sdk import DAG") + body)
    (result,) = airflow.translate(
        airflow.read_paths([path]), TranslateContext(default_username="etl")
    ).results
    assert str(result.fidelity) == "exact", result.diagnostics


def test_a_bash_step_that_ignores_its_context_environment_stays_exact(tmp_path):
    result = translate(
        tmp_path,
        """
        from airflow.operators.bash import BashOperator
        with DAG(dag_id="d", schedule="@daily", start_date=datetime(2024, 1, 1),
                 catchup=False) as dag:
            BashOperator(task_id="nap", bash_command="sleep 1")
            BashOperator(task_id="stamp", bash_command="echo $AIRFLOW_CTX_EXECUTION_DATE")
        """,
    )
    assert "PGD248" in codes(result)  # 'stamp' reads the logical date from its environment
    quiet = translate(
        tmp_path,
        """
        from airflow.operators.bash import BashOperator
        with DAG(dag_id="d", schedule="@daily", start_date=datetime(2024, 1, 1),
                 catchup=False) as dag:
            BashOperator(task_id="nap", bash_command="sleep 1")
        """,
    )
    assert "PGD248" not in codes(quiet), quiet.diagnostics


PY_DAG = """
from airflow.decorators import task

with DAG(dag_id="d", schedule="@daily", start_date=datetime(2024, 1, 1), catchup=False) as dag:
    @task
    def work({params}):
        return 1

    work()
"""


def test_a_python_task_reads_the_interval_only_when_it_can_receive_it(tmp_path):
    quiet = translate(tmp_path, PY_DAG.format(params=""))
    assert "PGD248" not in codes(quiet), quiet.diagnostics
    for params in ("ds=None", "**context", "logical_date=None, ti=None"):
        reading = translate(tmp_path, PY_DAG.format(params=params))
        assert "PGD248" in codes(reading), params


def test_get_current_context_reads_the_interval(tmp_path):
    body = PY_DAG.format(params="").replace(
        "        return 1",
        "        from airflow.operators.python import get_current_context\n"
        "        return get_current_context()['ds']",
    )
    assert "PGD248" in codes(translate(tmp_path, body))
