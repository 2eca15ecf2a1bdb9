"""Airflow Python tasks: extraction (translators/airflow/python_tasks.py) and the
context they run with (pgdurable/airflow_context.py), without a database.

The end-to-end runs on a worker are in tests/worker/test_airflow_python_runs.py;
here each rule of Airflow's call convention and each refusal is checked alone."""

from __future__ import annotations

import json
import textwrap

import pytest

from pgdurable import airflow_context as ac
from pgdurable.model import Python, walk
from pgdurable.translators import airflow
from pgdurable.translators.base import TranslateContext


def payload(**extra):
    row = {"ds": "2024-06-01", "ts": "2024-06-01T06:00:00+00:00", "run_id": "manual__x"}
    return {"dag_id": "d", "task_id": "t", "dag_run": json.dumps([row]), **extra}


def test_only_named_context_keys_are_passed_without_kwargs():
    def f(ds, label, other=1):
        return [ds, label, other]

    out = ac.run(f, payload(op_kwargs={"label": "x"}))
    assert out == {"rows": [{"return_value": ["2024-06-01", "x", 1], "xcom": {}}]}


def test_kwargs_get_the_whole_context_and_dates_are_datetimes():
    def f(**context):
        return [context["logical_date"].weekday(), context["run_id"], sorted(context)[:3]]

    value = ac.run(f, payload())["rows"][0]["return_value"]
    assert value[:2] == [5, "manual__x"]  # 2024-06-01 is a Saturday
    assert value[2] == ["conn", "dag", "dag_run"]  # Airflow's context has conn too


def test_a_positional_argument_may_not_be_a_context_key():
    def f(ds):
        return ds

    with pytest.raises(ValueError, match="reserved"):
        ac.run(f, payload(op_args=["2020-01-01"]))


def test_xcom_rows_upstream_results_and_pushes():
    upstream = json.dumps([{"return_value": {"n": 3}, "xcom": {"rows": 7}}])

    def f(value, ti):
        ti.xcom_push(key="seen", value=value["n"])
        return [ti.xcom_pull(task_ids="up", key="rows"), ti.xcom_pull(task_ids=["up", "gone"])]

    out = ac.run(
        f,
        payload(
            op_args=[{"__xcom__": "up"}],
            xcom={"up": upstream, "gone": "$r_gone.*"},  # gone: never ran, left as written
        ),
    )
    assert out["rows"][0] == {"return_value": [7, [{"n": 3}, None]], "xcom": {"seen": 3}}


def test_variables_read_df_vars_and_their_defaults():
    def f():
        return [
            ac.Variable.get("a", deserialize_json=True),
            ac.Variable.get("b", default_var="d"),
        ]

    out = ac.run(f, payload(variables={"a": '{"k": 1}', "b": "{b}"}))
    assert out["rows"][0]["return_value"] == [{"k": 1}, "d"]
    with pytest.raises(KeyError, match="Variable b does not exist"):
        ac.run(lambda: ac.Variable.get("b"), payload(variables={"b": "{b}"}))


def test_branch_ids_are_checked_and_short_circuits_give_their_truth():
    branch = payload(mode="branch", downstream=["a", "b"])
    assert ac.run(lambda: "a", branch)["rows"][0]["follow"] == ["a"]
    assert ac.run(lambda: None, branch)["rows"][0]["follow"] == []
    with pytest.raises(ac.AirflowException, match="Invalid tasks found: \\['c'\\]"):
        ac.run(lambda: ["a", "c"], branch)
    assert ac.run(lambda: [], payload(mode="short_circuit"))["rows"][0]["follow"] is False


def test_a_value_that_is_not_json_names_its_type():
    with pytest.raises(TypeError, match="type set"):
        ac.run(lambda: {1, 2}, payload())


def translate(code: str):
    files = [airflow.SourceFile("dags/d.py", textwrap.dedent(code))]
    (result,) = airflow.translate(files, TranslateContext(default_username="etl")).results
    return result


