"""Translated Python sensors poke durably on a real worker (translators/airflow/sensors.py).

The DAG of fixtures/airflow/dags/s1_python_sensor.py is imported as a user
imports it (task modules written to the output folder), run by a background
worker with that folder as its code root, and fed while it waits: the sensor
must have poked (false) before the rows arrive, and go on once they are there.
Expectations follow Airflow's BaseSensorOperator: the callable's Python truth
decides, a PokeReturnValue's xcom_value is the task's XCom, soft_fail skips on
timeout and a none_failed task after it still runs.
"""

from __future__ import annotations

import os
import shutil

import pytest

from pgdurable import model as m
from pgdurable import pipeline
from pgdurable.model import encode
from pgdurable.testing import wait_for
from pgdurable.translators import airflow
from pgdurable.translators.base import TranslateContext
from pgdurable.worker.code_roots import CodeConfig

from .test_airflow_runs import DAGS, log


@pytest.fixture
def tables(database, alice):
    database.execute("CREATE TABLE t (x int)")
    database.execute("CREATE TABLE log (v text, at timestamptz DEFAULT clock_timestamp())")
    database.execute("GRANT ALL ON t, log TO alice")
    database.execute(
        "SELECT pgdurable.grant_code('alice', 'python:airflow_tasks.s1_python_sensor:*')"
    )
    return database


def test_python_sensors_poke_until_true_and_pass_their_xcom(
    wf, tables, tmp_path, background_worker
):
    out = tmp_path / "out"
    report = pipeline.import_airflow(
        paths=[DAGS / "s1_python_sensor.py"], out_dir=out, default_username="alice"
    )
    (result,) = report.results
    assert result.workflow is not None, result.diagnostics
    assert not [d for d in result.diagnostics if d.code in ("PGD311", "PGD283")]
    instance = wf.start(encode(result.workflow.body))
    background_worker(code=CodeConfig.build([str(out)]))
    wait_for(lambda: log(tables).count("poke") >= 2, timeout=60, what="two false pokes")
    assert wf.status(instance) == "running"
    assert "batch=7" not in log(tables)
    tables.execute("INSERT INTO t VALUES (5), (7)")
    wf.wait_status(instance, "completed", timeout=60)
    entries = log(tables)
    assert entries.count("poke") >= 3  # the sensor poked again and found the rows
    assert set(entries) - {"poke"} == {"batch=7", "after skip"}


@pytest.mark.parametrize(
    ("clock", "expected"),
    [
        ("2024-06-01 13:00:00+00", ["on_saturday", "past_noon_local", "released"]),
        # 12:30 in Amsterdam is past noon; the release instant itself is not past it (>)
        ("2024-06-01 10:30:00+00", ["on_saturday", "past_noon_local"]),
        ("2024-06-03 09:00:00+00", ["released"]),  # Monday 11:00 local
        ("2024-05-31 10:45:00+00", ["past_noon_local"]),  # Friday, before the release
    ],
)
def test_time_sensors_wait_for_their_moment_or_skip_on_timeout(wf, tables, clock, expected):
    """The poke's clock (statement_timestamp()) is pinned; a sensor whose time has not
    come pokes until its 2 s timeout and is skipped (soft_fail), so its note is not run."""
    batch = airflow.translate(airflow.read_paths([DAGS / "s2_time_sensors.py"]), TranslateContext())
    (result,) = batch.results
    assert not [d for d in result.diagnostics if d.code[:5] in ("PGD28", "PGD34", "PGD31")]
    graph = encode(result.workflow.body)
    assert graph.count("statement_timestamp()") == 3
    instance = wf.start(graph.replace("statement_timestamp()", f"timestamptz '{clock}'"))
    wf.run()
    assert wf.status(instance) == "completed", wf.nodes(instance)
    assert sorted(log(tables)) == expected


COMMAND_SENSORS = """
import pendulum
from airflow import DAG
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sensors.bash import BashSensor
from airflow.sensors.filesystem import FileSensor

with DAG("s3_command_sensors", schedule=None, start_date=pendulum.datetime(2024, 1, 1)):
    flag = BashSensor(
        task_id="flag_says_go",
        bash_command='echo poked >> "$SPOOL/pokes"; test "$(cat "$SPOOL/flag" 2>/dev/null)" = go',
        env={"SPOOL": SPOOL},
        poke_interval=1,
        timeout=120,
    )
    landed = FileSensor(task_id="csv_landed", filepath=SPOOL + "/in/*.csv", poke_interval=1)
    never = BashSensor(
        task_id="never", bash_command="exit 3", timeout=1, poke_interval=1, soft_fail=True
    )
    done = SQLExecuteQueryOperator(task_id="done", sql="INSERT INTO log VALUES ('done')")
    after = SQLExecuteQueryOperator(
        task_id="after_never", sql="INSERT INTO log VALUES ('after never')", trigger_rule="none_failed"
    )
    [flag, landed] >> done
    never >> after
"""


