"""Dataset/Asset schedules on the worker: a DAG runs once every asset it waits for
was updated by a producing task (Airflow's rule), and several updates of one asset
before that run count once."""

from __future__ import annotations

from pgdurable.model import encode
from pgdurable.testing import wait_for
from pgdurable.translators import airflow
from pgdurable.translators.airflow import assets
from pgdurable.translators.base import TranslateContext

DAGS = """
import pendulum
from airflow import DAG, Dataset
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

ORDERS = Dataset("postgres://warehouse/public/orders")
CUSTOMERS = Dataset("postgres://warehouse/public/customers")

with DAG("load_orders", schedule=None, start_date=pendulum.datetime(2024, 1, 1)):
    SQLExecuteQueryOperator(
        task_id="load", conn_id="postgres_default", sql="INSERT INTO log VALUES ('orders')",
        outlets=[ORDERS],
    )

with DAG("load_customers", schedule=None, start_date=pendulum.datetime(2024, 1, 1)):
    SQLExecuteQueryOperator(
        task_id="load", conn_id="postgres_default", sql="INSERT INTO log VALUES ('customers')",
        outlets=[CUSTOMERS],
    )

with DAG("report", schedule=[ORDERS, CUSTOMERS], start_date=pendulum.datetime(2024, 1, 1)):
    SQLExecuteQueryOperator(
        task_id="build", conn_id="postgres_default", sql="INSERT INTO log VALUES ('report')"
    )
"""


def test_a_dag_runs_when_all_its_datasets_were_updated(
    database, wf, alice, tmp_path, background_worker
):
    dag_file = tmp_path / "warehouse.py"
    dag_file.write_text(DAGS)
    batch = airflow.translate(
        airflow.read_paths([dag_file]), TranslateContext(default_username="alice")
    )
    results = {r.name: r for r in batch.results}
    report = results["report"]
    assert str(report.fidelity) == "exact", report.diagnostics
    assert "PGD278" in {d.code for d in report.diagnostics}
    database.execute("CREATE TABLE log (v text, at timestamptz DEFAULT clock_timestamp())")
    database.execute("GRANT ALL ON log TO alice")

    def log() -> list[str]:
        return [r[0] for r in database.execute("SELECT v FROM log ORDER BY at")]

    def pending() -> list[str]:
        return [
            r[0]
            for r in database.execute(
                "SELECT name FROM pgdurable.signals WHERE instance_id = %s ORDER BY seq", [consumer]
            )
        ]

    def produce(dag_id: str) -> None:
        instance = wf.start(encode(results[dag_id].workflow.body))
        wf.wait_status(instance, "completed", timeout=30)

    consumer = wf.start(encode(report.workflow.body))

    def waiting() -> int:
        """The consumer's asset waits now running (the drains have a timeout)."""
        return database.value(
            "SELECT count(*) FROM df.nodes WHERE instance_id = %s AND node_type = 'SIGNAL'"
            " AND status = 'running' AND query::jsonb ->> 'timeout_seconds' IS NULL",
            [consumer],
        )

    background_worker()
    wait_for(lambda: waiting() == 2, timeout=30)
    orders = "asset:postgres://warehouse/public/orders"
    produce("load_orders")  # taken by the orders wait
    wait_for(lambda: waiting() == 1, timeout=30)
    produce("load_orders")  # pending
    produce("load_orders")  # collapsed into the pending one
    assert pending() == [orders]
    assert log() == ["orders"] * 3
    produce("load_customers")
    wait_for(lambda: log().count("report") == 1, timeout=30)
    # the run took the pending update with it: the next one needs fresh updates of both
    wait_for(lambda: waiting() == 2, timeout=30)
    assert pending() == [] and log() == ["orders"] * 3 + ["customers", "report"]
    produce("load_customers")
    produce("load_orders")
    wait_for(lambda: log().count("report") == 2, timeout=30)
    database.execute("SELECT df.cancel(%s)", [consumer])


HOSTILE = "s3://lake/it's\n$$ */ orders"
ELSEWHERE = f"""
import pendulum
from airflow.sdk import DAG, Asset
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

RAW = Asset({HOSTILE!r})
PRICES = Asset("prices")
FX = Asset("fx")

with DAG("report", schedule=RAW & (PRICES | FX), start_date=pendulum.datetime(2024, 1, 1)):
    SQLExecuteQueryOperator(
        task_id="build", conn_id="postgres_default", sql="INSERT INTO log VALUES ('report')"
    )
"""


