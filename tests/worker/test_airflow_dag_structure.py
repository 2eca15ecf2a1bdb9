"""DAG-level structure on the worker: what the file decides statically
(``if TYPE_CHECKING``), setup/teardown tasks and tasks that look at other DAGs.
Each translated DAG runs on the real worker; the tables show which tasks ran."""

from __future__ import annotations

import textwrap

import pytest

from pgdurable.model import encode
from pgdurable.translators import airflow
from pgdurable.translators.base import TranslateContext


def translate(tmp_path, text: str, name: str = "dag.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    batch = airflow.translate(
        airflow.read_paths([path]), TranslateContext(default_username="alice")
    )
    return {r.name: r for r in batch.results}


@pytest.fixture
def log(database, alice):
    database.execute("CREATE TABLE log (v text, at timestamptz DEFAULT clock_timestamp())")
    database.execute("GRANT ALL ON log TO alice")
    return lambda: [r[0] for r in database.execute("SELECT v FROM log ORDER BY at, v")]


TYPE_CHECKED = """
    from __future__ import annotations

    import typing
    from typing import TYPE_CHECKING, TYPE_CHECKING as CHECKING

    import pendulum
    from airflow.sdk import DAG
    from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

    if TYPE_CHECKING:
        from airflow.sdk import Context
        STEP = "typed"
    else:
        STEP = "run"

    def insert(v):
        return f"INSERT INTO log VALUES ('{v}')"

    with DAG("checked", schedule=None, start_date=pendulum.datetime(2024, 1, 1)):
        first = SQLExecuteQueryOperator(task_id="first", conn_id="postgres_default", sql=insert(STEP))
        if not CHECKING:
            second = SQLExecuteQueryOperator(task_id="second", conn_id="postgres_default", sql=insert("not"))
        if typing.TYPE_CHECKING:
            SQLExecuteQueryOperator(task_id="never", conn_id="postgres_default", sql=insert("never"))
        first >> second
"""


def test_type_checking_is_false_when_airflow_parses_the_file(wf, log, tmp_path):
    (result,) = translate(tmp_path, TYPE_CHECKED).values()
    assert str(result.fidelity) == "exact", result.diagnostics
    assert "PGD315" not in {d.code for d in result.diagnostics}
    instance = wf.start(encode(result.workflow.body))
    wf.run()
    assert wf.status(instance) == "completed"
    assert log() == ["run", "not"]


SETUP_TEARDOWN = """
    import pendulum
    from airflow.sdk import DAG
    from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

    def step(name):
        # fails when the config table holds 'fail <name>'
        return (
            f"INSERT INTO log VALUES ('{name}');"
            f" SELECT 1 / (1 - (SELECT count(*) FROM config WHERE flag = 'fail {name}'))"
        )

    with DAG("cluster", schedule=None, start_date=pendulum.datetime(2024, 1, 1)):
        create = SQLExecuteQueryOperator(
            task_id="create", conn_id="postgres_default", sql=step("create")
        ).as_setup()
        work = SQLExecuteQueryOperator(task_id="work", conn_id="postgres_default", sql=step("work"))
        delete = SQLExecuteQueryOperator(
            task_id="delete", conn_id="postgres_default", sql=step("delete")
        ).as_teardown(setups=create, on_failure_fail_dagrun=FAIL_DAGRUN)
        create >> work >> delete
        with delete:
            report = SQLExecuteQueryOperator(
                task_id="report", conn_id="postgres_default", sql=step("report")
            )
"""


@pytest.fixture
def config(database, alice):
    database.execute("CREATE TABLE config (flag text)")
    database.execute("GRANT ALL ON config TO alice")
    return lambda *flags: [database.execute("INSERT INTO config VALUES (%s)", [f]) for f in flags]


@pytest.mark.parametrize(
    ("fails", "fail_dagrun", "ran", "status"),
    [
        ((), False, {"create", "work", "report", "delete"}, "completed"),
        # the teardown runs after a failed work task, and the DAG run fails (work is a leaf)
        (("work",), False, {"create", "report", "delete"}, "failed"),
        # a failed teardown does not fail the DAG run ...
        (("delete",), False, {"create", "work", "report"}, "completed"),
        # ... unless on_failure_fail_dagrun=True
        (("delete",), True, {"create", "work", "report"}, "failed"),
        # no setup succeeded: neither the work nor the teardown runs
        (("create",), False, set(), "failed"),
    ],
)
def test_setup_and_teardown_follow_airflows_rules(
    wf, log, config, tmp_path, fails, fail_dagrun, ran, status
):
    (result,) = translate(
        tmp_path, SETUP_TEARDOWN.replace("FAIL_DAGRUN", str(fail_dagrun))
    ).values()
    assert str(result.fidelity) == "exact", result.diagnostics
    config(*(f"fail {f}" for f in fails))
    instance = wf.start(encode(result.workflow.body))
    wf.run()
    assert wf.status(instance) == status, wf.output(instance)
    assert set(log()) == ran  # a failed task's insert is rolled back with it
    order = log()
    if "delete" in order:  # `with delete:` put report between the setup and the teardown
        assert order.index("delete") > order.index("report") > order.index("create")


