"""Airflow timetables and asset schedules: what each becomes, read from DAG files as
people write them (never imported)."""

from __future__ import annotations

import textwrap

from pgdurable import model as m
from pgdurable.translators import airflow
from pgdurable.translators.base import TranslateContext

HEAD = """
import pendulum
from datetime import timedelta
from airflow.sdk import DAG, Asset
from airflow.timetables.trigger import CronTriggerTimetable, MultipleCronTriggerTimetable
from airflow.timetables.interval import CronDataIntervalTimetable, DeltaDataIntervalTimetable
from airflow.timetables.events import EventsTimetable
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
"""


def translate(tmp_path, schedule: str, extra: str = ""):
    dag = f"""
with DAG("d", schedule={schedule}, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    SQLExecuteQueryOperator(task_id="t", conn_id="postgres_default", sql="SELECT 1")
"""
    path = tmp_path / "d.py"
    path.write_text(HEAD + textwrap.dedent(extra) + dag)
    ctx = TranslateContext(default_username="etl")
    results = {r.name: r for r in airflow.translate(airflow.read_paths([path]), ctx).results}
    return results["d"]


def codes(result) -> set[str]:
    return {d.code for d in result.diagnostics}


def nodes(result, kind) -> list:
    return [n for n in m.walk(result.workflow.body) if isinstance(n, kind)]


def test_a_cron_trigger_timetable_in_utc_is_a_cron_schedule(tmp_path):
    result = translate(tmp_path, 'CronTriggerTimetable("0 6 * * 1-5", timezone="UTC")')
    assert str(result.fidelity) == "exact", result.diagnostics
    assert [w.cron for w in nodes(result, m.WaitForSchedule)] == ["0 6 * * MON-FRI"]
    assert "trigger timetable" in "\n".join(result.workflow.description)


def test_a_time_zone_wakes_in_utc_and_checks_the_local_time(tmp_path):
    result = translate(tmp_path, 'CronTriggerTimetable("30 6 * * *", timezone="Europe/Berlin")')
    assert str(result.fidelity) == "exact" and "PGD214" in codes(result)
    assert [w.cron for w in nodes(result, m.WaitForSchedule)] == ["30 * * * *"]
    (guard,) = [n for n in nodes(result, m.If) if "Europe/Berlin" in n.condition.query]
    assert "extract(hour FROM t)::int IN (6)" in guard.condition.query


def test_a_zone_object_is_read_too(tmp_path):
    schedule = 'CronDataIntervalTimetable("0 2 * * *", timezone=pendulum.timezone("Asia/Tokyo"))'
    result = translate(tmp_path, schedule)
    assert "PGD214" in codes(result) and "PGD231" in codes(result)
    assert str(result.fidelity) == "approximate"


def test_a_data_interval_timetable_keeps_the_interval_rule(tmp_path):
    result = translate(tmp_path, 'CronDataIntervalTimetable("0 0 * * *", timezone="UTC")')
    assert str(result.fidelity) == "exact", result.diagnostics
    assert "START of the interval" in "\n".join(result.workflow.description)


def test_several_crons_race(tmp_path):
    result = translate(
        tmp_path, 'MultipleCronTriggerTimetable("0 6 * * *", "30 18 * * *", timezone="UTC")'
    )
    assert str(result.fidelity) == "exact", result.diagnostics
    (race,) = nodes(result, m.Race)
    assert {race.left.cron, race.right.cron} == {"0 6 * * *", "30 18 * * *"}


def test_a_delta_timetable_is_a_timedelta_schedule(tmp_path):
    result = translate(tmp_path, "DeltaDataIntervalTimetable(timedelta(hours=4))")
    assert [w.cron for w in nodes(result, m.WaitForSchedule)] == ["0 */4 * * *"]
    result = translate(tmp_path, "DeltaDataIntervalTimetable(timedelta(minutes=7))")
    assert "PGD232" in codes(result) and nodes(result, m.Sleep)


def test_events_run_once_each_at_their_instant(tmp_path):
    schedule = (
        "EventsTimetable(event_dates=[pendulum.datetime(2031, 4, 1, 8, tz='Europe/Berlin'),"
        " pendulum.datetime(2031, 3, 1, 8, 15)])"
    )
    result = translate(tmp_path, schedule)
    assert str(result.fidelity) == "exact", result.diagnostics
    # sorted, in UTC (Berlin is UTC+2 on 1 April 2031), each waited for until its instant
    assert [w.cron for w in nodes(result, m.WaitForSchedule)] == ["15 8 1 3 *", "0 6 1 4 *"]
    checks = [n.condition.query for n in nodes(result, m.If) if "now() <" in n.condition.query]
    assert "2031-03-01T08:15:00+00:00" in checks[0] and "2031-04-01T06:00:00+00:00" in checks[1]


def test_a_timetable_of_names_stays_manual_with_its_text(tmp_path):
    result = translate(
        tmp_path, "CronTriggerTimetable(CRON, timezone='UTC')", "CRON = f'0 {6} * * *'\n"
    )
    assert str(result.fidelity) == "manual"
    (problem,) = [d for d in result.diagnostics if d.code == "PGD314"]
    assert "CronTriggerTimetable(CRON" in problem.message
    unknown = translate(tmp_path, 'CronTriggerTimetable("0 6 * * *", timezone="Mars/Olympus")')
    assert "not a known name" in " ".join(d.message for d in unknown.diagnostics)


def test_asset_expressions_join_and_race_their_waits(tmp_path):
    producers = """
    with DAG("p", schedule=None, start_date=pendulum.datetime(2024, 1, 1)):
        SQLExecuteQueryOperator(task_id="a", conn_id="postgres_default", sql="SELECT 1",
                                outlets=[Asset("a"), Asset(name="b", uri="s3://x/b")])
        SQLExecuteQueryOperator(task_id="c", conn_id="postgres_default", sql="SELECT 1",
                                outlets=[Asset(uri="s3://x/c")])
    """
    result = translate(tmp_path, '(Asset("a") & Asset("b")) | Asset(uri="s3://x/c")', producers)
    assert str(result.fidelity) == "exact", result.diagnostics
    waits = [n for n in m.walk(result.workflow.body) if isinstance(n, m.Race)]
    race = waits[0]
    assert isinstance(race.left, m.Join) and race.right.signal_name == "asset:s3://x/c"
    drains = [n for n in nodes(result, m.WaitForSignal) if n.timeout_seconds == 1]
    assert sorted(d.signal_name for d in drains) == ["asset:a", "asset:b", "asset:s3://x/c"]
