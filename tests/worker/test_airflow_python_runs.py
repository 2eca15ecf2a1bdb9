"""Translated Airflow Python tasks run end to end (translators/airflow/python_tasks.py).

Each test imports a DAG of fixtures/airflow/dags with ``pipeline.import_airflow``
(so the task modules are written to the output folder exactly as a user gets
them), grants the role the task module's callables, and runs a real worker with
``--code-path`` pointing at that output folder. Expectations come from what the
DAG's code does under Airflow's rules (TaskFlow arguments are the upstream
return values, a branch follows only the ids it returns, a falsy short circuit
skips everything downstream), not from our output.
"""

from __future__ import annotations

import json
from datetime import date

import pytest

from pgdurable import pipeline
from pgdurable.model import encode
from pgdurable.worker.code_roots import CodeConfig

from .test_airflow_runs import DAGS, log

NOW = "(now()) AT TIME ZONE 'UTC'"


@pytest.fixture
def tables(database, alice):
    database.execute("CREATE TABLE t (x int)")
    database.execute("CREATE TABLE log (v text, at timestamptz DEFAULT clock_timestamp())")
    database.execute("GRANT ALL ON t, log TO alice")
    return database


def imported(name: str, out):
    report = pipeline.import_airflow(
        paths=[DAGS / f"{name}.py"], out_dir=out, default_username="alice"
    )
    (result,) = report.results
    assert result.workflow is not None, result.diagnostics
    assert (out / "airflow_tasks" / f"{name}.py").is_file()
    return result


def start_at(wf, result, day: str | None = None) -> str:
    """Start one run; ``day`` pins the run's logical date (as a scheduled tick would)."""
    graph = encode(result.workflow.body)
    assert NOW.replace("'", "\\'") not in graph
    if day is not None:
        assert graph.count(NOW) == 2  # the dag_run step's interval start and end
        graph = graph.replace(NOW, f"(timestamptz '{day} 06:00:00+00') AT TIME ZONE 'UTC'")
    return wf.start(graph)


def grant(database, module: str) -> None:
    database.execute(
        "SELECT pgdurable.grant_code('alice', %s)", [f"python:airflow_tasks.{module}:*"]
    )


@pytest.mark.parametrize(("day", "branch"), [("2024-06-01", "weekend"), ("2024-06-03", "weekday")])
def test_taskflow_xcom_into_sql_and_a_weekday_branch(wf, tables, tmp_path, day, branch):
    out = tmp_path / "out"
    result = imported("py_taskflow_etl", out)
    grant(tables, "py_taskflow_etl")
    instance = start_at(wf, result, day)
    wf.run(code=CodeConfig.build([str(out)]))
    assert wf.status(instance) == "completed", wf.nodes(instance)
    stored, chosen = log(tables)[0], log(tables)[1:]
    # extract: len('north'), len('south') scaled by params.factor 2 -> 20 > the default 10
    assert json.loads(stored) == {"big": True, "day": day, "total": 20}
    assert chosen == [branch]
    assert date.fromisoformat(day).weekday() in ((5, 6) if branch == "weekend" else range(5))


def test_classic_operators_hook_templates_dict_and_short_circuit(wf, tables, tmp_path):
    out = tmp_path / "out"
    result = imported("py_classic_ops", out)
    grant(tables, "py_classic_ops")
    tables.execute("INSERT INTO t VALUES (1), (2), (3)")
    instance = start_at(wf, result, "2024-03-05")
    wf.run(code=CodeConfig.build([str(out)]))
    assert wf.status(instance) == "completed", wf.nodes(instance)
    # report counts t through PostgresHook as alice, pushes rows=3; the gate passes;
    # publish inserts the report's return value and ds through its own hook
    assert log(tables) == ["daily:20240305:3@2024-03-05"]


def test_a_falsy_short_circuit_skips_downstream(wf, tables, tmp_path):
    out = tmp_path / "out"
    result = imported("py_classic_ops", out)
    grant(tables, "py_classic_ops")
    instance = start_at(wf, result, "2024-03-05")
    wf.run(code=CodeConfig.build([str(out)]))
    assert wf.status(instance) == "completed", wf.nodes(instance)
    assert log(tables) == []  # no rows: has_rows is False, publish never runs