def test_a_setup_skipped_by_a_branch_skips_its_teardown_and_tolerant_rules_are_flagged(tmp_path):
    (result,) = translate(
        tmp_path,
        SETUP_TEARDOWN.replace("FAIL_DAGRUN", "False").replace(
            'sql=step("report")', 'sql=step("report"), trigger_rule="all_done"'
        ),
    ).values()
    assert str(result.fidelity) == "approximate"
    (note,) = [d for d in result.diagnostics if d.code == "PGD296"]
    assert "'report'" in note.message and "'create'" in note.message


TASKFLOW_SETUP = """
    import pendulum
    from airflow.sdk import DAG, setup, task, teardown
    from airflow.providers.postgres.hooks.postgres import PostgresHook


    def note(text):
        PostgresHook(postgres_conn_id="postgres_default").run(
            "INSERT INTO log VALUES (%s)", parameters=(text,)
        )


    with DAG("taskflow_cluster", schedule=None, start_date=pendulum.datetime(2024, 1, 1)):

        @setup
        def create_cluster():
            note("create")
            return "c-1"

        @task
        def work():
            note("work")
            raise ValueError("the work fails")

        @teardown
        def delete_cluster(cluster_id):
            note("delete " + cluster_id)

        with delete_cluster(create_cluster()):
            work()
"""


def test_taskflow_setup_teardown_in_a_with_block_runs_the_teardown_after_failed_work(
    wf, database, log, tmp_path
):
    from pgdurable import pipeline
    from pgdurable.worker.code_roots import CodeConfig

    dag_file = tmp_path / "taskflow_cluster.py"
    dag_file.write_text(textwrap.dedent(TASKFLOW_SETUP))
    out = tmp_path / "out"
    (result,) = pipeline.import_airflow(
        paths=[dag_file], out_dir=out, default_username="alice"
    ).results
    assert str(result.fidelity) == "exact", result.diagnostics
    database.execute(
        "SELECT pgdurable.grant_code('alice', %s)",
        ["python:airflow_tasks.taskflow_cluster:*"],
    )
    instance = wf.start(encode(result.workflow.body))
    wf.run(code=CodeConfig.build([str(out)]))
    # `with delete_cluster(create_cluster()):` put work between them; the teardown gets
    # the setup's return value and runs although work failed; work fails the DAG run
    assert log() == ["create", "work", "delete c-1"]  # the hook commits, as in Airflow
    assert wf.status(instance) == "failed"
    assert "work=failed" in wf.output(instance)


TRIGGER_AND_WAIT = """
    import pendulum
    from airflow.sdk import DAG
    from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    with DAG("load_o'hara", schedule=None, start_date=pendulum.datetime(2024, 1, 1)):
        SQLExecuteQueryOperator(
            task_id="load", conn_id="postgres_default",
            sql="INSERT INTO log VALUES ('load'); SELECT 1 / (1 - (SELECT count(*) FROM config))",
        )

    with DAG("controller", schedule=None, start_date=pendulum.datetime(2024, 1, 1)):
        TriggerDagRunOperator(
            task_id="run_load", trigger_dag_id="load_o'hara", wait_for_completion=True,
            poke_interval=1, ALLOWED
        ) >> SQLExecuteQueryOperator(
            task_id="after", conn_id="postgres_default", sql="INSERT INTO log VALUES ('after')"
        )
"""


@pytest.mark.parametrize(
    ("allowed", "fail", "status", "ran"),
    [
        ("", False, "completed", ["load", "after"]),
        # the default failed_states=['failed'] fails the waiting task
        ("", True, "failed", []),
        # a failed run in allowed_states but not in failed_states goes on
        ('allowed_states=["success", "failed"], failed_states=[]', True, "completed", ["after"]),
    ],
)
def test_trigger_dag_run_waits_for_the_started_run(
    wf, database, log, config, tmp_path, allowed, fail, status, ran
):
    from pgdurable import apply as applying
    from pgdurable import pipeline

    dag_file = tmp_path / "controller.py"
    dag_file.write_text(textwrap.dedent(TRIGGER_AND_WAIT.replace("ALLOWED", allowed)))
    out = tmp_path / "out"
    report = pipeline.import_airflow(paths=[dag_file], out_dir=out, default_username="alice")
    results = {r.name: r for r in report.results}
    controller = results["controller"]
    assert str(controller.fidelity) == "exact", controller.diagnostics
    with database.connect() as conn:
        applying.apply_directory(out, applying.DatabaseSink(conn))
    database.execute("GRANT USAGE ON SCHEMA airflow_dags TO alice")
    if fail:
        config("fail")
    instance = wf.start(encode(controller.workflow.body))
    wf.run()
    assert wf.status(instance) == status, wf.output(instance)
    assert log() == ran
    if status == "failed":
        assert "load_o'hara failed with failed states failed" in wf.output(instance)


