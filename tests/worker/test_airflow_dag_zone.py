"""The DAG's time zone from start_date: the generated schedule fires at the zone's
local time, computed on the real PostgreSQL with a chosen clock.

The workflow wakes at ``df.wait_for_schedule(W)`` (UTC) and runs only when its
local-time condition holds. With a chosen instant T in place of ``now()``, the
first run after T is the first ``pgdurable.cron_next(W, ...)`` tick whose
condition holds; its ``dag_run`` row and the start-date window are evaluated at
that tick the same way. Expectations come from Airflow's rule (the cron is
evaluated in the zone of start_date; ds is the UTC date of the interval start).
"""

from __future__ import annotations

import textwrap
from datetime import datetime

from pgdurable import model as m
from pgdurable.translators import airflow
from pgdurable.translators.base import TranslateContext

HEAD = """
import pendulum
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo
from airflow import DAG
from airflow.providers.postgres.operators.postgres import PostgresOperator
"""


def translate(tmp_path, dag: str):
    path = tmp_path / "zone_dag.py"
    path.write_text(HEAD + textwrap.dedent(dag))
    batch = airflow.translate(airflow.read_paths([path]), TranslateContext(default_username="etl"))
    (result,) = batch.results
    return result


def codes(result) -> set[str]:
    return {d.code for d in result.diagnostics}


def at(database, query: str, clock: str):
    """``query`` evaluated with the clock at ``clock`` (UTC) instead of now()."""
    return database.execute(query.replace("now()", f"timestamptz '{clock}+00'"))


def first_run(database, result, after: str) -> datetime:
    waits = [n.cron for n in m.walk(result.workflow.body) if isinstance(n, m.WaitForSchedule)]
    (wake,) = waits
    guards = [
        n
        for n in m.walk(result.workflow.body)
        if isinstance(n, m.If) and "data_interval_start" not in n.condition.query
    ][:1]
    clock = after
    for _ in range(400):
        tick = database.value(
            f"SELECT pgdurable.cron_next('{wake}', timestamptz '{clock}+00') AT TIME ZONE 'UTC'"
        )
        clock = tick.isoformat(sep=" ")
        if not guards or at(database, guards[0].condition.query, clock)[0][0]:
            return tick
    raise AssertionError("no run within 400 wake-ups")


def dag_run(database, result, tick: datetime) -> dict:
    (step,) = [
        n for n in m.walk(result.workflow.body) if isinstance(n, m.Sql) and n.name == "dag_run"
    ]
    row = at(
        database,
        f"SELECT ds, data_interval_start FROM ({step.query}) AS r",
        tick.isoformat(sep=" "),
    )
    return {"ds": row[0][0], "data_interval_start": row[0][1]}


SEOUL = """
with DAG(dag_id="seoul", start_date=pendulum.datetime(2024, 1, 1, tz="Asia/Seoul"),
         schedule="0 1 * * *", catchup=False) as dag:
    PostgresOperator(task_id="load", postgres_conn_id="postgres_default", sql="SELECT 1")
"""


def test_a_seoul_start_date_runs_the_cron_at_seoul_time(database, tmp_path):
    result = translate(tmp_path, SEOUL)
    # Seoul has no daylight saving: the local-time check is the whole difference
    assert str(result.fidelity) == "exact", result.diagnostics
    assert "PGD214" in codes(result)
    # 01:00 KST is 16:00 UTC the day before, not 01:00 UTC
    assert first_run(database, result, "2024-03-10 00:00") == datetime(2024, 3, 10, 16, 0)
    assert first_run(database, result, "2024-03-10 16:00") == datetime(2024, 3, 11, 16, 0)
    # Airflow 2.x: the run at 2024-03-11 01:00 KST covers the day before; ds is its UTC date
    row = dag_run(database, result, datetime(2024, 3, 10, 16, 0))
    assert row == {"ds": "2024-03-09", "data_interval_start": "2024-03-09T16:00:00+00:00"}


