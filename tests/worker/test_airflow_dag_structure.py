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