def test_an_external_task_marker_is_a_no_op_step_approximate(wf, log, tmp_path):
    (result,) = translate(
        tmp_path,
        """
        from datetime import datetime
        from airflow import DAG
        from airflow.sensors.external_task import ExternalTaskMarker
        from airflow.providers.postgres.operators.postgres import PostgresOperator

        with DAG("parent", schedule_interval=None, start_date=datetime(2024, 1, 1)):
            PostgresOperator(task_id="load", sql="INSERT INTO log VALUES ('load')") >> (
                ExternalTaskMarker(task_id="mark", external_dag_id="child",
                                   external_task_id="wait_for_load")
            )
        """,
    ).values()
    assert str(result.fidelity) == "approximate", result.diagnostics
    (note,) = [d for d in result.diagnostics if d.code == "PGD297"]
    assert "clearing does not propagate" in note.message and "'wait_for_load'" in note.message
    instance = wf.start(encode(result.workflow.body))
    wf.run()
    assert wf.status(instance) == "completed"
    assert log() == ["load"]


OR_TIME = """
    import pendulum
    from airflow.sdk import DAG, Asset
    from airflow.timetables.assets import AssetOrTimeSchedule
    from airflow.timetables.trigger import CronTriggerTimetable
    from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

    ORDERS = Asset("orders")
    PRICES = Asset("prices")

    with DAG(
        "orders_or_weekly",
        schedule=AssetOrTimeSchedule(
            timetable=CronTriggerTimetable("0 1 * * 3", timezone="UTC"), assets=ORDERS & PRICES
        ),
        start_date=pendulum.datetime(2024, 1, 1),
    ):
        SQLExecuteQueryOperator(
            task_id="report", conn_id="postgres_default",
            sql="INSERT INTO log VALUES ('{{ ts }}')",
        )
"""


def test_asset_or_time_runs_on_the_timetable_and_on_asset_events(
    wf, database, log, tmp_path, background_worker
):
    from pgdurable import model as m
    from pgdurable.testing import wait_for
    from pgdurable.translators.airflow import assets

    (result,) = translate(tmp_path, OR_TIME).values()
    assert str(result.fidelity) == "approximate", result.diagnostics  # PGD295: no producer here
    assert "PGD314" not in {d.code for d in result.diagnostics}  # PGD295: no producer here
    body = result.workflow.body
    assert isinstance(body, m.Join) and len(body.branches) == 2
    assert any(
        isinstance(n, m.WaitForSchedule) and n.cron == "0 1 * * WED"
        for n in m.walk(body.branches[0])
    )
    # the asset loop: both assets (`&`), independent of the weekly tick
    instance = wf.start(encode(body))
    background_worker()

    def waiting() -> int:
        return database.value(
            "SELECT count(*) FROM df.nodes WHERE instance_id = %s AND node_type = 'SIGNAL'"
            " AND status = 'running' AND query::jsonb ->> 'timeout_seconds' IS NULL",
            [instance],
        )

    wait_for(lambda: waiting() == 2, timeout=30)
    before = database.value("SELECT now()")
    assert database.value(assets.emit_sql("orders"), user="alice") == 1
    wait_for(lambda: waiting() == 1, timeout=30)
    assert log() == []
    assert database.value(assets.emit_sql("prices"), user="alice") == 1
    wait_for(lambda: len(log()) == 1, timeout=30)
    # an asset-triggered run's logical date is the time it started, not the last Wednesday tick
    ts = database.value("SELECT %s::timestamptz", [log()[0]])
    assert ts >= before.replace(microsecond=0)
    database.execute("SELECT df.cancel(%s)", [instance])


PARTITIONS = """
    from airflow.sdk import DAG, Asset, PartitionedAssetTimetable, PartitionedAtRuntime
    from airflow.sdk import CronPartitionTimetable, StartOfHourMapper
    from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
    from plugins.workday import AfterWorkdayTimetable

    STATS = Asset("stats")

    def insert(v):
        return SQLExecuteQueryOperator(
            task_id="t", conn_id="postgres_default", sql=f"INSERT INTO log VALUES ('{v}')"
        )

    with DAG("hourly", schedule=CronPartitionTimetable("0 * * * *", timezone="UTC")):
        insert("{{ ds }}")
    with DAG("daily_key", schedule=CronPartitionTimetable(
            "30 6 * * *", timezone="UTC", key_format="%Y/%m/%d 'h'%H")):
        insert("{{ ds }}")
    with DAG("shifted", schedule=CronPartitionTimetable("0 * * * *", timezone="UTC", run_offset=-1)):
        insert("x")
    with DAG("by_region", schedule=PartitionedAtRuntime()):
        insert("region")
    with DAG("combine", schedule=PartitionedAssetTimetable(
            assets=STATS, default_partition_mapper=StartOfHourMapper())):
        insert("x")
    with DAG("workday", schedule=AfterWorkdayTimetable()):
        insert("x")
"""