def test_the_start_date_bound_is_in_the_zone_of_start_date(database, tmp_path):
    result = translate(tmp_path, SEOUL)
    (window,) = [
        n
        for n in m.walk(result.workflow.body)
        if isinstance(n, m.If) and "data_interval_start" in n.condition.query
    ]
    (step,) = [
        n for n in m.walk(result.workflow.body) if isinstance(n, m.Sql) and n.name == "dag_run"
    ]

    def inside(tick: str) -> bool:
        start = at(database, f"SELECT data_interval_start FROM ({step.query}) AS r", tick)[0][0]
        query = window.condition.query.replace("$dag_run.data_interval_start", f"'{start}'")
        return database.value(query)

    # start_date is 2024-01-01 00:00 KST: the run at 2024-01-01 01:00 KST covers
    # 2023-12-31 01:00 KST, before it; the next one (2024-01-01 01:00 KST onwards) runs.
    assert inside("2023-12-31 16:00") is False
    assert inside("2024-01-01 16:00") is True
    assert "2024-01-01T00:00:00 Asia/Seoul" in "\n".join(d.message for d in result.diagnostics)


def test_berlin_follows_daylight_saving_and_says_where_it_differs(database, tmp_path):
    result = translate(
        tmp_path,
        """
        with DAG(dag_id="berlin", start_date=pendulum.datetime(2024, 1, 1, tz="Europe/Berlin"),
                 schedule="30 2 * * *", catchup=False) as dag:
            PostgresOperator(task_id="t", postgres_conn_id="postgres_default", sql="SELECT 1")
        """,
    )
    assert first_run(database, result, "2024-01-10 00:00") == datetime(2024, 1, 10, 1, 30)  # CET
    assert first_run(database, result, "2024-06-10 00:00") == datetime(2024, 6, 10, 0, 30)  # CEST
    # 02:30 does not exist on the last Sunday of March: Airflow runs at 03:30, we do not
    assert str(result.fidelity) == "approximate" and "PGD246" in codes(result)


def test_a_zone_object_in_default_args_is_the_dag_zone(database, tmp_path):
    result = translate(
        tmp_path,
        """
        local_tz = pendulum.timezone("Asia/Tokyo")
        with DAG(dag_id="tokyo", default_args={"start_date": datetime(2024, 1, 1, tzinfo=local_tz)},
                 schedule_interval="15 9 * * *", catchup=False) as dag:
            PostgresOperator(task_id="t", postgres_conn_id="postgres_default", sql="SELECT 1")
        """,
    )
    assert str(result.fidelity) == "exact", result.diagnostics
    assert first_run(database, result, "2024-05-01 01:00") == datetime(2024, 5, 2, 0, 15)


def test_zoneinfo_and_a_timedelta_anchor_on_the_utc_instant(tmp_path):
    result = translate(
        tmp_path,
        """
        with DAG(dag_id="td", start_date=datetime(2024, 1, 1, 1, 30, tzinfo=ZoneInfo("Asia/Seoul")),
                 schedule_interval=timedelta(hours=6), catchup=False) as dag:
            PostgresOperator(task_id="t", postgres_conn_id="postgres_default", sql="SELECT 1")
        """,
    )
    # 01:30 KST is 16:30 UTC: every 6 h from there is 04:30, 10:30, 16:30, 22:30 UTC
    waits = [n.cron for n in m.walk(result.workflow.body) if isinstance(n, m.WaitForSchedule)]
    assert waits == ["30 4-22/6 * * *"], waits
    assert str(result.fidelity) == "exact", result.diagnostics


def test_a_zone_that_cannot_be_read_is_not_exact(tmp_path):
    result = translate(
        tmp_path,
        """
        with DAG(dag_id="unknown_zone", start_date=pendulum.datetime(2024, 1, 1, tz=get_zone()),
                 schedule="0 6 * * *", catchup=False) as dag:
            PostgresOperator(task_id="t", postgres_conn_id="postgres_default", sql="SELECT 1")
        """,
    )
    assert "PGD247" in codes(result) and str(result.fidelity) != "exact"