def test_the_hook_connects_as_the_instance_role_not_the_worker(wf, tables, tmp_path):
    """The hook's session is the role's own: a table only the worker's superuser may
    read stays unreadable to the task, so its step fails."""
    out = tmp_path / "out"
    result = imported("py_classic_ops", out)
    grant(tables, "py_classic_ops")
    tables.execute("REVOKE ALL ON t FROM alice")
    instance = start_at(wf, result, "2024-03-05")
    wf.run(code=CodeConfig.build([str(out)]))
    assert wf.status(instance) == "failed"
    assert "permission denied for table t" in json.dumps(wf.nodes(instance), default=str)


def test_without_the_grant_the_run_is_refused(wf, tables, tmp_path):
    out = tmp_path / "out"
    result = imported("py_taskflow_etl", out)
    with pytest.raises(Exception, match="grant_code"):
        start_at(wf, result, "2024-06-01")


@pytest.mark.parametrize(
    ("day", "side", "other"),
    [("2024-03-05", "go_right", "go_left"), ("2024-03-04", "go_left", "go_right")],
)
def test_lambdas_isolated_tasks_and_run_time_mapping(wf, tables, tmp_path, day, side, other):
    """py_isolated_mapped: expectations from Airflow's rules. The lambda branch reads
    ds (its last digit odd -> go_right, even -> go_left); the virtualenv callable gets only the
    serializable context (no ti: its default None); the mapped tasks see
    get_nums' [1, 2, 3] at run time (times x3 -> [3, 6, 9], add_10 over that list
    with ti.map_index 0..2), expand_kwargs gives one call per dict."""
    out = tmp_path / "out"
    result = imported("py_isolated_mapped", out)
    grant(tables, "py_isolated_mapped")
    instance = start_at(wf, result, day)
    wf.run(code=CodeConfig.build([str(out)]))
    assert wf.status(instance) == "completed", wf.nodes(instance)
    (stored,) = log(tables)
    times_out, added, pairs, venv_out, in_venv_out, external_out = json.loads(stored)
    assert times_out == [3, 6, 9]
    assert added == [[13, 0], [16, 1], [19, 2]]
    assert pairs == ["x1", "y2"]
    assert json.loads(venv_out) == {"x": 42, "ds": day, "ti": True}
    assert in_venv_out == day.replace("-", "") + "!"
    assert external_out == 6
    returned = [
        row["return_value"]
        for kind, status, value, _ in wf.nodes(instance)
        if kind == "PYTHON" and status == "completed"
        for row in value["rows"]
    ]
    # the branch's row and the chosen task's own (a lambda **ctx returning its task
    # id); the other side was skipped
    assert returned.count(side) == 2 and other not in returned


@pytest.mark.parametrize(("day", "skipped"), [("2024-03-04", False), ("2024-03-05", True)])
def test_operators_defined_in_the_dag_file_run_and_skip(wf, tables, tmp_path, day, skipped):
    """py_file_operators: AddOneOperator gets start()'s 41 through its template field
    (the non-templated label stays as written) and returns 42 and its own task id;
    SkipOnOddDayOperator raises AirflowSkipException on an odd ds, so it and its
    all_success downstream are skipped (a TaskFlow task raising it alike), while
    record (none_failed) still runs and reads None for them, as Airflow's XCom of
    skipped tasks. AddOneOperator.partial(...).expand(value=nums()) builds the
    operator once per value of nums()' [10, 20] and hands record the list."""
    out = tmp_path / "out"
    result = imported("py_file_operators", out)
    grant(tables, "py_file_operators")
    instance = start_at(wf, result, day)
    wf.run(code=CodeConfig.build([str(out)]))
    assert wf.status(instance) == "completed", wf.nodes(instance)
    (stored,) = log(tables)
    added = {"value": 42, "label": "{{ ds }}", "task": 'add-one\'s "op"'}
    mapped = [{"value": n + 1, "label": "m", "task": "mapped_add"} for n in (10, 20)]
    if skipped:
        assert stored == repr([added, None, None, None, mapped])
    else:
        assert stored == repr([added, day, "ran", "ran too", mapped])


