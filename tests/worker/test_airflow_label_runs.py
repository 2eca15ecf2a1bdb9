"""Issue-18 Airflow label fixes run on the worker: a mapped task's instances all run
(in a join), and a schedule past its end_date ends (a df.break through the run's
keep-alive pgdurable.try), running nothing."""

from __future__ import annotations

import json

from pgdurable.model import encode
from pgdurable.translators import airflow
from pgdurable.translators.base import TranslateContext


def _body(tmp_path, text: str) -> dict:
    path = tmp_path / "dag.py"
    path.write_text(text)
    (result,) = airflow.translate(airflow.read_paths([path]), TranslateContext()).results
    assert result.workflow is not None, result.diagnostics
    return json.loads(encode(result.workflow.body))


def _no_waiting(graph: dict) -> dict:
    """The schedule's wait made instant (a real tick would take up to a minute)."""
    if graph.get("node_type") == "WAIT_SCHEDULE":
        return {"node_type": "SLEEP", "query": "0"}
    return {
        k: _no_waiting(v)
        if isinstance(v, dict)
        else [_no_waiting(x) for x in v]
        if k == "extra_nodes" and v
        else v
        for k, v in graph.items()
    }


def test_every_mapped_instance_runs(wf, database, alice, tmp_path):
    database.execute("CREATE TABLE hits (region text, n int)")
    database.execute("GRANT ALL ON hits TO alice")
    graph = _body(
        tmp_path,
        "from airflow.sdk import DAG\n"
        "from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator\n"
        "with DAG('fan', schedule=None):\n"
        "    SQLExecuteQueryOperator.partial(task_id='load', conn_id='postgres_default',\n"
        "        sql='INSERT INTO hits VALUES (%(region)s, %(n)s)').expand(\n"
        "        parameters=[{'region': 'eu', 'n': 1}, {'region': 'us', 'n': 2}])\n",
    )
    instance = wf.start(json.dumps(graph))
    wf.run()
    assert wf.status(instance) == "completed"
    assert database.execute("SELECT region, n FROM hits ORDER BY region") == [
        ("eu", 1),
        ("us", 2),
    ]


def test_a_schedule_past_its_end_date_ends_without_running(wf, database, alice, tmp_path):
    database.execute("CREATE TABLE ticks (at timestamptz DEFAULT now())")
    database.execute("GRANT ALL ON ticks TO alice")
    graph = _body(
        tmp_path,
        "from datetime import datetime\n"
        "from airflow import DAG\n"
        "from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator\n"
        "with DAG('ended', schedule='* * * * *', start_date=datetime(2020, 1, 1),\n"
        "         end_date=datetime(2020, 2, 1), catchup=False):\n"
        "    SQLExecuteQueryOperator(task_id='tick', conn_id='postgres_default',\n"
        "        sql='INSERT INTO ticks DEFAULT VALUES')\n",
    )
    assert graph["node_type"] == "LOOP"
    instance = wf.start(json.dumps(_no_waiting(graph)))
    wf.run()
    assert wf.status(instance) == "completed"
    assert database.value("SELECT count(*) FROM ticks") == 0