HEAD = """
from datetime import datetime
from airflow.decorators import dag, task
from airflow.models import DagRun
LIMIT = 3

def top(values):
    return sorted(values)[:LIMIT]

def helper(values):
    return top(values)
"""


def test_helpers_are_followed_transitively_and_a_refused_task_writes_nothing():
    result = translate(
        HEAD
        + """
@dag(schedule=None, start_date=datetime(2024, 1, 1))
def d():
    prefix = "x"

    @task
    def good():
        return helper([3, 1, 2, 5])

    @task
    def closure():
        return prefix + "y"

    @task
    def runs():
        return DagRun.find(dag_id="d")

    good() >> closure() >> runs()

d()
"""
    )
    ((path, text),) = result.workflow.code_files
    assert path == "airflow_tasks/d.py"
    assert "def helper(values)" in text and "def top(values)" in text and "LIMIT = 3" in text
    assert "pgdurable_task_good" in text
    for absent in ("def closure", "task_closure", "def runs", "task_runs", "DagRun"):
        assert absent not in text
    manual = {d.message.split(":")[0]: d.message for d in result.diagnostics if d.code == "PGD311"}
    assert (
        "'prefix' (line 23) from the code around it (a closure over line 15)"
        in manual["task 'closure' (@task)"]
    )
    assert "Airflow's airflow.models.DagRun (line 27)" in manual["task 'runs' (@task)"]
    namespace: dict = {}
    exec(compile(text, path, "exec"), namespace)  # the module stands alone, without Airflow
    assert namespace["pgdurable_task_good"](**payload())["rows"][0]["return_value"] == [1, 2, 3]


def test_a_branch_with_several_returns_is_not_frozen():
    result = translate(
        """
from datetime import datetime
from airflow import DAG
from airflow.operators.python import BranchPythonOperator
from airflow.operators.empty import EmptyOperator

def choose(logical_date):
    if logical_date.day == 1:
        return "monthly"
    return "daily"

with DAG("d", schedule=None, start_date=datetime(2024, 1, 1)):
    BranchPythonOperator(task_id="choose", python_callable=choose) >> [
        EmptyOperator(task_id="monthly"), EmptyOperator(task_id="daily")
    ]
"""
    )
    assert result.fidelity.name == "EXACT"
    assert [d.code for d in result.diagnostics] == ["PGD243"]
    assert result.workflow.profile == "pgdurable"


def test_one_dag_id_in_two_files_gets_two_task_modules():
    code = """
from datetime import datetime
from airflow.decorators import dag, task

@dag(schedule=None, start_date=datetime(2024, 1, 1))
def etl():
    @task
    def load():
        return "{}"

    load()

etl()
"""
    files = [
        airflow.SourceFile(f"{env}/etl.py", code.replace("{}", env)) for env in ("dev", "prod")
    ]
    results = airflow.translate(files, TranslateContext(default_username="etl")).results
    seen = {}
    for result in results:
        ((path, text),) = result.workflow.code_files
        module = path[: -len(".py")].replace("/", ".")
        callables = {n.callable for n in walk(result.workflow.body) if isinstance(n, Python)}
        assert callables == {f"{module}:pgdurable_task_load"}
        assert all(module + ":" in d.message for d in result.diagnostics if d.code == "PGD243")
        seen[path] = text
    assert sorted(seen) == ["airflow_tasks/etl__dev_etl.py", "airflow_tasks/etl__prod_etl.py"]
    assert 'return "prod"' in seen["airflow_tasks/etl__prod_etl.py"]


