"""Labels and refusals of lambdas, virtualenv / external-Python tasks and mapped
TaskFlow callables (translators/airflow/python_isolated.py, python_mapped.py),
without a database; their runs are in tests/worker/test_airflow_python_runs.py."""

from __future__ import annotations

import json
import textwrap

import pytest

from pgdurable import airflow_context as ac
from pgdurable.diagnostics import Fidelity
from pgdurable.model import Python, walk
from pgdurable.translators import airflow
from pgdurable.translators.base import TranslateContext


def translate(code: str):
    files = [airflow.SourceFile("dags/d.py", textwrap.dedent(code))]
    (result,) = airflow.translate(files, TranslateContext(default_username="etl")).results
    return result


def codes(result) -> list[str]:
    return [d.code for d in result.diagnostics]


def module_text(result) -> str:
    ((_, text),) = result.workflow.code_files
    return text


HEAD = """
from datetime import datetime
from airflow import DAG
from airflow.decorators import task
from airflow.operators.python import PythonOperator, PythonVirtualenvOperator
"""


def test_a_lambda_is_exact_and_a_hostile_task_id_stays_a_comment_and_a_name():
    result = translate(
        HEAD
        + """
with DAG("d", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
    PythonOperator(task_id="a'\\"\\n*/$$b", python_callable=lambda **ctx: ctx["ds"])
"""
    )
    assert result.fidelity == Fidelity.EXACT, result.diagnostics
    text = module_text(result)
    compile(text, "m.py", "exec")  # the module is valid Python whatever the task id
    assert "def _pgdurable_lambda_a_______b(**ctx):" in text
    namespace: dict = {}
    exec(text, namespace)
    row = {"ds": "2024-06-01", "ts": "2024-06-01T06:00:00+00:00", "run_id": "r"}
    out = namespace["_pgdurable_lambda_a_______b"](ds="x")
    assert out == "x"
    value = ac.run(namespace["_pgdurable_lambda_a_______b"], {"dag_run": json.dumps([row])})
    assert value["rows"][0]["return_value"] == "2024-06-01"


def test_a_lambda_over_a_loop_variable_stays_manual():
    result = translate(
        HEAD
        + """
with DAG("d", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
    for n in [1, 2]:
        PythonOperator(task_id=f"t{n}", python_callable=lambda: n)
"""
    )
    assert result.fidelity == Fidelity.MANUAL
    assert "PGD311" in codes(result)


def test_a_virtualenv_callable_reading_a_module_name_stays_manual():
    result = translate(
        HEAD
        + """
LIMIT = 3

def f():
    return LIMIT

with DAG("d", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
    PythonVirtualenvOperator(task_id="v", python_callable=f, requirements=["x"])
"""
    )
    assert result.fidelity == Fidelity.MANUAL
    message = next(d.message for d in result.diagnostics if d.code == "PGD311")
    assert "NameError" in message and "'LIMIT'" in message


def test_a_virtualenv_callable_importing_airflow_stays_manual():
    result = translate(
        HEAD
        + """
def f():
    from airflow.models import Variable
    return Variable.get("x")

with DAG("d", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
    PythonVirtualenvOperator(task_id="v", python_callable=f)
"""
    )
    assert result.fidelity == Fidelity.MANUAL
    assert "imports airflow.models inside" in str(result.diagnostics)


def test_a_virtualenv_task_is_approximate_and_lists_its_requirements():
    result = translate(
        HEAD
        + """
def f(ds):
    import colorama
    return ds

with DAG("d", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
    PythonVirtualenvOperator(task_id="v", python_callable=f, requirements=["colorama==0.4.6"],
                             serializer="dill")
"""
    )
    assert result.fidelity == Fidelity.APPROXIMATE
    message = next(d.message for d in result.diagnostics if d.code == "PGD290")
    assert "'colorama==0.4.6'" in message and "not dill" in message
    assert "PGD244" in codes(result)  # the third-party import inside the function


def test_only_the_serializable_context_reaches_a_virtualenv_callable():
    row = {"ds": "2024-06-01", "ts": "2024-06-01T06:00:00+00:00", "run_id": "r"}

    def f(**context):
        return sorted(context)

    out = ac.run(f, {"dag_run": json.dumps([row]), "context_keys": ["ds", "run_id"]})
    assert out["rows"][0]["return_value"] == ["ds", "run_id"]