def test_outlet_extras_by_yield_and_context_stay_in_the_result_row(wf, tables, tmp_path):
    """Airflow's rules: a generator callable's yielded Metadata updates its asset's
    extras and its return value is the task's; outlet_events[asset].extra sets them;
    test_mode is False outside `airflow tasks test`."""
    out = tmp_path / "out"
    result = imported("py_outlet_extras", out)
    grant(tables, "py_outlet_extras")
    instance = start_at(wf, result, "2024-03-05")
    wf.run(code=CodeConfig.build([str(out)]))
    assert wf.status(instance) == "completed", wf.nodes(instance)
    rows = [
        row
        for kind, status, value, _ in wf.nodes(instance)
        if kind == "PYTHON" and status == "completed"
        for row in value["rows"]
    ]
    uri = "s3://reports/daily.csv"
    assert {
        "return_value": "done",
        "xcom": {},
        "outlet_events": {uri: {"day": "2024-03-05"}},
    } in rows
    key = "py_outlet_extras__by_context__20240305"
    assert {"return_value": [False, key], "xcom": {}, "outlet_events": {uri: {"rows": 3}}} in rows


HOSTILE_VENV_DAG = """
from datetime import datetime
from airflow import DAG
from airflow.operators.python import PythonVirtualenvOperator

def needs_a_package():
    import pgdurable_py19_absent_package
    return pgdurable_py19_absent_package.VALUE

with DAG("hostile_venv", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
    PythonVirtualenvOperator(
        task_id="it's \\"odd\\"\\n*/ $$x", python_callable=needs_a_package,
        requirements=["pgdurable-py19-absent-package"],
    )
"""


def test_a_requirement_missing_on_the_worker_fails_naming_it(wf, tables, tmp_path):
    """PGD290 says the requirements must be installed in the worker's environment;
    when they are not, the step fails with the import error naming the package (the
    task id with quotes, a newline and `*/` stays inert in the module and the SQL)."""
    dag = tmp_path / "dags" / "hostile_venv.py"
    dag.parent.mkdir()
    dag.write_text(HOSTILE_VENV_DAG)
    out = tmp_path / "out"
    report = pipeline.import_airflow(paths=[dag], out_dir=out, default_username="alice")
    (result,) = report.results
    assert result.workflow is not None, result.diagnostics
    assert "pgdurable-py19-absent-package" in str(result.diagnostics)
    grant(tables, "hostile_venv")
    instance = start_at(wf, result, "2024-03-05")
    wf.run(code=CodeConfig.build([str(out)]))
    assert wf.status(instance) == "failed"
    assert "No module named 'pgdurable_py19_absent_package'" in json.dumps(
        wf.nodes(instance), default=str
    )


AIRFLOW_1_DAG = """
from datetime import datetime
from airflow import DAG
from airflow.operators.python_operator import PythonOperator

def with_context(**kwargs):
    return kwargs["ds"]

def without_context(n, ds=None):
    return [n, ds]

dag = DAG("py_airflow1", schedule_interval=None, start_date=datetime(2024, 1, 1))
a = PythonOperator(task_id="a", python_callable=with_context, provide_context=True, dag=dag)
b = PythonOperator(task_id="b", python_callable=without_context, op_kwargs={"n": 1}, dag=dag)
a >> b
"""


def test_airflow_1_gives_the_context_only_with_provide_context(wf, tables, tmp_path):
    """Airflow 1.10's PythonOperator calls python_callable(*op_args, **op_kwargs) and
    adds the context only with provide_context=True: b's ds stays its default."""
    dag = tmp_path / "dags" / "py_airflow1.py"
    dag.parent.mkdir()
    dag.write_text(AIRFLOW_1_DAG)
    out = tmp_path / "out"
    (result,) = pipeline.import_airflow(paths=[dag], out_dir=out, default_username="alice").results
    assert result.workflow is not None, result.diagnostics
    grant(tables, "py_airflow1")
    instance = start_at(wf, result, "2024-03-05")
    wf.run(code=CodeConfig.build([str(out)]))
    assert wf.status(instance) == "completed", wf.nodes(instance)
    returned = [
        row["return_value"]
        for kind, status, value, _ in wf.nodes(instance)
        if kind == "PYTHON" and status == "completed"
        for row in value["rows"]
    ]
    assert sorted(map(json.dumps, returned)) == sorted(map(json.dumps, ["2024-03-05", [1, None]]))