def test_a_naive_start_date_stays_utc(tmp_path):
    result = translate(
        tmp_path,
        """
        with DAG(dag_id="naive", start_date=datetime(2024, 1, 1), schedule="0 6 * * *",
                 catchup=False) as dag:
            PostgresOperator(task_id="t", postgres_conn_id="postgres_default", sql="SELECT 1")
        """,
    )
    assert "PGD214" not in codes(result) and str(result.fidelity) == "exact"
    waits = [n.cron for n in m.walk(result.workflow.body) if isinstance(n, m.WaitForSchedule)]
    assert waits == ["0 6 * * *"]


def schedule_dag(tmp_path, schedule: str, start: str = "datetime(2024, 1, 1)", catchup=False):
    return translate(
        tmp_path,
        f"""
        with DAG(dag_id="cal", start_date={start}, schedule={schedule!r}, catchup={catchup}) as dag:
            PostgresOperator(task_id="t", postgres_conn_id="postgres_default", sql="SELECT 1")
        """,
    )


def test_croniter_last_day_of_month_runs_on_the_last_day(database, tmp_path):
    result = schedule_dag(tmp_path, "0 3 L * *")
    assert "PGD314" not in codes(result) and "PGD211" in codes(result)
    assert first_run(database, result, "2024-02-01 00:00") == datetime(2024, 2, 29, 3, 0)
    assert first_run(database, result, "2024-02-29 03:00") == datetime(2024, 3, 31, 3, 0)
    assert first_run(database, result, "2023-02-01 00:00") == datetime(2023, 2, 28, 3, 0)


def test_croniter_nth_weekday_runs_on_that_weekday(database, tmp_path):
    result = schedule_dag(tmp_path, "10 0 * * 6#2")  # the 2nd Saturday
    assert "PGD314" not in codes(result)
    assert first_run(database, result, "2024-03-01 00:00") == datetime(2024, 3, 9, 0, 10)
    assert first_run(database, result, "2024-03-09 00:10") == datetime(2024, 4, 13, 0, 10)
    assert first_run(database, result, "2024-06-01 00:00") == datetime(2024, 6, 8, 0, 10)


def test_last_day_in_the_zone_of_start_date(database, tmp_path):
    result = schedule_dag(tmp_path, "0 1 L * *", 'pendulum.datetime(2024, 1, 1, tz="Asia/Seoul")')
    # 01:00 KST on 29 February is 16:00 UTC on the 28th
    assert first_run(database, result, "2024-02-25 00:00") == datetime(2024, 2, 28, 16, 0)
    assert first_run(database, result, "2024-03-28 00:00") == datetime(2024, 3, 30, 16, 0)
    assert "PGD214" in codes(result)


def test_pendulum_today_names_the_zone_though_the_date_is_unknown(database, tmp_path):
    result = schedule_dag(tmp_path, "30 8 * * *", 'pendulum.today("Asia/Seoul").add(days=-1)')
    assert "PGD214" in codes(result) and "PGD247" not in codes(result)
    assert first_run(database, result, "2024-05-01 00:00") == datetime(2024, 5, 1, 23, 30)


def test_pendulum_now_is_the_hosts_zone_so_not_exact(tmp_path):
    result = schedule_dag(tmp_path, "30 8 * * *", "pendulum.now().subtract(days=1)")
    assert "PGD247" in codes(result) and str(result.fidelity) != "exact"


def test_an_irregular_cron_in_a_zone_says_its_ds_is_the_trigger_minute(tmp_path):
    result = schedule_dag(
        tmp_path, "0 6 * * 1-5", 'pendulum.datetime(2024, 1, 1, tz="America/New_York")'
    )
    assert str(result.fidelity) == "approximate"
    assert {"PGD214", "PGD231"} <= codes(result)
    assert "trigger minute" in "\n".join(result.workflow.description)