def test_bash_and_file_sensors_poke_commands_on_the_worker_host(
    wf, tables, tmp_path, background_worker
):
    """The sensors poke (false) until the flag says go and a .csv lands, then go on;
    `exit 3` is a false poke (not a failure): its sensor is skipped on timeout."""
    spool = tmp_path / "spool it's"  # a quote in the path stays data
    (spool / "in").mkdir(parents=True)
    dag = tmp_path / "s3_command_sensors.py"
    dag.write_text(f"SPOOL = {str(spool)!r}\n" + COMMAND_SENSORS)
    (result,) = airflow.translate(airflow.read_paths([dag]), TranslateContext()).results
    assert result.workflow is not None, result.diagnostics
    codes = [d.code for d in result.diagnostics]
    assert codes.count("PGD271") == 3 and "PGD311" not in codes, result.diagnostics
    tables.execute("SELECT pgdurable.grant_code('alice', 'command:bash')")
    tables.execute("SELECT pgdurable.grant_code('alice', 'command:python3')")
    instance = wf.start(encode(result.workflow.body))
    programs = [os.path.realpath(shutil.which(p) or p) for p in ("bash", "python3")]
    code_root = tmp_path / "code"
    code_root.mkdir()
    background_worker(code=CodeConfig.build([str(code_root)], allow_programs=programs))
    pokes = spool / "pokes"
    wait_for(
        lambda: pokes.exists() and len(pokes.read_text().split()) >= 2,
        timeout=60,
        what="two pokes",
    )
    (spool / "flag").write_text("wait")
    (spool / "in" / "notes.txt").write_text("not yet")  # no .csv: still false
    wait_for(lambda: "after never" in log(tables), timeout=60, what="the skipped sensor")
    assert wf.status(instance) == "running" and "done" not in log(tables)
    (spool / "flag").write_text("go")
    (spool / "in" / "orders.csv").write_text("id\n1\n")
    wf.wait_status(instance, "completed", timeout=60)
    assert sorted(log(tables)) == ["after never", "done"]


def test_wait_sensor_sleeps_durably_from_the_task_start(wf, tables, tmp_path):
    """3.x WaitSensor: time_to_wait=timedelta(seconds=2) waits 2 s between the rows
    before and after it; an int is minutes (time_to_wait=2: 120 s)."""
    head = (
        "from datetime import timedelta\n"
        "from airflow.sdk import DAG\n"
        "from airflow.providers.standard.sensors.time_delta import WaitSensor\n"
        "from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator as Q\n"
        'with DAG("waits", schedule=None):\n'
    )
    minutes = tmp_path / "minutes.py"
    minutes.write_text(head + '    WaitSensor(task_id="minutes", time_to_wait=2)\n')
    (result,) = airflow.translate(airflow.read_paths([minutes]), TranslateContext()).results
    assert [n.seconds for n in m.walk(result.workflow.body) if isinstance(n, m.Sleep)] == [120]
    dag = tmp_path / "waits.py"
    dag.write_text(
        head + "    (\n"
        "        Q(task_id='before', sql=\"INSERT INTO log VALUES ('before')\")\n"
        "        >> WaitSensor(task_id='pause', time_to_wait=timedelta(seconds=2))\n"
        "        >> Q(task_id='after', sql=\"INSERT INTO log VALUES ('after')\")\n"
        "    )\n"
    )
    (result,) = airflow.translate(airflow.read_paths([dag]), TranslateContext()).results
    assert not [d for d in result.diagnostics if d.code == "PGD311"]
    instance = wf.start(encode(result.workflow.body))
    wf.run()
    assert wf.status(instance) == "completed", wf.nodes(instance)
    gap = tables.value(
        "SELECT extract(epoch FROM max(at) - min(at)) FROM log WHERE v IN ('before', 'after')"
    )
    assert log(tables) == ["before", "after"] and 2 <= gap < 10


@pytest.mark.parametrize("generation", [2, 3])
@pytest.mark.parametrize(
    ("start", "expected"),
    [
        ("2024-06-01 10:00:00+00", ["now"]),
        # 23:30 + 1 h is 00:30: 2.x compares times of day (23:30 > 00:30), 3.x puts
        # 00:30 on the start's date (already past): both go on at once, as in Airflow
        ("2024-06-01 23:30:00+00", ["later", "now"]),
    ],
)
def test_time_sensor_targets_computed_at_parse_time(
    wf, tables, tmp_path, generation, start, expected
):
    """The task's start (the loop's first step) and the poke clock are pinned: the
    clock one second after the start; the loop's timeout runs on the real clock."""
    source = (DAGS / "s4_parse_time_sensor.py").read_text()
    if generation == 3:
        source = source.replace("from airflow import DAG", "from airflow.sdk import DAG").replace(
            "airflow.sensors.time_sensor", "airflow.providers.standard.sensors.time"
        )
    dag = tmp_path / "s4_parse_time_sensor.py"
    dag.write_text(source)
    (result,) = airflow.translate(airflow.read_paths([dag]), TranslateContext()).results
    assert [d.code for d in result.diagnostics if d.code == "PGD284"] == ["PGD284"] * 2
    graph = encode(result.workflow.body)
    assert graph.count("SELECT now() AS started") == 2
    graph = graph.replace("SELECT now() AS started", f"SELECT timestamptz '{start}' AS started")
    clock = f"(timestamptz '{start}' + interval '1 second')"
    instance = wf.start(graph.replace("statement_timestamp()", clock))
    wf.run()
    assert wf.status(instance) == "completed", wf.nodes(instance)
    assert sorted(log(tables)) == expected