def test_a_callable_asking_for_an_unprovided_context_key_stays_manual():
    result = translate(
        HEAD
        + """
with DAG("d", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
    @task
    def f(triggering_asset_events=None):
        return 1
    f()
"""
    )
    assert result.fidelity == Fidelity.MANUAL
    assert "'triggering_asset_events'" in str(result.diagnostics)


def test_a_mapping_over_an_upstream_result_is_approximate_and_loops_in_order():
    result = translate(
        HEAD
        + """
with DAG("d", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
    @task
    def nums():
        return [1, 2]
    @task
    def mul(a, b, c):
        return a * b * c
    mul.partial(c=10).expand(a=nums(), b=[1, 3])
"""
    )
    assert result.fidelity == Fidelity.APPROXIMATE, result.diagnostics
    assert "PGD292" in codes(result)
    upstream = json.dumps([{"return_value": [1, 2], "xcom": {}}])

    def mul(a, b, c):
        return a * b * c

    out = ac.run(
        mul,
        {
            "xcom": {"nums": upstream},
            "map_how": "expand",
            "op_kwargs": {"c": 10, ac.MAP_KEY: {"a": {"__xcom__": "nums"}, "b": [1, 3]}},
        },
    )
    # Airflow's order: the cross product, the last keyword varying fastest
    assert out["rows"][0]["return_value"] == [10, 30, 20, 60]


def test_mapping_over_a_value_that_is_not_a_list_fails_naming_it():
    with pytest.raises(ValueError, match="must be a list"):
        ac.run(lambda a: a, {"map_how": "expand", "op_kwargs": {ac.MAP_KEY: {"a": 3}}})


def test_is_venv_installed_is_taken_as_installed_and_said_so():
    result = translate(
        HEAD
        + """
from airflow.operators.python import is_venv_installed

if not is_venv_installed():
    print("missing")
else:
    with DAG("d", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
        PythonOperator(task_id="t", python_callable=lambda: 1)
"""
    )
    assert result.workflow is not None
    assert result.fidelity == Fidelity.APPROXIMATE
    assert "PGD291" in codes(result)


def test_outlet_extras_are_approximate_and_inlet_events_stay_manual():
    code = (
        HEAD
        + """
from airflow.datasets import Dataset
from airflow.datasets.metadata import Metadata

out = Dataset("s3://x")

with DAG("d", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
    @task(outlets=[out])
    def produce():
        yield Metadata(out, {"n": 1})
    produce()
"""
    )
    result = translate(code)
    assert result.fidelity == Fidelity.APPROXIMATE and "PGD294" in codes(result)
    consumer = translate(
        code.replace('yield Metadata(out, {"n": 1})', "pass").replace(
            "def produce():", "def produce(inlet_events=None):"
        )
    )
    assert consumer.fidelity == Fidelity.MANUAL
    assert "'inlet_events'" in str(consumer.diagnostics)


def test_airflow_1_passes_the_context_only_with_provide_context():
    row = {"ds": "2024-06-01", "ts": "2024-06-01T06:00:00+00:00", "run_id": "r"}
    base = {"dag_run": json.dumps([row]), "generation": 1, "op_kwargs": {"n": 2}}

    def named(n, ds=None):
        return [n, ds]

    # Airflow 1.10: python_callable(*op_args, **op_kwargs), no context at all
    out = ac.run(named, {**base, "provide_context": False})
    assert out["rows"][0]["return_value"] == [2, None]

    def everything(n, **context):
        return [n, context["ds"], "execution_date" in context]

    out = ac.run(everything, {**base, "provide_context": True})
    assert out["rows"][0]["return_value"] == [2, "2024-06-01", True]
    # with provide_context every key is passed: a callable without **kwargs fails
    with pytest.raises(TypeError):
        ac.run(named, {**base, "provide_context": True})


def test_airflow_1_classic_tasks_say_whether_they_get_the_context():
    result = translate(
        """
from datetime import datetime
from airflow import DAG
from airflow.operators.python_operator import PythonOperator

def f(ds, **kwargs):
    return ds

dag = DAG("d", schedule_interval=None, start_date=datetime(2024, 1, 1))
PythonOperator(task_id="t", python_callable=f, provide_context=True, dag=dag)
"""
    )
    (step,) = [n for n in walk(result.workflow.body) if isinstance(n, Python)]
    assert dict(step.kwargs)["provide_context"] is True
