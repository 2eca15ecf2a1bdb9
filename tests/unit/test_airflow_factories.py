"""Task factories: helper functions of the DAG file that build operators pass on
what their callers give them, or the reader says it cannot see it."""

from __future__ import annotations

from pgdurable.translators.airflow.visitor import read

HEAD = """
from airflow import DAG
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator as Q
"""


def _tasks(body: str):
    (dag,) = read("f.py", HEAD + body).dags
    return dict(dag.tasks)


def test_keywords_collected_by_a_factory_reach_the_operator():
    tasks = _tasks(
        "def note(task_id, *args, **kwargs):\n"
        "    return Q(task_id=task_id, sql='SELECT 1', conn_id='c', **kwargs)\n"
        "with DAG('k', schedule=None):\n"
        "    a = note('a')\n"
        "    b = note('b', trigger_rule='all_done', retries=2)\n"
        "    a >> b\n"
    )
    assert tasks["b"].args.get("trigger_rule") == "all_done"
    assert tasks["b"].args.get("retries") == 2
    assert "trigger_rule" not in tasks["a"].args


def test_unseen_keywords_make_the_task_unreadable_not_silently_default():
    (dag,) = read(
        "f.py",
        HEAD + "import os\n"
        "with DAG('k', schedule=None):\n"
        "    Q(task_id='a', sql='SELECT 1', conn_id='c', **os.environ.get_options())\n",
    ).dags
    assert not dag.tasks
    ((code, message, _ref),) = dag.problems
    assert code == "PGD315" and "**os.environ.get_options()" in message