def test_partitioned_schedules_and_custom_timetables(wf, database, log, tmp_path):
    results = translate(tmp_path, PARTITIONS)
    codes = {name: {d.code for d in r.diagnostics} for name, r in results.items()}
    fidelity = {name: str(r.fidelity) for name, r in results.items()}
    assert fidelity == {
        # both read their interval ({{ ds }}): a tick skipped while a run is going is a
        # lost interval (PGD248), which Airflow would have queued
        "hourly": "approximate",
        "daily_key": "approximate",
        "shifted": "manual",
        "by_region": "approximate",
        "combine": "manual",
        "workday": "manual",
    }, codes
    assert {"PGD298", "PGD248"} <= codes["hourly"] and "PGD356" in codes["shifted"] | codes["combine"]
    assert "PGD299" in codes["by_region"] and "PGD357" in codes["workday"]
    workday = next(d for d in results["workday"].diagnostics if d.code == "PGD357")
    assert "AfterWorkdayTimetable" in workday.message

    def key(name: str, instant: str) -> str:
        from pgdurable import model as m

        (dates,) = [
            n.query
            for n in m.walk(results[name].workflow.body)
            if getattr(n, "name", "") == "dag_run"
        ]
        return database.value(
            "SELECT partition_key FROM ("
            + dates.replace("now()", f"timestamptz '{instant}'")
            + ") AS d"
        )

    # the tick the run belongs to, formatted as Airflow formats the partition date
    assert key("hourly", "2025-03-04 10:17:12+00") == "2025-03-04T10:00:00"
    assert key("daily_key", "2025-03-04 06:31:00+00") == "2025/03/04 'h'06"
    # on demand: the trigger function starts a run, which runs without a key
    instance = wf.start(encode(results["by_region"].workflow.body))
    wf.run()
    assert wf.status(instance) == "completed" and log() == ["region"]


def test_external_task_sensors_and_asset_aliases_stay_manual_saying_what_to_do(tmp_path):
    results = translate(
        tmp_path,
        """
        from datetime import timedelta
        from airflow.sdk import DAG, AssetAlias
        from airflow.providers.standard.sensors.external_task import ExternalTaskSensor

        with DAG("child", schedule="@daily"):
            ExternalTaskSensor(task_id="wait", external_dag_id="parent",
                               external_task_id="load", execution_delta=timedelta(hours=1))
        with DAG("by_alias", schedule=[AssetAlias("new-partitions")]):
            ExternalTaskSensor(task_id="wait", external_dag_id="parent")
        """,
    )
    assert {n: str(r.fidelity) for n, r in results.items()} == {
        "child": "manual",
        "by_alias": "manual",
    }
    (sensor,) = [d for d in results["child"].diagnostics if d.code == "PGD311"]
    assert "'load'" in sensor.message and "'parent'" in sensor.message
    assert "execution_delta" in sensor.message and "outlets=" in sensor.message
    (alias,) = [d for d in results["by_alias"].diagnostics if d.code == "PGD358"]
    assert "'new-partitions'" in alias.message


def test_a_waited_trigger_with_a_logical_date_stays_manual(tmp_path):
    results = translate(
        tmp_path,
        TRIGGER_AND_WAIT.replace("ALLOWED", 'logical_date="{{ logical_date }}"'),
    )
    controller = results["controller"]
    assert str(controller.fidelity) == "manual"
    (problem,) = [d for d in controller.diagnostics if d.code == "PGD311"]
    assert "logical_date is not passed" in problem.message


def test_only_airflows_setup_and_teardown_decorators_mark_tasks():
    from pgdurable.translators.airflow.visitor import read

    (dag,) = read(
        "x.py",
        textwrap.dedent(
            """
            from airflow.sdk import DAG, setup, teardown
            from mylib import setup as my_setup
            with DAG("x", schedule=None):
                @setup
                def a():
                    return 1
                @my_setup
                def b():
                    return 2
                @teardown(on_failure_fail_dagrun=True)
                def c(x):
                    pass
                c.override(task_id="cc")(a())
                b()
            """
        ),
    ).dags
    roles = {t: (task.setup_role, task.fail_dagrun) for t, task in dag.tasks.items()}
    assert roles == {"a": ("setup", False), "cc": ("teardown", True)}
    assert ("a", "cc") in dag.edges