def test_other_decorators_stay_and_their_imports_come_along():
    result = translate(
        """
import functools
from datetime import datetime
from airflow.decorators import dag, task

@functools.cache
def lookup(n):
    return n * 2

@task(retries=1)
def double():
    return lookup(21)

@dag(schedule=None, start_date=datetime(2024, 1, 1))
def d():
    double()

d()
"""
    )
    ((_, text),) = result.workflow.code_files
    assert "import functools" in text and "@functools.cache\ndef lookup" in text
    assert "@task" not in text
    namespace: dict = {}
    exec(compile(text, "d.py", "exec"), namespace)
    assert namespace["pgdurable_task_double"](**payload())["rows"][0]["return_value"] == 42


def test_variables_fall_back_to_the_exported_file_at_the_code_root(tmp_path, monkeypatch):
    (tmp_path / "airflow_variables.json").write_text(json.dumps({"cfg": {"k": 2}, "name": "n"}))
    monkeypatch.setenv("PGDURABLE_CODE_ROOT", str(tmp_path))

    def f():
        return [
            ac.Variable.get("cfg", deserialize_json=True),
            ac.Variable.get("cfg"),
            ac.Variable.get("name"),
            ac.Variable.get("name", default_var="x"),
        ]

    out = ac.run(f, payload(variables={"name": "from df"}))
    assert out["rows"][0]["return_value"] == [{"k": 2}, '{"k": 2}', "from df", "from df"]


def test_connections_are_the_mapped_database_as_the_role_without_a_password(monkeypatch):
    monkeypatch.setenv("PGDURABLE_ROLE", "alice")
    monkeypatch.setenv("PGDURABLE_DATABASE", "app")
    monkeypatch.setenv("PGDURABLE_PGHOST", "/run/pg")
    monkeypatch.setenv("PGDURABLE_PGPORT", "5433")

    def f():
        mapped = ac.BaseHook.get_connection("warehouse")
        current = ac.PostgresHook().connection
        return [mapped.login, mapped.schema, mapped.password, current.conninfo()]

    out = ac.run(f, payload(connections={"warehouse": "wh", "postgres_default": None}))
    assert out["rows"][0]["return_value"] == [
        "alice",
        "wh",
        None,
        "host='/run/pg' port='5433' dbname='app' user='alice'",
    ]
    with pytest.raises(ac.AirflowException, match="`other` isn't defined"):
        ac.run(lambda: ac.BaseHook.get_connection("other"), payload(connections={}))


def test_a_nested_callable_may_not_replace_a_module_level_name():
    result = translate(
        """
from datetime import datetime
from airflow import DAG
from airflow.operators.python import PythonOperator

def load():
    return "module level"

def run():
    return load()

with DAG("d", schedule=None, start_date=datetime(2024, 1, 1)):
    def load():
        return "inside the DAG"

    PythonOperator(task_id="a", python_callable=run)
    PythonOperator(task_id="b", python_callable=load)
"""
    )
    # when run() runs, `load` is the one the with block bound last: neither is extracted
    assert result.workflow.code_files == ()
    a, b = [d.message for d in result.diagnostics if d.code == "PGD311"]
    assert "'load' (line 10) is defined inside a `with` block at line 12" in a
    assert "load() (line 13) has the name of another module-level definition (line 6)" in b


def test_the_deploy_advice_is_given_once_per_dag():
    code = """
from datetime import datetime
from airflow.decorators import dag, task

@dag(schedule=None, start_date=datetime(2024, 1, 1))
def first():
    @task
    def extract():
        return 1

    @task
    def load(value):
        return value

    load(extract())

@dag(schedule=None, start_date=datetime(2024, 1, 1))
def second():
    @task
    def only():
        return 2

    only()

first()
second()
"""
    results = airflow.translate(
        [airflow.SourceFile("dags/two.py", code)], TranslateContext(default_username="etl")
    ).results
    advice = {r.name: [d.message for d in r.diagnostics if d.code == "PGD243"] for r in results}
    (one,) = advice["first"]
    assert "'extract' as " in one and "'load' as " in one and one.count("grant_code") == 1
    (two,) = advice["second"]
    assert "'only' as " in two and "extract" not in two
