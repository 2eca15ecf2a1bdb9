"""The SQL the Airflow label fixes generate, run on the real PostgreSQL (issue 18):
a check row whose columns share a name fails when any of its values is falsy, as
Airflow's SQLCheckOperator does; hook_params settings hold in the task's transaction."""

from __future__ import annotations

import psycopg
import pytest

from pgdurable import model as m
from pgdurable.translators import airflow
from pgdurable.translators.airflow import tasks
from pgdurable.translators.base import TranslateContext


@pytest.mark.parametrize(
    ("query", "passes"),
    [
        ("SELECT count(*) = 0, count(*) > 0 FROM generate_series(1, 3)", False),  # 2nd false
        ("SELECT count(*) > 0, count(*) = 0 FROM generate_series(1, 3)", False),  # 1st false
        ("SELECT count(*) > 0, count(*) = 3 FROM generate_series(1, 3)", True),
        ("SELECT 1 AS n, 0 AS n", False),
        ("SELECT 'x' AS v, ARRAY[]::int[] AS v", False),  # Python: [] is falsy
        ("SELECT 1 WHERE false", False),  # zero rows
    ],
)
def test_check_reads_every_cell_of_the_row(database, query, passes):
    sql = tasks.check_sql(query)
    if passes:
        database.execute(sql)
        return
    with pytest.raises(psycopg.errors.RaiseException):
        database.execute(sql)


def test_value_check_reads_every_cell_of_the_row(database):
    with pytest.raises(psycopg.errors.RaiseException, match="Test failed"):
        database.execute(tasks.value_check_sql("SELECT 10 AS total, 99 AS total", 10, 0))
    database.execute(tasks.value_check_sql("SELECT 10 AS total, 10 AS total", 10, 0))


def test_hook_params_settings_last_for_the_task_transaction(database, tmp_path):
    dag = tmp_path / "timeouts.py"
    dag.write_text(
        "from airflow import DAG\n"
        "from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator\n"
        "with DAG('timeouts', schedule=None):\n"
        "    SQLExecuteQueryOperator(task_id='probe', conn_id='postgres_default',\n"
        "        sql=\"SELECT current_setting('statement_timeout') || '/' || "
        "current_setting('lock_timeout')\",\n"
        "        hook_params={'options': '-c statement_timeout=300000 --lock-timeout=5s'})\n"
    )
    ctx = TranslateContext(default_username="etl")
    (result,) = airflow.translate(airflow.read_paths([dag]), ctx).results
    (step,) = [n for n in m.walk(result.workflow.body) if isinstance(n, m.Sql)]
    with database.connect(autocommit=False) as conn:
        # one step is one transaction: a simple query of several statements, as the worker runs it
        cursor = conn.execute(step.query.encode())
        while cursor.nextset():  # the task's own statement comes after the settings
            pass
        inside = cursor.fetchone()
        conn.commit()
        after = conn.execute("SELECT current_setting('statement_timeout')").fetchone()
    assert inside == ("5min/5s",) and after != ("5min",)


def test_start_and_end_date_conditions_on_postgresql(database):
    from pathlib import Path

    fixture = Path(__file__).resolve().parents[2] / "fixtures" / "labels" / "airflow"
    source = (fixture / "campaign_window.py").read_text()
    ctx = TranslateContext(default_username="etl")

    def gate(text: str) -> tuple[bool, bool]:
        """(this tick runs, the schedule ends), evaluated now on PostgreSQL."""
        files = [airflow.SourceFile("campaign.py", text)]
        (result,) = airflow.translate(files, ctx).results
        steps = list(m.walk(result.workflow.body))
        dates = next(n for n in steps if isinstance(n, m.Sql) and n.name == "dag_run")
        window = next(n for n in steps if isinstance(n, m.If))
        start = database.value(f"SELECT data_interval_start FROM ({dates.query}) AS d")

        def ask(query: str) -> bool:
            return database.value(query.replace("$dag_run.data_interval_start", f"'{start}'"))

        return ask(window.condition.query), ask(window.otherwise.condition.query)

    # today is before start_date (2031): no run, and the schedule goes on
    assert gate(source) == (False, False)
    over = source.replace("2031, 11, 24", "2020, 1, 1").replace("2031, 12, 27", "2020, 2, 1")
    assert gate(over) == (False, True)  # after end_date: no run, and the loop ends
    assert gate(source.replace("2031, 11, 24", "2020, 1, 1"))[0] is True
