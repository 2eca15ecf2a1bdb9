"""Airflow SQL with explicit BEGIN/COMMIT is split into steps (df.start refuses
transaction control inside one step, issue 16 §7)."""

from __future__ import annotations

from pgdurable.translators import airflow
from pgdurable.translators.base import TranslateContext
from pgdurable.worker.step_text import transaction_control

DAG = """
from datetime import datetime

from airflow import DAG
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

with DAG("explicit_commit", start_date=datetime(2023, 1, 1), schedule=None) as dag:
    SQLExecuteQueryOperator(
        task_id="load",
        sql="BEGIN; INSERT INTO t VALUES (1); COMMIT; INSERT INTO t VALUES (2); INSERT INTO t VALUES (3)",
    )
    SQLExecuteQueryOperator(task_id="listed", sql=["INSERT INTO t VALUES (4)", "COMMIT"])
"""


def _sql_texts(node) -> list[str]:
    if type(node).__name__ == "Sql":
        return [node.query]
    found = []
    for value in vars(node).values():
        children = value if isinstance(value, tuple) else (value,)
        found += [t for c in children if hasattr(c, "__dict__") for t in _sql_texts(c)]
    return found


def test_explicit_commit_splits_the_task_into_steps(tmp_path):
    path = tmp_path / "explicit_commit.py"
    path.write_text(DAG)
    batch = airflow.translate(airflow.read_paths([path]), TranslateContext(default_username="etl"))
    (result,) = batch.results
    texts = _sql_texts(result.workflow.body)
    assert [t for t in texts if "INSERT" in t] == [
        "INSERT INTO t VALUES (1)",
        "INSERT INTO t VALUES (2);\nINSERT INTO t VALUES (3)",
        "INSERT INTO t VALUES (4)",
    ]
    assert not any(transaction_control(t) for t in texts)
    assert sum(d.code == "PGD209" for d in result.diagnostics) == 2