def test_assets_nobody_updates_here_wait_for_the_event_a_person_emits(
    database, wf, alice, tmp_path, background_worker
):
    """No producer among the translated DAGs: the consumer still waits, as Airflow
    waits for events from another folder or the REST API, with Airflow's expression
    rule (`&` all, `|` any); the statement the diagnostic gives emits the event."""
    dag_file = tmp_path / "report.py"
    dag_file.write_text(ELSEWHERE)
    (report,) = airflow.translate(
        airflow.read_paths([dag_file]), TranslateContext(default_username="alice")
    ).results
    assert str(report.fidelity) == "approximate", report.diagnostics
    (problem,) = [d for d in report.diagnostics if d.code == "PGD295"]
    assert "no producer among the translated DAGs" in problem.message
    assert report.workflow is not None and report.workflow.start is not False
    statements = {key: assets.emit_sql(key) for key in (HOSTILE, "prices", "fx")}
    for statement in statements.values():
        assert statement in problem.message and "\n" not in statement.replace(HOSTILE, "")
    database.execute("CREATE TABLE log (v text, at timestamptz DEFAULT clock_timestamp())")
    database.execute("GRANT ALL ON log TO alice")

    def runs() -> int:
        return database.value("SELECT count(*) FROM log WHERE v = 'report'")

    def waiting(name: str) -> int:
        return database.value(
            "SELECT count(*) FROM df.nodes WHERE instance_id = %s AND node_type = 'SIGNAL'"
            " AND status = 'running' AND query::jsonb ->> 'timeout_seconds' IS NULL"
            " AND query::jsonb ->> 'signal_name' = %s",
            [consumer, "asset:" + name],
        )

    def emit(key: str) -> int:
        return database.value(statements[key], user=alice)

    consumer = wf.start(encode(report.workflow.body))
    background_worker()
    wait_for(lambda: waiting(HOSTILE) == 1 and waiting("prices") == 1, timeout=30)
    assert emit("fx") == 1  # one of PRICES | FX: not the RAW part yet
    wait_for(lambda: waiting(HOSTILE) == 1 and waiting("fx") == 0, timeout=30)
    assert runs() == 0
    assert emit(HOSTILE) == 1
    wait_for(lambda: runs() == 1, timeout=30)
    # the next run needs both sides again
    wait_for(lambda: waiting(HOSTILE) == 1 and waiting("prices") == 1, timeout=30)
    assert emit(HOSTILE) == 1  # taken by the wait
    wait_for(lambda: waiting(HOSTILE) == 0, timeout=30)
    assert emit(HOSTILE) == 1  # pending
    assert emit(HOSTILE) == 0  # several updates count once
    assert runs() == 1
    assert emit("prices") == 1
    wait_for(lambda: runs() == 2, timeout=30)
    database.execute("SELECT df.cancel(%s)", [consumer])


def test_an_asset_watcher_stays_manual_naming_it(tmp_path):
    dag_file = tmp_path / "watch.py"
    dag_file.write_text(
        """
from airflow.sdk import DAG, Asset, AssetWatcher, task
from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

ORDERS = Asset("orders", watchers=[
    AssetWatcher(name="orders_queue", trigger=MessageQueueTrigger(queue="sqs://orders"))])

with DAG("watch", schedule=[ORDERS]):
    @task
    def hello():
        return 1
    hello()
"""
    )
    (item,) = airflow.translate(airflow.read_paths([dag_file]), TranslateContext()).results
    assert str(item.fidelity) == "manual"
    (problem,) = [d for d in item.diagnostics if d.code == "PGD355"]
    assert "AssetWatcher" in problem.message and "MessageQueueTrigger" in problem.message
    assert "'orders'" in problem.message and assets.emit_sql("orders") in problem.message


TIMETABLES = """
import pendulum
from airflow.sdk import DAG
from airflow.timetables.trigger import MultipleCronTriggerTimetable
from airflow.timetables.events import EventsTimetable
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("berlin", schedule=MultipleCronTriggerTimetable("30 6 * * 1-5", "0 18 * * *",
         timezone="Europe/Berlin"), start_date=pendulum.datetime(2024, 1, 1)):
    EmptyOperator(task_id="noop")

with DAG("launch", schedule=EventsTimetable(event_dates=[pendulum.datetime(2031, 3, 1, 8)]),
         start_date=pendulum.datetime(2024, 1, 1)):
    EmptyOperator(task_id="noop")
"""


def test_timetable_conditions_are_the_local_time_and_the_instant(database, tmp_path):
    """The conditions a timetable translation adds, evaluated by PostgreSQL at chosen times."""
    from pgdurable import model as m

    dag_file = tmp_path / "timetables.py"
    dag_file.write_text(TIMETABLES)
    results = {
        r.name: r
        for r in airflow.translate(
            airflow.read_paths([dag_file]), TranslateContext(default_username="alice")
        ).results
    }

    def conditions(name: str) -> list[str]:
        body = results[name].workflow.body
        return [
            n.condition.query
            for n in m.walk(body)
            if isinstance(n, m.If)
            and isinstance(n.condition, m.Sql)
            and "dag_run" not in n.condition.query
        ]

    def at(query: str, instant: str) -> bool:
        return database.value(query.replace("now()", f"timestamptz '{instant}'"))

    (local,) = conditions("berlin")
    assert at(local, "2025-01-06 05:30+00")  # Monday 06:30 in Berlin (winter, UTC+1)
    assert at(local, "2025-07-07 04:30+00")  # Monday 06:30 in Berlin (summer, UTC+2)
    assert not at(local, "2025-07-07 05:30+00")
    assert not at(local, "2025-01-05 05:30+00")  # Sunday
    assert at(local, "2025-01-05 17:00+00")  # 18:00 any day
    (not_yet,) = set(conditions("launch"))
    assert at(not_yet, "2031-03-01 07:59+00") and not at(not_yet, "2031-03-01 08:00+00")


def test_a_producer_of_a_hostile_uri_is_found(tmp_path):
    """A URI with a quote and a line break is dollar-quoted in the producer's step; the
    batch still sees that it signals the consumer (exact, no PGD295)."""
    producer = ELSEWHERE.replace(
        'with DAG("report"',
        'with DAG("load", schedule=None):\n'
        '    SQLExecuteQueryOperator(task_id="t", conn_id="postgres_default", sql="SELECT 1",\n'
        "                            outlets=[RAW, PRICES, FX])\n\n"
        'with DAG("report"',
    )
    dag_file = tmp_path / "both.py"
    dag_file.write_text(producer)
    results = {
        r.name: r
        for r in airflow.translate(
            airflow.read_paths([dag_file]), TranslateContext(default_username="alice")
        ).results
    }
    assert assets.signalled(results["load"].workflow.body) == {HOSTILE, "prices", "fx"}
    assert str(results["report"].fidelity) == "exact", results["report"].diagnostics
