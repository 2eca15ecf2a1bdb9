"""Execution tests: translated DAGs run on the worker and leave the data a
correct Airflow run would leave.

Each test translates one DAG file of fixtures/airflow/dags (schedule None, so
the workflow is exactly one DAG run), starts it as an ordinary role, runs a
worker until idle and compares the tables and the run's outcome with what
Airflow's documented semantics give (SOURCES Part 2 §4): trigger rules over
direct upstream states, skips spreading through all_success, a failed SQL
task rolling back as a whole, and the DAG run failing when a leaf ends failed
or upstream_failed. The expectations are reasoned from those rules, not
copied from our output.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pgdurable.model import encode
from pgdurable.translators import airflow
from pgdurable.translators.base import TranslateContext

DAGS = Path(__file__).resolve().parents[2] / "fixtures" / "airflow" / "dags"


def workflow_of(name: str):
    files = airflow.read_paths([DAGS / f"{name}.py"])
    batch = airflow.translate(files, TranslateContext())
    (result,) = batch.results
    assert result.workflow is not None, result.diagnostics
    return result.workflow


@pytest.fixture
def tables(database, alice):
    database.execute("CREATE TABLE t (x int)")
    database.execute("CREATE TABLE log (v text, at timestamptz DEFAULT clock_timestamp())")
    database.execute("CREATE TABLE config (flag text)")
    database.execute("GRANT ALL ON t, log, config TO alice")
    return database


def run_dag(wf, name: str) -> str:
    instance = wf.start(encode(workflow_of(name).body))
    wf.run()
    return instance


def log(database) -> list[str]:
    return [r[0] for r in database.execute("SELECT v FROM log ORDER BY at, v")]


def xs(database) -> list[int]:
    return [r[0] for r in database.execute("SELECT x FROM t ORDER BY x")]


def test_linear_chain_runs_in_order(wf, tables):
    instance = run_dag(wf, "e01_linear")
    assert wf.status(instance) == "completed"
    assert xs(tables) == [1, 20]


def test_fan_out_then_fan_in(wf, tables):
    instance = run_dag(wf, "e02_fanout")
    assert wf.status(instance) == "completed"
    assert xs(tables) == [0, 1, 2]
    assert log(tables) == ["count=3"]


def test_failed_task_rolls_back_and_all_done_cleanup_runs(wf, tables):
    instance = run_dag(wf, "e03_all_done_cleanup")
    # load fails (division by zero in its 2nd statement): its 1st insert is rolled back;
    # transform is upstream_failed; cleanup (all_done) runs and is the only leaf: success.
    assert xs(tables) == []
    assert log(tables) == ["cleanup"]
    assert wf.status(instance) == "completed"


def test_one_failed_alert_runs_and_the_dag_run_fails(wf, tables):
    instance = run_dag(wf, "e04_one_failed_alert")
    assert log(tables) == ["alert"]  # publish is upstream_failed
    assert wf.status(instance) == "failed"
    assert "publish=upstream_failed" in wf.output(instance)


@pytest.mark.parametrize(
    ("flag", "expected"), [("true", ["yes", "report"]), ("no", ["no", "report"])]
)
def test_branch_sql_follows_one_side_and_the_join_runs(wf, tables, flag, expected):
    tables.execute("INSERT INTO config VALUES (%s)", [flag])
    instance = run_dag(wf, "e05_branch_sql")
    assert wf.status(instance) == "completed"
    assert log(tables) == expected


def test_branch_sql_with_an_unreadable_value_fails_the_run(wf, tables):
    tables.execute("INSERT INTO config VALUES ('maybe')")
    instance = run_dag(wf, "e05_branch_sql")
    assert wf.status(instance) == "failed"
    assert log(tables) == []


def test_skip_spreads_through_all_success_only(wf, tables):
    instance = run_dag(wf, "e06_skip_propagation")
    # branch returns 'no': a is skipped, so b and strict are skipped (all_success);
    # done (all_done) and tolerant (none_failed) run; other is followed.
    assert sorted(log(tables)) == ["done", "other", "tolerant"]
    assert wf.status(instance) == "completed"


def test_failing_check_stops_the_load_but_not_all_done(wf, tables):
    instance = run_dag(wf, "e07_check_fail")
    assert log(tables) == ["notice"]  # count(*) = 0 is falsy: check fails, load upstream_failed
    assert wf.status(instance) == "completed"  # the only leaf (notice) succeeded


def test_passing_check_runs_everything(wf, tables):
    tables.execute("INSERT INTO t VALUES (3)")
    instance = run_dag(wf, "e07_check_fail")
    assert log(tables) == ["load", "notice"]
    assert wf.status(instance) == "completed"


@pytest.mark.parametrize(("rows", "passes"), [([50, 55], True), ([50, 70], False)])
def test_value_and_threshold_checks(wf, tables, rows, passes):
    for x in rows:
        tables.execute("INSERT INTO t VALUES (%s)", [x])
    instance = run_dag(wf, "e08_value_threshold")
    # sum 105 is within 100 +- 10%; 120 is not.
    assert wf.status(instance) == ("completed" if passes else "failed")
    assert log(tables) == (["ok"] if passes else [])


def test_hook_task_and_xcom_pull(wf, tables):
    instance = run_dag(wf, "e09_xcom_hook")
    assert wf.status(instance) == "completed"
    assert log(tables) == ["top=42"]


def test_short_circuit_skips_all_downstream_even_all_done(wf, tables):
    instance = run_dag(wf, "e10_short_circuit")
    assert log(tables) == ["before"]
    assert wf.status(instance) == "completed"


def test_mixed_rules_after_one_failure(wf, tables):
    instance = run_dag(wf, "e11_mixed_rules")
    # good succeeds, bad fails: one_success and none_skipped run, all_failed is
    # skipped, strict (all_success) is upstream_failed, a leaf: the run fails.
    assert sorted(log(tables)) == ["none_skipped", "one_success"]
    assert xs(tables) == [1]
    assert wf.status(instance) == "failed"


def test_retried_failure_is_caught_by_pgdurable_try(wf, tables):
    tables.execute("CREATE SEQUENCE attempts")
    tables.execute("GRANT ALL ON SEQUENCE attempts TO alice")
    instance = run_dag(wf, "e12_retry_capture")
    wf.wait_status(instance, "completed")  # the only leaf (all_done) succeeded
    assert tables.value("SELECT last_value FROM attempts") == 2  # retries=1: two attempts
    assert log(tables) == ["after"]
