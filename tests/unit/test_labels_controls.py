"""Labels of the date and schedule controls (translators/airflow/controls.py):
exact only where the SQL decides as Airflow does for every run; the difference
named otherwise; manual naming the construct."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgdurable.translators import airflow
from pgdurable.translators.base import TranslateContext

HEAD = """import pendulum
from datetime import datetime, time, timedelta
from airflow import DAG
from airflow.operators.empty import EmptyOperator
from airflow.operators.datetime import BranchDateTimeOperator
from airflow.operators.weekday import BranchDayOfWeekOperator
from airflow.operators.latest_only import LatestOnlyOperator
"""


def translate(tmp_path: Path, body: str, *, dag: str = "schedule=None") -> dict[str, list[str]]:
    """The diagnostics (code -> messages) of one DAG with ``body`` as its tasks."""
    source = (
        HEAD
        + f'with DAG("d", {dag}, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):\n'
        + '    a = EmptyOperator(task_id="a")\n    b = EmptyOperator(task_id="b")\n'
        + "".join(f"    {line}\n" for line in body.strip().splitlines())
    )
    path = tmp_path / "d.py"
    path.write_text(source)
    batch = airflow.translate(airflow.read_paths([path]), TranslateContext())
    (result,) = batch.results
    codes: dict[str, list[str]] = {}
    for d in result.diagnostics:
        codes.setdefault(d.code, []).append(d.message)
    return codes


BRANCH = 'follow_task_ids_if_true="a", follow_task_ids_if_false="b"'


@pytest.mark.parametrize(
    "targets",
    [
        "target_lower=datetime(2024, 1, 1), target_upper=datetime(2024, 1, 2)",
        "target_lower=time(9), target_upper=time(17)",
        "target_lower=None, target_upper=pendulum.time(3)",
        'target_lower=pendulum.datetime(2024, 1, 1, tz="Asia/Tokyo"), target_upper=None',
    ],
)
def test_literal_windows_are_exact(tmp_path, targets):
    codes = translate(
        tmp_path, f'c = BranchDateTimeOperator(task_id="c", {BRANCH}, {targets})\nc >> [a, b]'
    )
    assert not {c for c in codes if c[:5] in ("PGD28", "PGD34", "PGD31")}, codes


def test_a_local_zone_is_approximate_at_daylight_saving_changes(tmp_path):
    source = HEAD + (
        'with DAG("d", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="America/New_York")):\n'
        '    a = EmptyOperator(task_id="a")\n    b = EmptyOperator(task_id="b")\n'
        f'    c = BranchDateTimeOperator(task_id="c", {BRANCH}, target_lower=time(1), target_upper=time(3))\n'
        "    c >> [a, b]\n"
    )
    (tmp_path / "d.py").write_text(source)
    (result,) = airflow.translate(
        airflow.read_paths([tmp_path / "d.py"]), TranslateContext()
    ).results
    (message,) = [d.message for d in result.diagnostics if d.code == "PGD281"]
    assert "America/New_York" in message and "daylight-saving" in message


@pytest.mark.parametrize(
    ("targets", "code", "words"),
    [
        ("target_lower=time(9), target_upper=datetime(2024, 1, 1)", "PGD340", "mix a datetime"),
        ("target_lower=Variable.get('x'), target_upper=None", "PGD340", "not a literal"),
        (
            'target_lower=pendulum.datetime(2024, 1, 1, tz="Mars/Base"), target_upper=None',
            "PGD340",
            "named zone",
        ),
        ("target_lower=None, target_upper=None", "PGD311", "both None"),
    ],
)
def test_unreadable_targets_are_manual(tmp_path, targets, code, words):
    codes = translate(
        tmp_path, f'c = BranchDateTimeOperator(task_id="c", {BRANCH}, {targets})\nc >> [a, b]'
    )
    assert any(words in m for m in codes.get(code, [])), codes


def test_a_follow_id_that_is_a_group_is_manual(tmp_path):
    codes = translate(
        tmp_path,
        'c = BranchDateTimeOperator(task_id="c", follow_task_ids_if_true="grp", '
        'follow_task_ids_if_false="b", target_lower=time(1), target_upper=None)\nc >> [a, b]',
    )
    assert any("'grp', not a task" in m for m in codes["PGD311"])


@pytest.mark.parametrize(
    ("week_day", "manual"),
    [
        ('"Monday"', False),
        ('["saturday", "SUNDAY"]', False),
        ("{WeekDay.MONDAY}", False),
        ('"Funday"', True),
        ("days", True),
    ],
)
def test_week_days(tmp_path, week_day, manual):
    codes = translate(
        tmp_path,
        "from airflow.utils.weekday import WeekDay\n"
        f'c = BranchDayOfWeekOperator(task_id="c", {BRANCH}, week_day={week_day})\nc >> [a, b]',
    )
    assert ("PGD341" in codes) == manual, codes
    assert "PGD311" not in codes


@pytest.mark.parametrize(
    ("schedule", "code"),
    [
        ("schedule=None", None),  # every run is manual: Airflow always proceeds
        ('schedule="@hourly"', "PGD282"),
        ("schedule=timedelta(minutes=90)", "PGD282"),
        ('schedule="0 9 * * 1-5"', "PGD342"),  # no fixed period
        ('schedule="@once"', "PGD342"),
    ],
)
def test_latest_only_labels(tmp_path, schedule, code):
    codes = translate(tmp_path, 'c = LatestOnlyOperator(task_id="c")\nc >> [a, b]', dag=schedule)
    mine = {c for c in codes if c in ("PGD282", "PGD342", "PGD311")}
    assert mine == ({code} if code else set()), codes


@pytest.mark.parametrize(
    ("value", "done", "result"),
    [
        (True, True, None),  # a bool is no XCom
        ("", False, None),
        ("ready", True, None),  # Python truth, not the DSL's
        ([0], True, None),
        ("PRV", False, None),
        ("PRV-done", True, {"batch": 3}),
    ],
)
def test_a_sensor_poke_reads_python_truth_and_poke_return_value(value, done, result):
    from pgdurable import airflow_context

    if value == "PRV":
        value = airflow_context.PokeReturnValue(False, {"batch": 3})
    elif value == "PRV-done":
        value = airflow_context.PokeReturnValue(is_done=True, xcom_value={"batch": 3})
    row = airflow_context.run(lambda: value, {"mode": "sensor", "task_id": "s"})["rows"][0]
    assert row["follow"] is done and row["return_value"] == result


def test_sensor_labels(tmp_path):
    codes = translate(
        tmp_path,
        "from airflow.decorators import task\n"
        "@task.sensor(poke_interval=5, exponential_backoff=True)\n"
        "def ready():\n"
        "    return True\n"
        "ready() >> [a, b]",
    )
    assert "PGD311" not in codes and len(codes["PGD283"]) == 1


@pytest.mark.parametrize(
    ("sensor", "code"),
    [
        ("TimeSensor(task_id='c', target_time=time(6))", None),
        ("TimeSensorAsync(task_id='c', target_time=time(6))", "PGD284"),  # parse-date target
        ("TimeSensor(task_id='c', target_time=datetime.now().time())", "PGD343"),
        ("DateTimeSensor(task_id='c', target_time=datetime(2024, 5, 1))", None),
        ("DateTimeSensorAsync(task_id='c', target_time=datetime(2024, 5, 1))", "PGD284"),
        ("DateTimeSensor(task_id='c', target_time='{{ data_interval_end }}')", "PGD343"),
        ("DayOfWeekSensor(task_id='c', week_day={'Monday', 'Friday'})", None),
        ("DayOfWeekSensor(task_id='c', week_day=today)", "PGD341"),
    ],
)
def test_time_sensor_labels(tmp_path, sensor, code):
    codes = translate(
        tmp_path,
        "from airflow.sensors.time_sensor import TimeSensor, TimeSensorAsync\n"
        "from airflow.sensors.date_time import DateTimeSensor, DateTimeSensorAsync\n"
        "from airflow.sensors.weekday import DayOfWeekSensor\n"
        f"c = {sensor}\nc >> [a, b]",
    )
    mine = {c for c in codes if c[:5] in ("PGD28", "PGD34", "PGD31")}
    assert mine == ({code} if code else set()), codes


@pytest.mark.parametrize(
    ("sensor", "codes_expected"),
    [
        ("BashSensor(task_id='c', bash_command='exit 0')", {"PGD271"}),
        ("BashSensor(task_id='c', bash_command='exit 0', retry_exit_code=2)", {"PGD311"}),
        ("FileSensor(task_id='c', filepath='/data/in/*.csv')", {"PGD271"}),
        ("FileSensor(task_id='c', filepath='in/x.csv')", {"PGD271"}),  # fs_default: base "/"
        ("FileSensor(task_id='c', filepath='x.csv', fs_conn_id='landing')", {"PGD311"}),
        ("FileSensor(task_id='c', filepath='{{ ds }}.csv')", {"PGD311"}),
    ],
)
def test_command_sensor_labels(tmp_path, sensor, codes_expected):
    codes = translate(
        tmp_path,
        "from airflow.sensors.bash import BashSensor\n"
        "from airflow.sensors.filesystem import FileSensor\n"
        f"c = {sensor}\nc >> [a, b]",
    )
    assert {c for c in codes if c in ("PGD271", "PGD311")} == codes_expected, codes
    if "PGD271" in codes:
        assert "worker's host" in codes["PGD271"][0]
